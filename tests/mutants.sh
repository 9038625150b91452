#!/usr/bin/env bash
# Removes each domain rule's check in turn (a sed edit of the source), rebuilds
# the suite that guards it (the engine suite unless the name says another
# after an @, e.g. rule10@tests/net/test_server; bin/ is rebuilt too) and runs it:
# every mutant must make its suite fail. Shows that each rule of DESIGN
# section 1 is guarded by a test. Restores the files.
# Run from the top of the tree: tests/mutants.sh   (a few minutes)
set -u
mutants=(
  "rule1-create|core/rules.c|s/if (!api_tokens_on)/if (0)/"
  "rule1-verify|core/rules.c|s/if (kind == TK_KIND_TOKEN \&\& !api_tokens)/if (0)/"
  "rule2|core/rules.c|s/if (a->kind != TK_ACTOR_USER || !user_portal)/if (a->kind != TK_ACTOR_USER)/"
  "rule3-level|core/rules.c|s/if (role_levels\[i\] < strongest)/if (0)/"
  "rule3-noroles|core/rules.c|s/if (nroles == 0 || nroles > TK_MAX_ROLES)/if (nroles > TK_MAX_ROLES)/"
  "rule4-secret-in-log|store/plan.c|s/    new_credential(p, x, TK_KIND_TOKEN, res);/    new_credential(p, x, TK_KIND_TOKEN, res); x->desc = (tk_str){res->secret, TK_SECRET_LEN};/"
  "rule5-delete-view|store/engine.c|s/view_cred_del(e->v, \&p->dels\[i\]);/(void)p;/"
  "rule6-role-dropout|core/view.c|s/if (rid >= v->nroles || !v->roles\[rid\].key)/if (rid >= v->nroles)/"
  "rule7-see|core/rules.c|s/return a->kind == TK_ACTOR_USER \&\& a->tenant == tenant \&\& a->account == account;/return a->kind == TK_ACTOR_USER;/"
  "rule8-kind|core/rules.c|s/if (kind != want)/if (0)/"
  "rule9-list-hash|store/query.c|s/strcpy(in->description, r->desc);/memcpy(in->description, r->hash, TK_HASH_LEN);/"
  "rule10-order@tests/net/test_server|net/conn.c|s/if (c->head \&\& dsp_classify(hd.code) == DSP_INLINE) {/if (0) {/"
  "rule11-commit|store/plan.c|s/if ((rc = plan_actor_stands(p->t, \&r->actor, p->now_ms \/ 1000, res->msg)))/if (0)/"
  "rule11-expiry|core/rules.c|s/return rules_verify_state(TK_KIND_PERSONAL, kind, true, expires_at, now) == TK_V_VALID;/return kind == TK_KIND_PERSONAL;/"
  "rule12-reserve@tests/store/test_space|store/engine.c|s/if (res\[i\].status == 0 \&\& full_msg \&\& !p.revokes) {/if (res[i].status == 0 \&\& full_msg) {/"
  "http-permission@tests/net/test_http|net/gateway.c|s/    if (lacks(in, query, qlen, \&a->v, missing, sizeof missing)) {/    if (0) {/"
  "verify-http-permission@tests/net/test_verify_http|net/gateway.c|s/    if (lacks(in, query, qlen, \&a->v, missing, sizeof missing)) {/    if (0) {/"
  "verify-http-gateway-key@tests/net/test_verify_http|net/gateway.c|s/    if (!k->set)$/    if (1)/"
  "http-user-scope@tests/net/test_http|net/http.c|s/if (actor.kind == TK_ACTOR_USER \&\& strstr(rt->path, \"{tenant}\")) {/if (0) {/"
  "http-json-verify-401@tests/net/test_http|net/http.c|s/        reply_ok(h, req, op, code, \&w, status);/        reply_ok(h, req, op, 200, \&w, status);/"
  "rule11-session-live|store/engine.c|s/if (!a->session || (e->sessions \&\& ses_live(e->sessions, a->session, now_s)))/if (1)/"
  "rule11-session-portal|store/plan.c|s/        if (!u.portal)$/        if (0)/"
  "rule2-session-mint|store/query.c|s/    if (!u.portal) \/\* rule 2: the page is for managing tokens \*\//    if (0)/"
  "portal-csrf@tests/net/test_portal|net/portal.c|s/    if (changes(req)) {/    if (0) {/"
  "portal-link-expiry@tests/core/test_session|core/session.c|s/ || s->state != want || now >= s->expires)/ || s->state != want)/"
  "keyring-commit|store/plan.c|s/        \&\& (rc = plan_operator_stands(p->t, \&r->actor, res->msg)))/        \&\& 0)/"
  "keyring-last-operator|store/plan.c|s/    if (oper \&\& c.operators == 1)/    if (0)/"
  "keyring-live-gateway@tests/net/test_server|net/conn.c|s/    if ((c->auth != AU_GATEWAY \&\& c->auth != AU_OPERATOR) || gen == c->ring_gen)/    if (1)/"
  "audit-by@tests/store/test_tokenreplay|store/plan.c|s/    return by(p, r);/    return 0;/"
  "chain-at-applied|store/engine.c|s/    if (applied == 0 || !state_chain(t, kept) || sodium_memcmp(kept, log_hash, TK_HASH_LEN) == 0)/    if (1)/"
  "barrier-waits@tests/net/test_barrier|net/barrier.c|s/        if (b->reps\[i\].applied >= seq)$/        if (1)/"
  "barrier-grace@tests/net/test_barrier|net/barrier.c|s/    bool ok = now_ns >= b->grace_ns;/    bool ok = true;/"
  "replica-chain@tests/store/test_engine_follow|store/engine.c|s/        if (sodium_memcmp(elog_head_hash(e->log), r->hash, TK_HASH_LEN) != 0) {/        if (0) {/"
  "replica-gap@tests/store/test_engine_follow|store/engine.c|s/        if (r->seq > next)$/        if (0)/"
  "replica-unavailable@tests/store/test_engine_follow|store/engine.c|s/    if (!__atomic_load_n(\&e->unavailable, __ATOMIC_RELAXED))$/    if (1)/"
  "replica-read-only@tests/store/test_engine_follow|store/engine.c|s/    if (__atomic_load_n(\&e->readonly, __ATOMIC_ACQUIRE)) {/    if (0) {/"
  "barrier-gate@tests/net/test_repl|net/writer.c|s/            \&\& !w->gate(w->gate_arg, j->res.seq))/            \&\& 0)/"
  "log-segment-link@tests/store/test_elog|store/elog.c|s/    if (!w->crc_only || !w->last_body)$/    if (1)/"
  "log-scrub-fences|store/engine.c|s/        fence(e, \"the log is damaged (found by its background check; tokend's log says \"/        if (0) fence(e, \"the log is damaged (found by its background check; tokend's log says \"/"
  "sockq-batch@tests/net/test_sockq|net/sockq.c|s/    if (!q->uring || n == 1) {/    if (1) {/"
  "conn-turn-reads@tests/net/test_sockq|net/conn.c|s/    if (h->sq \&\& !c->ssl) {$/    if (0) {/"
  "conn-turn-prefetch@tests/net/test_sockq|net/conn.c|s/    if (op == SQ_RECV \&\& !h->vh \&\& n > 1)$/    if (0)/"
  "conn-ring-failed@tests/net/test_sockq|net/conn.c|s/    if (ring \&\& !sq_uring(h->sq)) \/\*/    if (ring \&\& 0) \/\*/"
  "conn-reset-unread@tests/net/test_server|net/conn.c|s/ti.tcpi_state == TCP_CLOSE)/0)/"
  "conn-half-close-unread@tests/net/test_server|net/conn.c|s/ti.tcpi_state == TCP_CLOSE)/ti.tcpi_state != TCP_ESTABLISHED)/"
  "lmdb-carry-read@tests/store/test_engine_sync|store/engine.c|s/    eng_apply(e); \/\* the carried transaction first \*\//    (void)e;/"
  "lmdb-carry-large@tests/store/test_engine_sync|store/engine.c|s/    if (n > CARRY_EVENTS) \/\*/    if (0) \/\*/"
  "replica-lease@tests/net/test_repl|net/follower.c|s/(!f->stopped\[0\] \&\& now < f->lease_until \&\& f->applied >= f->need)/(!f->stopped[0] \&\& f->applied >= f->need)/"
)
fail=0
for m in "${mutants[@]}"; do
  IFS='|' read -r name file expr <<<"$m"
  suite=tests/store/test_engine
  case $name in *@*) suite=${name#*@}; name=${name%%@*} ;; esac
  suite=build/rel/$suite
  cp "$file" "$file.orig"
  sed -i "$expr" "$file"
  if cmp -s "$file" "$file.orig"; then
    echo "MUTANT $name: the edit did not apply (source changed?)"; fail=1
  elif ! make -s all "$suite" >/dev/null 2>&1; then
    echo "MUTANT $name: does not build"; fail=1
  elif BIN=bin "$suite" >/dev/null 2>&1; then
    echo "MUTANT $name: SURVIVED (no test failed)"; fail=1
  else
    echo "mutant $name: killed"
  fi
  mv "$file.orig" "$file"
  touch "$file"
done
make -s all build/rel/tests/store/test_engine build/rel/tests/net/test_server >/dev/null
exit $fail
