/* keyfile.c - read or create a key file; see keyfile.h. */
#include "store/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "store/fio.h"

bool keyfile_key_ok(const char *s, size_t n, const char *prefix)
{
    if (n != KEYFILE_KEY_LEN || memcmp(s, prefix, 4) != 0)
        return false;
    for (size_t i = 4; i < KEYFILE_KEY_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

void keyfile_new_key(const char *prefix, char key[KEYFILE_KEY_LEN + 1])
{
    uint8_t raw[32];
    randombytes_buf(raw, sizeof raw);
    memcpy(key, prefix, 4);
    sodium_bin2hex(key + 4, KEYFILE_KEY_LEN - 4 + 1, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
}

/* A key file: the key, then nothing or a newline. */
static bool well_formed(const char *buf, size_t n, const char *prefix)
{
    if (n < KEYFILE_KEY_LEN || (n > KEYFILE_KEY_LEN && buf[KEYFILE_KEY_LEN] != '\n'))
        return false;
    return keyfile_key_ok(buf, KEYFILE_KEY_LEN, prefix);
}

int keyfile_load(const char *dir, const char *name, const char *prefix,
                 char key[KEYFILE_KEY_LEN + 1], tk_why *why)
{
    char *path = xpath(dir, name);
    char buf[KEYFILE_KEY_LEN + 2];
    int rc = TK_EIO;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 && errno == ENOENT) {
        keyfile_new_key(prefix, buf);
        buf[KEYFILE_KEY_LEN] = '\n';
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, buf, KEYFILE_KEY_LEN + 1) != KEYFILE_KEY_LEN + 1
            || fsync(fd) != 0 || fio_fsync_dir(dir) != 0) {
            tk_say(why, TK_EIO, "cannot create %s: %s", path, strerror(errno));
            goto done;
        }
    } else if (fd < 0) {
        tk_say(why, TK_EIO, "cannot read %s: %s", path, strerror(errno));
        goto done;
    } else {
        struct stat st;
        if (fstat(fd, &st) != 0) {
            tk_say(why, TK_EIO, "cannot stat %s: %s", path, strerror(errno));
            goto done;
        }
        if (st.st_mode & 077) { /* as ssh refuses a private key others may read */
            rc = tk_say(why, TK_EINVAL,
                        "%s may be read by others (mode %04o): a key file must be the owner's "
                        "alone; chmod 600 %s",
                        path, (unsigned)(st.st_mode & 07777), path);
            goto done;
        }
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 || !well_formed(buf, (size_t)n, prefix)) {
            rc = tk_say(why, TK_EINVAL, "%s is not a key file (expected %s and 64 hex digits)",
                        path, prefix);
            goto done;
        }
    }
    memcpy(key, buf, KEYFILE_KEY_LEN);
    key[KEYFILE_KEY_LEN] = '\0';
    rc = 0;
done:
    sodium_memzero(buf, sizeof buf);
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}
