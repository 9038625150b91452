/* model.c - name syntax and verdict names; see model.h. */
#include "core/model.h"

#include <string.h>

#include "core/mp.h"

bool model_slug_ok(const char *s, size_t n)
{
    if (n == 0 || n > TK_SLUG_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(i > 0 && c == '-'))
            return false;
    }
    return true;
}

bool model_key_ok(const char *s, size_t n)
{
    if (n == 0 || n > TK_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        bool punct = c == ':' || c == '.' || c == '_' || c == '-';
        if (!alnum && !(i > 0 && punct))
            return false;
    }
    return true;
}

bool model_text_ok(const char *s, size_t n, size_t max)
{
    if (n > max || !mpr_utf8_valid(s, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

bool model_expiry_ok(int64_t expires, int64_t now)
{
    return expires == 0 || (expires > now && expires <= TK_MAX_EXPIRES);
}

void model_dedup(tk_str *items, uint32_t *n)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < *n; i++) {
        bool seen = false;
        for (uint32_t j = 0; j < kept && !seen; j++)
            seen = items[j].n == items[i].n && memcmp(items[j].p, items[i].p, items[i].n) == 0;
        if (!seen)
            items[kept++] = items[i];
    }
    *n = kept;
}

const char *model_verdict_name(tk_verdict v)
{
    switch (v) {
    case TK_V_VALID: return "valid";
    case TK_V_MALFORMED: return "malformed";
    case TK_V_UNKNOWN: return "unknown";
    case TK_V_MISMATCH: return "mismatch";
    case TK_V_WRONG_KIND: return "wrong_kind";
    case TK_V_DISABLED: return "disabled";
    case TK_V_EXPIRED: return "expired";
    case TK_V_UNAVAILABLE: return "unavailable";
    }
    return "unknown_verdict";
}
