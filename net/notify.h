/*
 * notify.h - tell a service manager how the server is doing: systemd's
 * readiness protocol (sd_notify(3)), written out instead of linking
 * libsystemd. Prefix notify_.
 *
 * The protocol is one datagram of "KEY=VALUE" lines to the AF_UNIX socket
 * named by $NOTIFY_SOCKET (a path, or an abstract name when it starts with
 * '@'). A unit with Type=notify (tools/tokend.service) is "started" when
 * READY=1 arrives and "stopping" at STOPPING=1. Without $NOTIFY_SOCKET
 * nothing is sent and nothing is logged: a server started by hand or by a
 * test behaves exactly as before.
 */
#ifndef TK_NET_NOTIFY_H
#define TK_NET_NOTIFY_H

#include "core/err.h"

/* Sends state (e.g. "READY=1"; borrowed) as one datagram to $NOTIFY_SOCKET.
 * 0 when sent, or when $NOTIFY_SOCKET is unset or empty (nothing to do).
 * TK_EINVAL when the variable names no usable socket (neither '/' nor '@'
 * first, or too long), TK_EIO when the send fails (no such socket,
 * nobody listening); why says which. Never blocks for long: the socket is
 * non-blocking, and a full receiver is a failure, not a wait. Thread-safe;
 * not async-signal-safe (getenv). */
int notify_send(const char *state, tk_why *why);

#endif
