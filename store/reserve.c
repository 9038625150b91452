/* reserve.c - the disk space kept back for revocations; see reserve.h. */
#include "store/reserve.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/xmalloc.h"

struct reserve {
    char *dir;
    int fd;         /* DIR/reserve; -1 when it could not be made */
    uint64_t want;  /* its size when whole */
    uint64_t have;  /* its allocated size now */
};

/* The file's allocated size (not its length: a sparse tail holds nothing). */
static uint64_t allocated(const reserve *r)
{
    struct stat st;
    if (r->fd < 0 || fstat(r->fd, &st) != 0)
        return 0;
    uint64_t blocks = (uint64_t)st.st_blocks * 512;
    return blocks < (uint64_t)st.st_size ? blocks : (uint64_t)st.st_size;
}

void rsv_open(const char *dir, uint64_t want, reserve **out)
{
    reserve *r = xcalloc(1, sizeof *r);
    char *path = xpath(dir, "reserve");
    r->dir = xstrdup(dir);
    r->want = want;
    r->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(path);
    r->have = allocated(r);
    (void)rsv_grow(r, rsv_free(r));
    *out = r;
}

void rsv_close(reserve *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->dir);
    free(r);
}

int64_t rsv_free(const reserve *r)
{
    struct statvfs sv;
    if (statvfs(r->dir, &sv) != 0)
        return INT64_MAX; /* unknown: the write itself will tell */
    return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

int64_t rsv_owed(const reserve *r)
{
    return r->fd >= 0 && r->have < r->want ? (int64_t)(r->want - r->have) : 0;
}

uint64_t rsv_have(const reserve *r)
{
    return r->have;
}

bool rsv_grow(reserve *r, int64_t spare)
{
    int64_t missing = rsv_owed(r);
    if (missing == 0 || spare < missing + RSV_SLACK)
        return false;
    if (posix_fallocate(r->fd, 0, (off_t)r->want) != 0)
        (void)ftruncate(r->fd, (off_t)r->have); /* undo a partial one */
    r->have = allocated(r);
    return true;
}

void rsv_shrink(reserve *r, uint64_t bytes)
{
    if (r->fd < 0 || r->have == 0)
        return;
    bytes += 1u << 20;
    uint64_t to = r->have > bytes ? r->have - bytes : 0;
    if (ftruncate(r->fd, (off_t)to) == 0)
        r->have = allocated(r);
}
