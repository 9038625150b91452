/*
 * elog.h - the append-only event log.
 *
 * The log is the source of truth: LMDB state and the in-memory index are
 * both rebuilt from it. It lives in DIR as segment files named
 * %020llu.seg after the sequence number of their first record. A segment is a
 * 16-byte header ("TKLOG001", then the first seq, u64 little-endian)
 * followed by records:
 *
 *     u32 len      payload length                       (little-endian)
 *     u32 hcrc     crc32c of the 4 len bytes, xor 0xA282EAD8
 *     u64 seq      consecutive from 1 (from S+1 after a base)
 *     u8  prev[32] chain hash of the previous record (zeros before seq 1,
 *                  the base's hash H before seq S+1)
 *     u8  payload[len]   opaque to the log (a msgpack event)
 *     u32 crc      crc32c of seq||prev||payload
 *
 * The chain hash of a record is SHA-256(seq||prev||payload): changing any
 * record breaks every later link (tamper evidence), while the CRC catches
 * plain damage cheaply. hcrc protects the length, so a flipped length bit is
 * reported as damage, never mistaken for a torn tail.
 *
 * Recovery (elog_open): every record of every segment is checked (how
 * deeply: elog_opts.check). At the end
 * of the last segment, an incomplete record (short header, or a length that
 * runs past the end of the file) or an all-zero remainder is a torn tail: it
 * is cut off and the cut bytes are kept in DIR/torn-<seq>-<unix time>.bin.
 * Anything else wrong, anywhere, is damage: elog_open fails with TK_ECORRUPT
 * and its why (core/err.h) says where and which repair command to run.
 *
 * Writes: elog_append buffers records; elog_sync writes them with one
 * write() and one fdatasync() (group commit: every record appended since the
 * last sync shares it). A failed write or fsync latches the log: it truncates
 * back to the last durable size where it can, and every later append or sync
 * returns TK_EFENCED until the log is reopened. Nothing is retried.
 *
 * The base. A log bootstrapped from a snapshot (store/snap.h) does not
 * start at seq 1: DIR/base (52 bytes: "TKBASE01", u64 seq S little-endian,
 * the 32-byte chain hash H of record S, crc32c of those 48 bytes, u32 LE;
 * written once by elog_base_write: temp file, fsync, rename, directory
 * fsync) says that the history up to and including S is held elsewhere,
 * so the first record is S+1 and links to H. Every reader honours it:
 * elog_open on an empty based log reports last seq S, head hash H, and
 * the next append is S+1 linking to H; iterators refuse from_seq <= S
 * (TK_ENOTFOUND: those records are not in this log); elog_hash_at(S) is
 * H; elog_check checks the chain from H and reports the base. A based log
 * whose first segment is not S+1, or whose first record does not link to
 * H, is damage (TK_ECORRUPT); so is a base file that does not check, and
 * a log with no base whose first segment is not 1 (a base removed). With
 * no base file everything is as it always was: seq 1, the zero link.
 *
 * One thread at a time per elog.
 */
#ifndef TK_ELOG_H
#define TK_ELOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define ELOG_MAX_PAYLOAD (1u << 20) /* 1 MiB */
#define ELOG_HASH_LEN 32

typedef struct elog elog;

/* How much of the sealed segments (all but the last) the open checks
 * before it returns. Every byte of the log is always covered: the segment
 * headers, each record's length (hcrc), CRC, seq and framing, and the last
 * segment's every chain link. The fast check (the default) computes the
 * chain hash only of each sealed segment's last record, which the next
 * segment's first record must link to: CRC-32C catches any flipped bit
 * (and, at these record sizes, any 5), so a damaged byte still refuses the
 * start, at the cost of reading the log once; SHA-256 of every record
 * would cost several times that. Edits whose CRC was made to match but
 * whose chain was not redone are then caught by the scrub: the full chain
 * of the sealed segments, checked after the open on a thread of its own
 * that uses only idle CPU, its outcome given to on_scrub. Edits chained
 * again are caught at the open by what the chain hash is compared with
 * (the state's, a signed head; store/engine.c). ELOG_CHECK_FULL checks
 * every link before the open returns, and runs no scrub. */
enum { ELOG_CHECK_FAST = 0, ELOG_CHECK_FULL = 1 };

/* The scrub's outcome, called once from its thread: rc 0 (every link of
 * the sealed segments checked, through seq checked_to), TK_ECORRUPT
 * (damage; why says where and what to run), TK_EIO (a segment could not be
 * read), TK_EBUSY (elog_close stopped it). why is borrowed for the call. */
typedef void (*elog_scrub_fn)(void *arg, int rc, uint64_t checked_to, double seconds,
                              const tk_why *why);

typedef struct elog_opts {
    uint64_t segment_bytes; /* start a new segment past this size; 0 = 64 MiB */
    int check;              /* ELOG_CHECK_FAST (0) or ELOG_CHECK_FULL */
    elog_scrub_fn on_scrub; /* may be NULL */
    void *scrub_arg;
} elog_opts;

/* Opens (creating if missing) the log in dir and recovers it as above.
 * opts may be NULL. 0, TK_ECORRUPT (damage), TK_EIO; why (may be NULL)
 * says why. */
int elog_open(const char *dir, const elog_opts *opts, elog **out, tk_why *why);

/* elog_open in two halves, so that a caller can do its own start-up work
 * while the log is checked: checking every record reads the whole log,
 * about as long as loading the state it produced. elog_open_begin checks
 * the last segment (making its records durable, cutting nothing) and
 * starts checking the others on a thread of its own; elog_last_seq is then
 * known and iterators may run, but nothing may be appended.
 * elog_open_end waits for that check and, if every record passed, cuts a
 * torn tail as elog_open does; it fails exactly where elog_open would (a
 * damaged last segment already fails elog_open_begin). After a failed
 * elog_open_end, elog_close. */
int elog_open_begin(const char *dir, const elog_opts *opts, elog **out, tk_why *why);
int elog_open_end(elog *lg, tk_why *why);

/* Closes the log; buffered but unsynced records are dropped (they were never
 * acknowledged). elog may be NULL. */
void elog_close(elog *lg);

/* Sequence number of the last durable record (0 for an empty log; any
 * thread). */
uint64_t elog_last_seq(const elog *lg);

/* The log's base seq S (0: none, the log starts at seq 1). */
uint64_t elog_base_seq(const elog *lg);

/* Sequence number the next append will get. */
uint64_t elog_next_seq(const elog *lg);

/* The chain hash of the last record appended (buffered or durable; zeros
 * for an empty log): what the state keeps beside its applied seq. */
const uint8_t *elog_head_hash(const elog *lg);

/* Buffers one record; its seq goes to *seq (may be NULL). The payload is
 * copied. 0, TK_ELIMIT (payload > ELOG_MAX_PAYLOAD), TK_EFENCED. */
int elog_append(elog *lg, const void *payload, size_t len, uint64_t *seq);

/* The two halves of elog_sync, for a writer that lets another thread wait
 * for the disk (store/engine.c's pipeline). elog_write hands the buffered
 * records to the file (one pwrite; a new segment first when the current one
 * is full, which flushes what was written before): they are written, not
 * durable, and elog_last_seq does not move. elog_flush makes every record
 * written before it durable (one fdatasync; at once when there is none) and
 * may run on another thread, concurrently with elog_append, elog_write and
 * elog_discard (never with elog_close); flushes do not overlap. elog_write
 * returns what elog_sync does for the write; elog_flush 0, TK_EIO (fenced:
 * the records written and not yet durable are cut from the file, and every
 * later write is refused) or TK_EFENCED. */
int elog_write(elog *lg, tk_why *why);
int elog_flush(elog *lg, tk_why *why);

/* The last durable record's seq and chain hash, read together (any thread). */
void elog_durable_head(elog *lg, uint64_t *seq, uint8_t hash[ELOG_HASH_LEN]);

/* Makes every buffered record durable: one write, one fdatasync, a new
 * segment when the current one is full. The look-ahead preallocation is
 * best effort: it never fails a sync whose own bytes fit. 0; TK_ENOSPC when
 * the filesystem has no room for the records (they are dropped, the file is
 * as before, and the log is NOT fenced: nothing uncertain was written);
 * TK_EIO for any other failure (now fenced; why names the
 * step and the system's reason); TK_EFENCED. */
int elog_sync(elog *lg, tk_why *why);

/* Caps the zeros a sync lays ahead of the last record (at most 4 MiB, the
 * default): a store short of space sets it low, so that the look-ahead does
 * not take the room the rest of its commit needs. */
void elog_set_lookahead(elog *lg, uint64_t bytes);

/* Bytes the next elog_sync will write (the buffered records, framed). */
size_t elog_pending(const elog *lg);

/* Drops the buffered records (never synced, never acknowledged): the next
 * append gets the seq the first of them had. */
void elog_discard(elog *lg);

/* True when the open started the scrub (elog_opts.check): its outcome
 * comes to on_scrub. Call after elog_open (or elog_open_end). */
bool elog_scrub_started(const elog *lg);

/* True once a write or fsync has failed. */
bool elog_fenced(const elog *lg);

/* ---- reading --------------------------------------------------------- */

typedef struct elog_iter elog_iter;

/* Iterates the durable records of the log in dir with seq >= from_seq,
 * checking CRC, seq continuity and the hash chain as it goes. It does not
 * cut a torn tail (it is read-only): it stops before it. 0, TK_EIO, or
 * TK_ENOTFOUND when the log has a base S and from_seq <= S (those records
 * are held by a snapshot, not here: ask for S+1, elog_base_read). */
int elog_iter_open(const char *dir, uint64_t from_seq, elog_iter **out, tk_why *why);

/* Next record: returns 1 and sets seq/payload/len (payload borrowed until
 * the next call), 0 at the end, TK_ECORRUPT on damage (why says where). */
int elog_iter_next(elog_iter *it, uint64_t *seq, const void **payload, size_t *len,
                   tk_why *why);

/* The chain hash of record seq (>= 1) of the log in dir, read with an
 * iterator (one record's segment), or the base's hash when seq is the
 * base's: 0, TK_ENOTFOUND when the log is shorter (or seq is before its
 * base), or the iterator's error. */
int elog_hash_at(const char *dir, uint64_t seq, uint8_t out[ELOG_HASH_LEN], tk_why *why);

/* Chain hash of the last record returned; before the first, the base's
 * hash when the iterator starts at the log's first segment (zeros without
 * a base), else zeros. */
const uint8_t *elog_iter_hash(const elog_iter *it);

void elog_iter_free(elog_iter *it);

/* ---- checking (tokenreplay) ------------------------------------------ */

#define ELOG_NAME_MAX 256 /* a file name in the log directory, with its NUL */

/* What elog_check found. */
typedef struct elog_report {
    uint64_t base_seq;            /* the log's base S (0: none, it starts at seq 1) ... */
    uint8_t base_hash[ELOG_HASH_LEN]; /* ... and the chain hash H at it */
    bool bad_base;                /* TK_ECORRUPT: DIR/base does not check */
    uint64_t segments;            /* *.seg files in the directory */
    uint64_t records;             /* whole, valid records from S+1 (last_seq - S) */
    uint64_t last_seq;            /* the last of them; S when none */
    uint8_t head[ELOG_HASH_LEN];  /* its chain hash (H when none) */
    uint64_t torn_seg;            /* intact log: the segment holding a torn tail ... */
    uint64_t torn_bytes;          /* ... and its length (0: none) up to the 512-byte boundary
                                     after its last nonzero byte; elog_open cuts it */
    uint64_t free_bytes;          /* zeros after the last record of the last segment: space
                                     preallocated by a writer that did not close (a kill -9,
                                     a crash), not a torn tail; elog_open keeps it */
    /* TK_ECORRUPT: the first damage is either a *.seg file whose name is not
     * a segment name (bad_name), or in segment bad_seg (its first seq) at
     * byte bad_off: 0 for the segment itself (header, or a name that breaks
     * the seq order), else the start of the first bad record. */
    char bad_name[ELOG_NAME_MAX];
    uint64_t bad_seg;
    uint64_t bad_off;
} elog_report;

/* Called for each valid record in order; payload borrowed for the call. A
 * non-zero return stops the check and is returned by elog_check. */
typedef int (*elog_check_fn)(void *arg, uint64_t seq, const void *payload, size_t len);

/* Checks the whole log in dir from seq 1, as elog_open does (CRC, seq
 * continuity, the hash chain from the zero link; from S+1 and H after a
 * base), but changes nothing: a
 * torn tail is reported, not cut. Takes no lock. fn may be NULL. Fills out
 * and returns 0 (intact), TK_ECORRUPT (damage: out says where, and
 * why the line elog_open would print), TK_EIO, or fn's value
 * (out then covers the records before the one fn refused). */
int elog_check(const char *dir, elog_check_fn fn, void *arg, elog_report *out, tk_why *why);

/* ---- the base (see the top) -------------------------------------------- */

/* Reads DIR/base: 0 (*seq, hash set), TK_ENOTFOUND (no base: *seq 0, hash
 * zeros), TK_ECORRUPT (a base file that does not check), TK_EIO. */
int elog_base_read(const char *dir, uint64_t *seq, uint8_t hash[ELOG_HASH_LEN], tk_why *why);

/* Writes DIR/base (creating dir when missing) saying the log starts after
 * record seq, whose chain hash is hash. Only into a log no writer has
 * open, with no segments and no base: else TK_EEXIST. 0, TK_EEXIST,
 * TK_EIO. */
int elog_base_write(const char *dir, uint64_t seq, const uint8_t hash[ELOG_HASH_LEN],
                    tk_why *why);

#endif
