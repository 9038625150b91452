/*
 * tokend.c - the server program: options, signals, and net/server.h.
 *
 * Thin on purpose: everything the server does lives in net/ (server.c,
 * conn.c, writer.c, dispatch.c), and the options (the flags, the
 * configuration file of --config, --help, --check-config) in
 * net/options.c; this file runs them and turns SIGTERM/SIGINT into
 * srv_stop. Exit status: 0 after a clean stop (or --help, or a valid
 * --check-config), 1 when the server cannot start, 2 for a usage or
 * configuration error.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "net/options.h"
#include "net/server.h"

static srv *the_server;

static void on_signal(int sig)
{
    (void)sig;
    if (the_server)
        srv_stop(the_server);
}

/* Runs the server with o until it stops: 0, or 1 when it cannot start. */
static int serve(const srv_opts *o)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL); /* a peer gone mid-write is an error return, not a death */
    if (srv_open(o, &the_server) != 0)
        return 1;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int rc = srv_run(the_server);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    srv_close(the_server);
    the_server = NULL;
    libevent_global_shutdown();
    return rc;
}

int main(int argc, char **argv)
{
    opt_cfg *cfg;
    opt_action act;
    tk_why why;
    int rc;
    opt_new(&cfg);
    if (opt_parse_args(cfg, argc, argv, &act, &why) != 0) {
        fprintf(stderr, "tokend: %s\n", why.msg);
        rc = 2;
    } else if (act == OPT_HELP) {
        opt_usage(stdout);
        rc = 0;
    } else if (act == OPT_CHECK) {
        opt_print(cfg, stdout);
        rc = 0;
    } else {
        rc = serve(opt_srv(cfg));
    }
    opt_free(cfg);
    return rc;
}
