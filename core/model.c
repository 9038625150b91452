/* model.c - name syntax and verdict names; see model.h. */
#include "core/model.h"

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
    }
    return "unknown_verdict";
}
