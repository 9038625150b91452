/* err.c - names for the TK_E* codes, and reasons; see err.h. */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>

int tk_say(tk_why *w, int code, const char *fmt, ...)
{
    if (w) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->msg, sizeof w->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *tk_strerror(int code)
{
    switch (code) {
    case TK_OK: return "ok";
    case TK_EINVAL: return "invalid argument";
    case TK_ENOTFOUND: return "not found";
    case TK_EEXIST: return "already exists";
    case TK_EDENIED: return "denied";
    case TK_EDISABLED: return "api tokens are disabled for this tenant";
    case TK_ELIMIT: return "limit exceeded";
    case TK_ECORRUPT: return "stored data is damaged";
    case TK_EIO: return "i/o error";
    case TK_EFENCED: return "store is fenced after a write failure; restart required";
    case TK_ENOMEM: return "out of memory";
    case TK_EUNAUTH: return "unauthenticated";
    case TK_EPROTO: return "protocol error";
    case TK_EOPCODE: return "unknown operation";
    case TK_EBUSY: return "server busy";
    case TK_ENOSPC: return "storage full; only revocations are accepted";
    case TK_ERATE: return "rate limited; try again later";
    case TK_EREADONLY: return "read-only replica; send writes to the primary";
    default: return "unknown error";
    }
}

const char *tk_errcode(int code)
{
    switch (code) {
    case TK_OK: return "ok";
    case TK_EINVAL: return "invalid";
    case TK_ENOTFOUND: return "not_found";
    case TK_EEXIST: return "exists";
    case TK_EDENIED: return "denied";
    case TK_EDISABLED: return "disabled";
    case TK_ELIMIT: return "limit";
    case TK_ECORRUPT: return "corrupt";
    case TK_EIO: return "io";
    case TK_EFENCED: return "fenced";
    case TK_ENOMEM: return "nomem";
    case TK_EUNAUTH: return "unauthenticated";
    case TK_EPROTO: return "protocol";
    case TK_EOPCODE: return "unknown_operation";
    case TK_EBUSY: return "busy";
    case TK_ENOSPC: return "no_space";
    case TK_ERATE: return "rate_limited";
    case TK_EREADONLY: return "read_only";
    default: return "other";
    }
}
