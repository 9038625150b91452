/*
 * notify.c - sd_notify(3)'s datagram, without libsystemd; see notify.h.
 *
 * A socket per message: the server sends two in its life (READY=1 once it
 * listens, STOPPING=1 when a stop begins), so there is nothing to keep
 * open, and a manager that restarts its socket in between is still found.
 */
#include "net/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_send(const char *state, tk_why *why)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t n;

    if (!path || !*path)
        return 0;
    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path)
        return tk_say(why, TK_EINVAL,
                      "NOTIFY_SOCKET=%s: expected an absolute path or @name of at most %zu "
                      "bytes",
                      path, sizeof sa.sun_path - 1);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* the abstract namespace: the name is the bytes after it */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n
                                + (path[0] == '/')); /* a path's length counts its NUL */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return tk_say(why, TK_EIO, "NOTIFY_SOCKET: socket: %s", strerror(errno));
    ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    int err = errno;
    close(fd);
    if (w < 0 || (size_t)w != strlen(state))
        return tk_say(why, TK_EIO, "cannot send %s to NOTIFY_SOCKET=%s: %s", state, path,
                      w < 0 ? strerror(err) : "short send");
    return 0;
}
