/*
 * peers.h - connections counted per peer address (prefix peers_), for the
 * server's optional per-peer cap (--max-per-peer).
 *
 * An address is 16 bytes: IPv4 as an IPv4-mapped IPv6 address, IPv6 cut
 * to its /64, since one IPv6 host is usually given a whole /64 and would
 * otherwise get a fresh count per address. Open addressing with linear
 * probing, keyed by SipHash with a random key (a peer choosing addresses
 * cannot build long probe runs), sized once for the most addresses there
 * can be, so adding never allocates. Loop thread only.
 */
#ifndef TK_NET_PEERS_H
#define TK_NET_PEERS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#define PEERS_ADDR_LEN 16

typedef struct peers peers;

/* A table for at most max distinct addresses at once (allocation aborts on
 * failure). */
void peers_new(size_t max, peers **out);
void peers_free(peers *p); /* p may be NULL */

/* The key of sa (AF_INET or AF_INET6); false for other families (they are
 * not counted). */
bool peers_key(const struct sockaddr *sa, uint8_t out[PEERS_ADDR_LEN]);

/* Connections counted for key. */
uint32_t peers_count(const peers *p, const uint8_t key[PEERS_ADDR_LEN]);

/* Counts one more connection for key (at most max distinct keys: a caller
 * bug beyond, which aborts). */
void peers_add(peers *p, const uint8_t key[PEERS_ADDR_LEN]);

/* Counts one connection less for key (which must be counted). */
void peers_del(peers *p, const uint8_t key[PEERS_ADDR_LEN]);

#endif
