/*
 * client.h - the C client library of the tokend wire protocol
 * (docs/protocol.md), used by tokenctl, tokenbench and C gateways.
 *
 * One handle is one TCP connection. The socket is blocking; every wait goes
 * through poll() against the handle's deadline, and every send/recv is made
 * with MSG_DONTWAIT, so no call waits longer than the timeout (name
 * resolution in tkc_connect excepted: getaddrinfo has none). The library
 * keeps no global state: handles are independent, one handle is used by one
 * thread at a time.
 *
 * TLS (tkc_set_tls; docs/server.md, "TLS"): the handle verifies the
 * server's certificate against the CAs it is given and, by default, that
 * the certificate names the host dialled; it can present a client
 * certificate for a server that requires one. The socket is then
 * non-blocking and records go through OpenSSL (net/tls.h); everything
 * else, the deadlines included, is as over plain TCP.
 *
 * Two layers:
 *   - typed calls (tkc_tenant_create, tkc_verify, ...): send one request,
 *     wait for its reply, decode it strictly into typed results;
 *   - the pipeline (tkc_send / tkc_recv, tkc_verify_send / tkc_verify_recv):
 *     queue many requests, then take their replies in order. Request ids are
 *     assigned by the handle (1, 2, 3, ...) and every reply's id is checked
 *     against the request it answers. Queued bytes go out when the output
 *     buffer is large, on tkc_flush, and before any receive. While a send
 *     waits for room, replies already arriving are read into the receive
 *     buffer, so a pipeline of any depth cannot deadlock against the server.
 *     Buffers are reused: after warm-up the verify pipeline allocates
 *     nothing per request.
 *
 * Errors: every function returns 0 or a negative TK_E* code (core/err.h).
 *   - The server refused (a non-zero status): proto_err(status), e.g.
 *     TK_EDENIED; tkc_errmsg() holds the server's one-line message and
 *     tkc_refused() is true. The connection goes on, except when the server
 *     closes it after saying why (EBUSY at its connection limit, ELIMIT for
 *     an oversized frame).
 *   - A local failure: TK_EIO (cannot connect, timeout, connection lost),
 *     TK_EPROTO (malformed or unexpected reply), TK_EINVAL (a bad argument
 *     or a misuse such as a typed call with pipelined requests in flight;
 *     nothing sent). tkc_errmsg() says what happened and tkc_refused() is
 *     false. After TK_EIO or TK_EPROTO the connection is closed (every
 *     later call fails with TK_EIO) because the stream's position is lost;
 *     tkc_connect again.
 *
 * Strings in results: fixed-size fields (IDs, slugs, secrets) are copied
 * into arrays inside the caller's result struct; variable-length lists
 * (roles, permissions, pages of listings) live in storage the result struct owns,
 * released by its *_free function and reused when the same struct is
 * passed again. Raw reply bodies (tkc_call, tkc_recv) are borrowed from the
 * handle until its next call.
 *
 * Secrets: the handle wipes its buffers (sodium_memzero) when freed and
 * wipes a reply that carried a new secret once it has been copied out. A
 * caller holding a secret in a result should wipe it when done.
 */
#ifndef TK_CLIENT_H
#define TK_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "core/mp.h"
#include "core/secret.h"

typedef struct tkc tkc;

#define TKC_DEFAULT_ADDR "127.0.0.1:7070"
#define TKC_DEFAULT_TIMEOUT_MS 10000
#define TKC_MAX_REPLY (64u << 20) /* a reply frame longer than this is a protocol error */
#define TKC_LIST_MAX 1000         /* rows in one page of any listing (the server's cap) */
/* A listing cursor's bound: the schema's limit of "after" and "next"
 * (net/schema.c; test_client fails when the two differ). A role's or a
 * permission's cursor is its key, so this is more than a token's. */
#define TKC_CURSOR_MAX (TK_KEY_MAX + 32)
#define TKC_ERRMSG_MAX 256        /* tkc_errmsg() length bound, NUL included */
#define TKC_UNCHANGED (-1)        /* tkc_user_set: leave portal as it is */
/* A keyring key's length, NUL excluded: "tko_" (operator) or "tkg_"
 * (gateway) and 64 hex digits, the key files' form (store/keyfile.h's
 * KEYFILE_KEY_LEN; client.c does not compile when the two differ). */
#define TKC_RING_KEY_LEN 68

/* ---- the handle ------------------------------------------------------- */

/* Returns a new, unconnected handle (never NULL: aborts on exhaustion). */
tkc *tkc_new(void);

/* Closes the connection (if any), wipes and frees everything. c may be NULL. */
void tkc_free(tkc *c);

/* Per-call time limit in milliseconds (connect, one request and its reply,
 * one flush, one receive); <= 0 waits forever. Default
 * TKC_DEFAULT_TIMEOUT_MS. */
void tkc_set_timeout(tkc *c, int ms);

/* Connects to addr, "HOST:PORT" (HOST a name, an IPv4 address, or an IPv6
 * address in brackets: "[::1]:7070"). Tries each resolved address in turn
 * within the timeout, sets TCP_NODELAY, and with TLS (tkc_set_tls)
 * completes the handshake within the same timeout. Closes any earlier
 * connection of c first. 0, TK_EINVAL (addr malformed) or TK_EIO (with the
 * reason, e.g. "cannot connect to 127.0.0.1:7070: Connection refused", or
 * "... TLS handshake failed: certificate verify failed: hostname
 * mismatch"). */
int tkc_connect(tkc *c, const char *addr);

/* Uses fd, an already connected stream socket, as the connection (for a
 * caller that connects itself, and for tests over socketpair()). The handle
 * owns fd from then on and closes it. Plain: TLS is made by tkc_connect. */
void tkc_attach(tkc *c, int fd);

/* What a handle trusts and shows when it speaks TLS. */
typedef struct tkc_tls {
    const char *ca;          /* PEM: the only CAs that may sign the server's certificate
                                (pinned); NULL: the system's store */
    const char *cert;        /* PEM: a client certificate, for a server that requires one
                                (mTLS, e.g. a gateway's); NULL: none */
    const char *key;         /* its private key (PEM, unencrypted, mode 0600), with cert */
    const char *server_name; /* the name the certificate must carry, also sent as SNI;
                                NULL: the host of tkc_connect's address (a name, or an IP
                                address, which the certificate must then list) */
    bool ca_only;            /* pin the CA only: accept any certificate it signed, whatever
                                its names */
} tkc_tls;

/* Makes every later tkc_connect on c speak TLS as t says (NULL: plain
 * again), and closes c's connection if it has one. t's strings are
 * copied and its files read now. 0, or TK_EIO (a file cannot be read) or
 * TK_EINVAL (not PEM, a key without its certificate or not matching it, a
 * key file others may read), with tkc_errmsg() naming the file; TLS is
 * then off. */
int tkc_set_tls(tkc *c, const tkc_tls *t);

/* The socket, or -1 (borrowed; for poll() across many handles). Over TLS
 * replies may already wait inside the handle while the socket is silent:
 * take them (tkc_recv) before polling again. */
int tkc_fd(const tkc *c);

/* The message of the last failed call on c: the server's one-line error, or
 * what failed locally. Borrowed until the next call on c; "" after a success. */
const char *tkc_errmsg(const tkc *c);

/* True when the last failure was the server's refusal (a reply with a
 * non-zero status); false for local failures and after a success. */
bool tkc_refused(const tkc *c);

/* After a TK_ERATE refusal, the milliseconds the server asked to wait
 * (its retry_after_ms); 0 otherwise. */
uint32_t tkc_retry_after_ms(const tkc *c);

/* ---- generic calls and the pipeline ----------------------------------- */

/* Sends one request (opcode op, body = len bytes of pre-encoded MessagePack,
 * len 0 for an empty map) and waits for its reply. Returns 0 when a reply
 * arrived, whatever its status: *status gets it, *reply and *reply_len the raw
 * body (borrowed from c until its next call; either may be NULL). A non-zero
 * status also sets tkc_errmsg() to the server's message. Negative only on a
 * local failure. */
int tkc_call(tkc *c, uint16_t op, const void *body, size_t len, uint16_t *status,
             const uint8_t **reply, size_t *reply_len);

/* Queues one request without waiting; its reply is taken by a later
 * tkc_recv (replies come in the order of the sends). *id (may be NULL) gets
 * the request id. body is copied. 0, TK_EINVAL (len too large), or TK_EIO
 * when an automatic flush failed. */
int tkc_send(tkc *c, uint16_t op, const void *body, size_t len, uint32_t *id);

/* Sends everything queued. 0 or TK_EIO. */
int tkc_flush(tkc *c);

/* Requests sent or queued whose replies have not been received yet. */
size_t tkc_inflight(const tkc *c);

/* Flushes, then waits for the reply to the oldest request in flight and
 * checks its id. Returns 0 with *status, *reply, *reply_len (as tkc_call),
 * TK_EINVAL when nothing is in flight, or a local failure. */
int tkc_recv(tkc *c, uint16_t *status, const uint8_t **reply, size_t *reply_len);

/* ---- results ---------------------------------------------------------- */

typedef enum tkc_actor {
    TKC_ACTOR_NONE = 0,
    TKC_ACTOR_OPERATOR = 1,
    TKC_ACTOR_USER = 2,
    TKC_ACTOR_GATEWAY = 3,
} tkc_actor;

/* AUTH's answer: who this connection now acts as. tenant/account/user are
 * "" unless the server names them (a user). */
typedef struct tkc_whoami {
    tkc_actor actor;
    char tenant[TK_SLUG_MAX + 1];
    char account[TK_SLUG_MAX + 1];
    char user[TK_SLUG_MAX + 1];
} tkc_whoami;

/* A new personal API key (USER_CREATE, KEY_CREATE). */
typedef struct tkc_key {
    char key_id[TK_ID_STR_LEN + 1];
    char personal_key[TK_SECRET_LEN + 1]; /* shown once; wipe when done */
} tkc_key;

/* A new tenant API token (TOKEN_CREATE). */
typedef struct tkc_new_token {
    char client_id[TK_ID_STR_LEN + 1];
    char secret[TK_SECRET_LEN + 1]; /* shown once; wipe when done */
    int64_t expires_at;             /* unix seconds, 0 = never */
} tkc_new_token;

/* A verification's answer. Zero-initialise before first use (or use
 * TKC_VERIFY_RES_INIT); the same struct may be passed to any number of
 * calls; tkc_verify_res_free releases its storage. When valid is false only
 * verdict and reason are meaningful: the strings are "", the counts 0.
 * roles[i] and perms[i] point into storage owned by the struct, valid until
 * it is next filled or freed. */
typedef struct tkc_verify_res {
    bool valid;
    tk_verdict verdict; /* TK_V_VALID or why not */
    const char *reason; /* "valid", "unknown", ... (static: model_verdict_name) */
    char client_id[TK_ID_STR_LEN + 1];
    char tenant[TK_SLUG_MAX + 1];
    char account[TK_SLUG_MAX + 1];
    int64_t expires_at; /* 0 = never */
    uint32_t nroles;
    const char *roles[TK_MAX_ROLES];
    uint32_t nperms;
    const char *perms[TK_MAX_TENANT_PERMS];
    char *store_; /* private: the strings */
    size_t store_cap_;
} tkc_verify_res;

#define TKC_VERIFY_RES_INIT {0}

void tkc_verify_res_free(tkc_verify_res *r);

/* ---- listings and gets ------------------------------------------------ */
/* A listing's reply is a page: n rows (in the array named after what they
 * are), `more` when rows follow the last one, and then `next`, the opaque
 * cursor of the rest: pass it as `after` to get the next page (it is a
 * position, not an ID; docs/protocol.md, TOKEN_LIST). A get fills the page
 * of its listing with its one row (n == 1, more false).
 *
 * Every page type has the same shape (TKC_PAGE). Zero-initialise one
 * before first use (TKC_PAGE_INIT); pass the same page to any number of
 * calls (its storage is reused); release it with its *_free function. The
 * rows and every string they point to are owned by the page, valid until
 * it is next filled or freed. */

/* The page's storage (private). */
typedef struct tkc_page_st_ {
    size_t cap_;       /* rows allocated */
    char *store_;      /* the rows' strings */
    size_t store_cap_;
} tkc_page_st_;

#define TKC_PAGE(row_type, rows_name)                                                       \
    struct {                                                                                \
        size_t n;                      /* rows in this page */                              \
        row_type *rows_name;           /* n rows, owned by the page */                      \
        bool more;                     /* more rows after the last: pass next as after */   \
        char next[TKC_CURSOR_MAX + 1]; /* the cursor of the rest when more, else "" */      \
        tkc_page_st_ st_;              /* private */                                        \
    }

#define TKC_PAGE_INIT {0}

/* One token (TOKEN_LIST, TOKEN_GET): metadata only (rule 9). */
typedef struct tkc_token {
    char client_id[TK_ID_STR_LEN + 1];
    const char *description;
    uint32_t nroles;
    const char *roles[TK_MAX_ROLES];
    char created_by[TK_SLUG_MAX + 1];
    int64_t created_at; /* unix seconds */
    int64_t expires_at; /* 0 = never */
} tkc_token;

typedef TKC_PAGE(tkc_token, tokens) tkc_token_page;
#define TKC_TOKEN_PAGE_INIT TKC_PAGE_INIT
void tkc_token_page_free(tkc_token_page *p);

/* One tenant (TENANT_LIST, TENANT_GET): its toggle, its limits (0 = no
 * limit; docs/protocol.md, "Quotas and rate limits") and how many roles
 * and permissions it has. */
typedef struct tkc_tenant {
    char tenant[TK_SLUG_MAX + 1];
    bool api_tokens;
    uint32_t max_tokens, max_roles, max_keys, create_rate, create_burst;
    uint32_t role_count, permission_count;
} tkc_tenant;

typedef TKC_PAGE(tkc_tenant, tenants) tkc_tenant_page;
void tkc_tenant_page_free(tkc_tenant_page *p);

/* One permission of a tenant (PERM_LIST). */
typedef struct tkc_perm {
    const char *key;
    const char *description; /* "" when none */
} tkc_perm;

typedef TKC_PAGE(tkc_perm, perms) tkc_perm_page;
void tkc_perm_page_free(tkc_perm_page *p);

/* One role of a tenant (ROLE_LIST): its name, level (0 = strongest) and
 * permission keys. */
typedef struct tkc_role {
    const char *key;
    const char *name;
    uint32_t level;
    uint32_t nperms;
    const char *perms[TK_MAX_ROLE_PERMS];
} tkc_role;

typedef TKC_PAGE(tkc_role, roles) tkc_role_page;
void tkc_role_page_free(tkc_role_page *p);

/* One account of a tenant (ACCOUNT_LIST) and its live tokens. */
typedef struct tkc_account {
    char account[TK_SLUG_MAX + 1];
    uint32_t token_count;
} tkc_account;

typedef TKC_PAGE(tkc_account, accounts) tkc_account_page;
void tkc_account_page_free(tkc_account_page *p);

/* One user of an account (USER_LIST, USER_GET): its roles (deleted ones
 * left out), portal flag and live personal keys. */
typedef struct tkc_user {
    char user[TK_SLUG_MAX + 1];
    uint32_t nroles;
    const char *roles[TK_MAX_ROLES];
    bool portal;
    uint32_t key_count;
} tkc_user;

typedef TKC_PAGE(tkc_user, users) tkc_user_page;
void tkc_user_page_free(tkc_user_page *p);

/* One personal key of a user (KEY_LIST): metadata only, never the key. */
typedef struct tkc_key_info {
    char key_id[TK_ID_STR_LEN + 1];
    int64_t created_at; /* unix seconds */
    int64_t expires_at; /* 0 = never */
} tkc_key_info;

typedef TKC_PAGE(tkc_key_info, keys) tkc_key_page;
void tkc_key_page_free(tkc_key_page *p);

/* One key of the server's keyring (KEYRING_LIST): its name and kind,
 * never the key nor its hash. */
typedef struct tkc_ring {
    char name[TK_SLUG_MAX + 1];
    bool gateway;       /* a gateway key ("tkg_"), else an operator key ("tko_") */
    int64_t created_at; /* unix seconds; 0 for "initial", DIR/operator.key's */
} tkc_ring;

typedef TKC_PAGE(tkc_ring, keyring) tkc_ring_page;
void tkc_ring_page_free(tkc_ring_page *p);

/* ---- operations (docs/protocol.md) ------------------------------------ */
/* Each call is one operation of the schema (net/schema.h): its request
 * carries the fields given, in the schema's order; its reply is decoded
 * strictly against the schema. Strings are borrowed for the call and must
 * be NUL-terminated; "required" ones may not be NULL, and a value over its
 * schema limit (a string's bytes, a list's length, a number's range) is
 * refused before anything is sent (TK_EINVAL; the connection goes on).
 * Lists are (array, count). Each returns 0, the server's refusal, or a
 * local failure (top of file).
 *
 * Listings take `after` (NULL for the first page, else the `next` of the
 * page before) and `limit` (0 for the server's default, 100; at most 1000).
 * Scope: a user (personal key) always reads and acts in its own tenant and
 * account, and the tenant/account arguments are then ignored (pass NULL);
 * the operator names them. */

/* PING: *version (may be NULL) gets the server's protocol version. */
int tkc_ping(tkc *c, uint32_t *version);

/* AUTH: later requests on c act as the owner of key (operator key, personal
 * key, or gateway key). who may be NULL. */
int tkc_auth(tkc *c, const char *key, tkc_whoami *who);

/* VERIFY: secret required, client_id optional (must agree with the secret).
 * Returns 0 whether or not the token is valid: res says. */
int tkc_verify(tkc *c, const char *secret, const char *client_id, tkc_verify_res *res);

/* Pipelined VERIFY: queue one request (as tkc_send), and take the oldest
 * reply (as tkc_recv) decoded into res. A verify reply's refusal (e.g.
 * EUNAUTH without the gateway key) is returned as by the typed calls. */
int tkc_verify_send(tkc *c, const char *secret, const char *client_id);
int tkc_verify_recv(tkc *c, tkc_verify_res *res);

/* Operator operations. */
int tkc_tenant_create(tkc *c, const char *tenant);
int tkc_tenant_set(tkc *c, const char *tenant, bool api_tokens);

/* A tenant's limits for tkc_tenant_limits: a field below 0 is left as it
 * is, 0 means no limit (docs/protocol.md, "Quotas and rate limits"). */
typedef struct tkc_limits {
    int64_t max_tokens;   /* live API tokens per account */
    int64_t max_roles;    /* roles in the tenant */
    int64_t max_keys;     /* live personal keys per user */
    int64_t create_rate;  /* token creations per user per second */
    int64_t create_burst; /* token creations a user may make at once */
} tkc_limits;
#define TKC_LIMITS_UNCHANGED {-1, -1, -1, -1, -1}

/* TENANT_SET with limits (and api_tokens: 0, 1 or TKC_UNCHANGED). At least
 * one thing must be set (TK_EINVAL, nothing sent); a value above
 * 4294967295 is TK_EINVAL. */
int tkc_tenant_limits(tkc *c, const char *tenant, int api_tokens, const tkc_limits *lim);
/* TENANT_LIST: every tenant, by slug. Operator only. */
int tkc_tenant_list(tkc *c, const char *after, uint32_t limit, tkc_tenant_page *page);
/* TENANT_GET: one tenant (its toggle, limits and counts) into page. A user
 * gets its own (tenant NULL). */
int tkc_tenant_get(tkc *c, const char *tenant, tkc_tenant_page *page);
/* TENANT_DELETE: the tenant and everything of it (roles, permissions,
 * accounts, users, keys, tokens) end, irreversibly. Operator only. */
int tkc_tenant_delete(tkc *c, const char *tenant);

int tkc_perm_put(tkc *c, const char *tenant, const char *key, const char *description);
/* PERM_LIST: a tenant's permissions, by key. A user (portal flag) lists
 * its own tenant's. */
int tkc_perm_list(tkc *c, const char *tenant, const char *after, uint32_t limit,
                  tkc_perm_page *page);
/* PERM_DELETE: the permission drops out of every role (and so out of
 * every token's permissions). Operator only. */
int tkc_perm_delete(tkc *c, const char *tenant, const char *key);

int tkc_role_put(tkc *c, const char *tenant, const char *key, const char *name, uint32_t level,
                 const char *const *perms, size_t nperms);
int tkc_role_delete(tkc *c, const char *tenant, const char *key);
/* ROLE_LIST: a tenant's roles with their names, levels and permissions, by
 * key. A user (portal flag) lists its own tenant's. */
int tkc_role_list(tkc *c, const char *tenant, const char *after, uint32_t limit,
                  tkc_role_page *page);

int tkc_account_create(tkc *c, const char *tenant, const char *account);
/* ACCOUNT_LIST: a tenant's accounts (tenant required), by slug, each with
 * its live tokens. Operator only. */
int tkc_account_list(tkc *c, const char *tenant, const char *after, uint32_t limit,
                     tkc_account_page *page);
/* ACCOUNT_DELETE: the account, its users, their keys and its tokens end,
 * irreversibly. Operator only. */
int tkc_account_delete(tkc *c, const char *tenant, const char *account);

/* Creates the user with its first personal key, returned in *key. */
int tkc_user_create(tkc *c, const char *tenant, const char *account, const char *user,
                    const char *const *roles, size_t nroles, bool portal, tkc_key *key);
/* roles NULL leaves the roles unchanged (non-NULL with nroles 0 clears
 * them); portal 0, 1 or TKC_UNCHANGED. */
int tkc_user_set(tkc *c, const char *tenant, const char *account, const char *user,
                 const char *const *roles, size_t nroles, int portal);
/* USER_LIST: an account's users, by slug. A user (portal flag) lists its
 * own account's. */
int tkc_user_list(tkc *c, const char *tenant, const char *account, const char *after,
                  uint32_t limit, tkc_user_page *page);
/* USER_GET: one user (user required) into page; a user (portal flag)
 * reads its own account's. */
int tkc_user_get(tkc *c, const char *tenant, const char *account, const char *user,
                 tkc_user_page *page);
/* USER_DELETE: the user's personal keys end at once; the tokens it created
 * stay (they belong to the account). Operator only. */
int tkc_user_delete(tkc *c, const char *tenant, const char *account, const char *user);

/* expires_at: unix seconds, 0 = never. */
int tkc_key_create(tkc *c, const char *tenant, const char *account, const char *user,
                   int64_t expires_at, tkc_key *key);
int tkc_key_delete(tkc *c, const char *key_id);
/* KEY_LIST: a user's personal keys, oldest first, metadata only. A user
 * lists its own (tenant, account and user NULL); the operator names all
 * three. */
int tkc_key_list(tkc *c, const char *tenant, const char *account, const char *user,
                 const char *after, uint32_t limit, tkc_key_page *page);

/* User operations (personal key with the portal flag); the operator may
 * also list, read, change and delete tokens (naming tenant and account to
 * list them). */
int tkc_token_create(tkc *c, const char *description, const char *const *roles, size_t nroles,
                     int64_t expires_at, tkc_new_token *out);
/* TOKEN_LIST: an account's tokens, oldest first (tenant/account NULL for
 * a user). */
int tkc_token_list(tkc *c, const char *tenant, const char *account, const char *after,
                   uint32_t limit, tkc_token_page *page);
/* TOKEN_GET: one token's metadata into page; a user reads its own
 * account's. */
int tkc_token_get(tkc *c, const char *client_id, tkc_token_page *page);
/* TOKEN_SET: the token's description (required; "" clears it). Nothing
 * else of a token changes. */
int tkc_token_set(tkc *c, const char *client_id, const char *description);
/* TOKEN_DELETE: irreversible; the token no longer verifies once this
 * returns 0. */
int tkc_token_delete(tkc *c, const char *client_id);

/* The keyring: the server's named operator and gateway keys
 * (docs/server.md, "The keyring"). Operator only. */
/* KEYRING_ADD: a new key called name (a slug), an operator key or, with
 * gateway, a gateway key; it acts at once. key gets it, NUL-terminated,
 * checked to be of the kind asked for: shown once (the server keeps only
 * its hash), wiped here from every buffer but key; wipe key when done. On
 * failure key is zeroed. */
int tkc_keyring_add(tkc *c, const char *name, bool gateway, char key[TKC_RING_KEY_LEN + 1]);
/* KEYRING_LIST: the keyring's names, by name, with their kinds and
 * creation times. */
int tkc_keyring_list(tkc *c, const char *after, uint32_t limit, tkc_ring_page *page);
/* KEYRING_REMOVE: the key called name acts no more, at once, on every
 * connection (on c too when it is c's own key). The last operator key is
 * refused (TK_EDENIED: add another first); removing "initial" retires
 * DIR/operator.key for good. */
int tkc_keyring_remove(tkc *c, const char *name);

/* ---- codec (no I/O), for a gateway that runs its own event loop ------- */

/* Appends a VERIFY request body to w (client_id may be NULL). */
void tkc_verify_encode(mpw *w, const char *secret, size_t secret_len, const char *client_id);

/* Decodes a VERIFY reply body (status 0) into res. 0, or TK_EPROTO when the
 * body is malformed (res then says invalid/"malformed" and must not be
 * trusted). Never reads outside body[0..len). */
int tkc_verify_decode(const void *body, size_t len, tkc_verify_res *res);

#endif
