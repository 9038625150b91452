/* ckpt.c - LMDB's checkpoints and the crash marker; see ckpt.h. */
#include "store/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "store/fio.h"

#define BOOT_ID_LEN 36

struct ckpt {
    char *dir;
    char *marker;                 /* DIR/state.unsynced */
    bool nosync;                  /* the boot id is known: LMDB may skip syncs */
    bool dirty;                   /* the marker is on disk */
    int64_t flushed_ms;           /* the last checkpoint */
    char boot_id[BOOT_ID_LEN + 1];
};

static int read_boot_id(char out[BOOT_ID_LEN + 1])
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, BOOT_ID_LEN);
    close(fd);
    if (n != BOOT_ID_LEN)
        return -1;
    out[BOOT_ID_LEN] = '\0';
    return 0;
}

void ckpt_new(const char *dir, ckpt **out)
{
    ckpt *k = xcalloc(1, sizeof *k);
    k->dir = xstrdup(dir);
    k->marker = xpath(dir, "state.unsynced");
    k->nosync = read_boot_id(k->boot_id) == 0;
    *out = k;
}

void ckpt_free(ckpt *k)
{
    if (!k)
        return;
    free(k->dir);
    free(k->marker);
    free(k);
}

bool ckpt_nosync(const ckpt *k)
{
    return k->nosync;
}

void ckpt_sync_always(ckpt *k)
{
    k->nosync = false;
}

bool ckpt_dirty(const ckpt *k)
{
    return k->dirty;
}

bool ckpt_due(const ckpt *k, int64_t now_ms)
{
    return now_ms - k->flushed_ms >= CKPT_MS;
}

int ckpt_found(const ckpt *k)
{
    char seen[BOOT_ID_LEN + 1] = {0};
    int fd = open(k->marker, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : TK_EIO;
    ssize_t n = read(fd, seen, BOOT_ID_LEN);
    close(fd);
    if (n == BOOT_ID_LEN && k->nosync && memcmp(seen, k->boot_id, BOOT_ID_LEN) == 0)
        return 0; /* a process crash on this boot: LMDB is whole */
    return 1;
}

/* Written to a temporary name and renamed, so that a kill part-way never
 * leaves a short marker (which would read as another boot's). */
int ckpt_mark(ckpt *k)
{
    if (!k->nosync || k->dirty)
        return 0;
    char *tmp = xasprintf("%s.tmp", k->marker);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0;
    if (ok) {
        ssize_t n = write(fd, k->boot_id, BOOT_ID_LEN);
        if (n >= 0 && n != BOOT_ID_LEN)
            errno = EIO; /* short write: errno was not set */
        ok = n == BOOT_ID_LEN && fsync(fd) == 0;
        close(fd);
    }
    ok = ok && rename(tmp, k->marker) == 0 && fio_fsync_dir(k->dir) == 0;
    if (!ok) {
        int saved = errno;
        unlink(tmp); /* best effort; errno is the failure's */
        errno = saved;
    }
    free(tmp);
    if (!ok)
        return TK_EIO;
    k->dirty = true;
    return 0;
}

int ckpt_clear(ckpt *k)
{
    if ((unlink(k->marker) != 0 && errno != ENOENT) || fio_fsync_dir(k->dir) != 0)
        return TK_EIO;
    k->dirty = false;
    return 0;
}

int ckpt_flush(ckpt *k, state *st, int64_t now_ms)
{
    if (state_sync(st) != 0 || ckpt_clear(k) != 0)
        return TK_EIO;
    k->flushed_ms = now_ms;
    return 0;
}

int ckpt_set_aside(const char *dir, const char *state_dir, const char *why, const char *what,
                   bool later, tk_why *w)
{
    long long now = (long long)time(NULL);
    char *aside = NULL;
    int rc = TK_EIO;
    struct stat st;

    bool free_name = false;
    for (int k = 0; k < 1000 && !free_name; k++) {
        free(aside);
        aside = k ? xasprintf("%s.%s-%lld-%d", state_dir, why, now, k)
                  : xasprintf("%s.%s-%lld", state_dir, why, now);
        free_name = lstat(aside, &st) != 0 && errno == ENOENT;
    }
    if (!free_name) {
        tk_say(w, TK_EIO, "cannot set aside %s: no free name like %s", state_dir, aside);
    } else if (rename(state_dir, aside) != 0) {
        if (errno == ENOENT)
            rc = 0; /* no state to set aside: it is built from the log */
        else
            tk_say(w, TK_EIO, "cannot set aside %s: %s", state_dir, strerror(errno));
    } else if (fio_fsync_dir(dir) != 0) {
        tk_say(w, TK_EIO, "cannot fsync %s: %s", dir, strerror(errno));
    } else {
        fprintf(stderr, "tokend: %s: %s the state from the event log (the old state "
                        "is kept in %s)\n", what, later ? "the next start rebuilds" : "rebuilding",
                aside);
        rc = 0;
    }
    free(aside);
    return rc;
}
