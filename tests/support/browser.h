/*
 * browser.h - a real headless Chromium driven from a test (prefix brw_), so
 * that a suite can check the pages tokend serves the way a user gets them:
 * layout at a phone's width, <dialog>s, the keyboard, the clipboard,
 * cookies, console errors. The browser is run by tests/support/browser.py
 * (Debian's /usr/bin/python3 with python3-selenium, chromium and
 * chromium-driver; never the network), a child process spoken to in JSON
 * lines: one command, one reply (see browser.py for the commands).
 *
 * Every reply is awaited with a timeout, so a hung browser fails the test
 * instead of hanging it; after such a timeout the handle is marked broken
 * and every later call fails at once. The child inherits none of the
 * test's descriptors, and it goes (quitting the browser) when the test
 * process goes: stdin EOF, and PR_SET_PDEATHSIG (which follows the thread
 * that called brw_open: open and close a brw from one thread).
 *
 * Elements are named by CSS selector; waits inside the browser default to
 * 5 s ("timeout" in seconds in brw_call's args overrides it). Set
 * TOKEND_BROWSER_LOG=<file> for chromedriver's verbose log.
 */
#ifndef TK_TEST_BROWSER_H
#define TK_TEST_BROWSER_H
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef struct brw brw;

/* True when everything brw_open needs is installed: /usr/bin/python3,
 * /usr/bin/chromium, /usr/bin/chromedriver and python3's selenium module.
 * If not, and why is not NULL, a message naming the missing Debian packages
 * goes into why[0..cap). Runs python3 once (about 0.1 s). */
bool brw_available(char *why, size_t cap);

/* Starts the browser: /usr/bin/python3 running $TOKEND_BROWSER_PY, or
 * tests/support/browser.py relative to the working directory (the repo
 * root under make test), and waits up to 30 s for it to be ready. 0 and
 * *out set (caller owns it: brw_close), or -1 with *out NULL and the reason
 * in brw_error(NULL) (kept per thread until the next failed brw_open). */
int brw_open(brw **out);

/* Quits the browser, waits up to 10 s for the child (then SIGKILL), reaps
 * it and frees b. NULL is a no-op. */
void brw_close(brw *b);

/* The message of b's last failed call ("" after a successful one), or of
 * this thread's last failed brw_open when b is NULL. Owned by b (by the
 * thread), valid until the next call on it. Never NULL. */
const char *brw_error(const brw *b);

/* How long a reply is awaited, in ms (default 20000). A command carrying a
 * "timeout" gets at least that plus 15 s. */
void brw_set_timeout(brw *b, int ms);

/* Sends {"op": op, ...args} and returns the reply's "value", a new
 * reference (json_null() when it has none), or NULL on failure (the
 * browser's ok:false, a timeout, a dead child; message in brw_error).
 * args is an object or NULL; its reference is stolen, even on failure. */
json_t *brw_call(brw *b, const char *op, json_t *args);

/* The commands, by name; 0 or -1 (message in brw_error). */
int brw_get(brw *b, const char *url);                    /* load, wait up to 5 s */
int brw_click(brw *b, const char *css);                  /* once visible+enabled */
int brw_type(brw *b, const char *css, const char *text); /* appends to the field */
int brw_key(brw *b, const char *css, const char *key);   /* "Enter", "Shift+Tab"; css NULL: the focus */
int brw_select(brw *b, const char *css, const char *value);
int brw_size(brw *b, int w, int h);                      /* the layout viewport, in CSS px */
int brw_shot(brw *b, const char *path);                  /* PNG of the whole page (1) */

/* (1) position:fixed layers (a modal's backdrop) are drawn once, at the
 * scroll position; brw_call(b, "shot", {"path":..., "full": false}) takes
 * the viewport only. */

/* Waits up to 5 s for state: "visible", "present", "gone" (absent or
 * hidden) or "enabled" (visible and enabled). */
int brw_wait(brw *b, const char *css, const char *state);

/* Strings read from the page, malloc'd (caller frees), NULL on failure.
 * brw_text: innerText; brw_value: the .value property; brw_attr: the
 * attribute as written, NULL also when absent (then brw_error(b) is "");
 * brw_clipboard: the clipboard's text. */
char *brw_text(brw *b, const char *css);
char *brw_value(brw *b, const char *css);
char *brw_attr(brw *b, const char *css, const char *name);
char *brw_clipboard(brw *b);

/* How many elements match css now (no wait), or -1. */
int brw_count(brw *b, const char *css);

/* 1 when the first match of css is displayed, 0 when it is not or there is
 * none (no wait), -1 on failure. */
int brw_visible(brw *b, const char *css);

/* Runs script as a function body in the page ("return ..." gives the
 * value); the value as brw_call returns it (caller decrefs), or NULL. */
json_t *brw_js(brw *b, const char *script);

#endif
