/*
 * proto.h - the wire protocol's constants and frame header (docs/protocol.md
 * is the full description; this header and that page must agree).
 *
 * Shared by the server (net/server.c) and the client library (net/client.c).
 */
#ifndef TK_PROTO_H
#define TK_PROTO_H
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_HEADER_LEN 12
#define PROTO_DEFAULT_MAX_FRAME (1u << 20)

typedef enum proto_op {
    OP_PING = 0x01,
    OP_AUTH = 0x02,
    OP_VERIFY = 0x03,
    OP_TENANT_CREATE = 0x10,
    OP_TENANT_SET = 0x11,
    OP_PERM_PUT = 0x12,
    OP_ROLE_PUT = 0x13,
    OP_ROLE_DELETE = 0x14,
    OP_ACCOUNT_CREATE = 0x15,
    OP_USER_CREATE = 0x16,
    OP_USER_SET = 0x17,
    OP_KEY_CREATE = 0x18,
    OP_KEY_DELETE = 0x19,
    OP_TOKEN_CREATE = 0x20,
    OP_TOKEN_LIST = 0x21,
    OP_TOKEN_DELETE = 0x22,
    OP_TOKEN_GET = 0x23,
    OP_TOKEN_SET = 0x24,
    OP_TENANT_LIST = 0x30,
    OP_TENANT_GET = 0x31,
    OP_TENANT_DELETE = 0x32,
    OP_PERM_LIST = 0x33,
    OP_PERM_DELETE = 0x34,
    OP_ROLE_LIST = 0x35,
    OP_ACCOUNT_LIST = 0x36,
    OP_ACCOUNT_DELETE = 0x37,
    OP_USER_LIST = 0x38,
    OP_USER_GET = 0x39,
    OP_USER_DELETE = 0x3a,
    OP_KEY_LIST = 0x3b,
    OP_PORTAL_SESSION_CREATE = 0x40, /* HTTP only (net/portal.c) */
    OP_PORTAL_SESSION_GET = 0x41,
    OP_PORTAL_SESSION_DELETE = 0x42,
    OP_KEYRING_ADD = 0x50,
    OP_KEYRING_LIST = 0x51,
    OP_KEYRING_REMOVE = 0x52,
} proto_op;

typedef struct proto_header {
    uint32_t len;   /* body bytes */
    uint16_t code;  /* opcode (request) or status (reply) */
    uint16_t flags; /* 0 */
    uint32_t id;    /* request id, echoed */
} proto_header;

/* Writes h into out[0..12) (little-endian). */
static inline void proto_header_put(uint8_t *out, const proto_header *h)
{
    out[0] = (uint8_t)h->len;
    out[1] = (uint8_t)(h->len >> 8);
    out[2] = (uint8_t)(h->len >> 16);
    out[3] = (uint8_t)(h->len >> 24);
    out[4] = (uint8_t)h->code;
    out[5] = (uint8_t)(h->code >> 8);
    out[6] = (uint8_t)h->flags;
    out[7] = (uint8_t)(h->flags >> 8);
    out[8] = (uint8_t)h->id;
    out[9] = (uint8_t)(h->id >> 8);
    out[10] = (uint8_t)(h->id >> 16);
    out[11] = (uint8_t)(h->id >> 24);
}

/* Reads a header from in[0..12). */
static inline void proto_header_get(const uint8_t *in, proto_header *h)
{
    h->len = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16
             | (uint32_t)in[3] << 24;
    h->code = (uint16_t)(in[4] | in[5] << 8);
    h->flags = (uint16_t)(in[6] | in[7] << 8);
    h->id = (uint32_t)in[8] | (uint32_t)in[9] << 8 | (uint32_t)in[10] << 16
            | (uint32_t)in[11] << 24;
}

/* Status on the wire for a TK_E* code (0 for 0), and back. */
static inline uint16_t proto_status(int tk_err)
{
    return (uint16_t)(tk_err < 0 ? -tk_err : 0);
}

static inline int proto_err(uint16_t status)
{
    return -(int)status;
}

#endif
