/*
 * portal_files.h - the page's files, compiled into the binary (prefix
 * ptl_): net/portal/index.html, portal.js and portal.css, so that the page
 * needs nothing installed beside bin/tokend and nothing from the network.
 */
#ifndef TK_NET_PORTAL_FILES_H
#define TK_NET_PORTAL_FILES_H
#include <stdbool.h>
#include <stddef.h>

typedef struct ptl_file {
    const char *path; /* as requested: "/portal/", "/portal/portal.js", ... */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t len;
} ptl_file;

/* The file served at path into *out: true, or false for none. */
bool ptl_file_at(const char *path, ptl_file *out);

#endif
