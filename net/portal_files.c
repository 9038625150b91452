/*
 * portal_files.c - the page's files in the binary; see portal_files.h.
 *
 * The assembler's .incbin takes each file's bytes as they are at build
 * time (the Makefile makes this object depend on the files in net/portal/): no
 * generator to keep, no copy of the files in C. The paths are relative to
 * the repository's root, where make runs the compiler.
 */
#include "net/portal_files.h"

#include <string.h>

#define EMBED(sym, file)                                                                   \
    __asm__(".section .rodata\n.balign 16\n.globl " #sym "\n" #sym ":\n.incbin \"" file  \
            "\"\n.globl " #sym "_end\n" #sym "_end:\n.byte 0\n.previous\n");             \
    extern const unsigned char sym[], sym##_end[]

EMBED(ptl_index_html, "net/portal/index.html");
EMBED(ptl_portal_js, "net/portal/portal.js");
EMBED(ptl_portal_css, "net/portal/portal.css");

bool ptl_file_at(const char *path, ptl_file *out)
{
    /* The sizes are differences of link-time addresses: not constants a
     * static initialiser may hold, so the table is made per call (three
     * rows). */
    const ptl_file files[] = {
        {"/portal/", "text/html; charset=utf-8", ptl_index_html,
         (size_t)(ptl_index_html_end - ptl_index_html)},
        {"/portal/portal.js", "text/javascript; charset=utf-8", ptl_portal_js,
         (size_t)(ptl_portal_js_end - ptl_portal_js)},
        {"/portal/portal.css", "text/css; charset=utf-8", ptl_portal_css,
         (size_t)(ptl_portal_css_end - ptl_portal_css)},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (strcmp(files[i].path, path) == 0) {
            *out = files[i];
            return true;
        }
    return false;
}
