/*
 * tokend portal: the self-service page for API tokens.
 *
 * Served by tokend at /portal/ under a strict Content-Security-Policy: no inline
 * code or styles, no eval, same-origin requests only. Plain ES2020, no library.
 *
 * Two ways in:
 *  - a portal session: an HttpOnly cookie set by the server; every state-changing
 *    request sends the session's CSRF value in X-Tokend-CSRF;
 *  - a pasted key (operators, testers): kept in a variable of this script only
 *    (never in storage or cookies) and sent as "Authorization: Bearer <key>".
 *
 * Every piece of data reaches the page through textContent (or DOM nodes built
 * from it), never through innerHTML: descriptions are user input.
 *
 * Layout of this file: constants and state, DOM and formatting helpers, the api()
 * helper, screens (sign-in, ended, app), tabs, then one part per view (tokens,
 * token menus, generate / secret / delete dialogs, personal keys, tenants admin),
 * and the start-up at the end.
 */
'use strict';

(() => {
  /* ------------------------------------------------------------------ */
  /* Constants and state                                                 */
  /* ------------------------------------------------------------------ */

  const TOKENS_PAGE_SIZE = 20;
  const LIST_PAGE_SIZE = 100;
  const LIST_MAX_PAGES = 200;        /* a bound on following "next" in listAll() */
  const SEARCH_DEBOUNCE_MS = 250;
  const DESCRIPTION_MAX_BYTES = 1024; /* the server's limit is in UTF-8 bytes */
  const MAX_TIMER_MS = 2147483647;    /* setTimeout's largest delay */

  /** Who is signed in, and how. Reset by resetAuth(). */
  const auth = {
    mode: '',       /* '' (signed out) | 'session' | 'key' */
    key: '',        /* the pasted key, in key mode only */
    csrf: '',       /* the session's CSRF value, in session mode only */
    actor: '',      /* 'user' | 'operator' */
    tenant: '',
    account: '',
    user: '',
    expiresAt: 0,   /* session mode: unix seconds */
    epoch: 0,       /* bumped on every sign-in and sign-out: late replies are dropped */
    controller: null, /* aborts the signed-in session's requests when it ends */
    expiryTimer: 0,
  };

  /** The tokens list: the search, the current cursor and the cursors before it. */
  const tokensView = {
    search: '',
    cursor: '',     /* '' = the first page */
    back: [],       /* cursors of the previous pages, for "Previous" */
    page: 1,
    next: '',       /* the cursor of the next page, '' when there is none */
    seq: 0,         /* request sequence: only the newest reply is shown */
    debounce: 0,
    highlight: '',  /* the client ID of a token just generated */
    rows: new Map(), /* client ID -> token row, for the delete dialog */
  };

  /** The roles a user may choose from, cached from the last load. */
  const roleData = {
    roles: null,    /* [{key, name, level, permissions}] or null before the first load */
    myRoles: null,  /* the user's own role keys */
    signature: '',  /* JSON of both, to re-render the dialog only when they changed */
    loading: null,  /* the pending load, shared by concurrent callers */
  };

  /** The admin view's selected tenant and its request sequence. */
  const adminView = { tenant: '', seq: 0, patching: false };

  /** Where focus goes back to when a dialog closes. */
  const dialogOpeners = new WeakMap();
  /** Dialogs that are waiting for a reply and must not be closed. */
  const busyDialogs = new Set();

  let openMenu = null;   /* {button, menu} of the open token menu */
  let menuSeq = 0;       /* for unique menu ids */

  /* ------------------------------------------------------------------ */
  /* DOM helpers                                                         */
  /* ------------------------------------------------------------------ */

  const $ = (id) => document.getElementById(id);

  /**
   * Make an element. props: className, text (textContent), hidden, id, type,
   * attrs (plain attributes), data (data-* attributes). Children are nodes or
   * strings (strings become text nodes).
   */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    if (props.id) node.id = props.id;
    if (props.className) node.className = props.className;
    if (props.type) node.type = props.type;
    if (props.text !== undefined) node.textContent = props.text;
    if (props.hidden) node.hidden = true;
    for (const [name, value] of Object.entries(props.attrs || {})) node.setAttribute(name, value);
    for (const [name, value] of Object.entries(props.data || {})) node.dataset[name] = value;
    node.append(...children);
    return node;
  }

  /** Put text in a message element, hidden while it is empty. */
  function setMessage(node, text) {
    node.hidden = !text;
    node.textContent = text || '';
  }

  function showStatus(text) {
    setMessage($('error'), '');
    setMessage($('status'), text);
  }

  function showError(text) {
    setMessage($('status'), '');
    setMessage($('error'), text);
  }

  function clearMessages() {
    setMessage($('status'), '');
    setMessage($('error'), '');
  }

  /** Report a failed request as "<what>: <why>", unless it was silent (the session ended). */
  function reportError(what, err, target = $('error')) {
    if (err && err.silent) return;
    let why = err && err.message;
    if (!(err instanceof ApiError)) {
      console.error(err);   /* a bug in this page, not an answer from the server */
      why = 'something went wrong on this page. Reload it and try again.';
    }
    const text = `${what}: ${why}`;
    if (target === $('error')) showError(text);
    else setMessage(target, text);
  }

  /** Move focus to a node if it is still in the page, else to a fallback. */
  function focusOr(node, fallback) {
    const target = node && node.isConnected && !node.disabled ? node : fallback;
    if (target && target.isConnected) target.focus();
  }

  /* ------------------------------------------------------------------ */
  /* Formatting                                                          */
  /* ------------------------------------------------------------------ */

  /** Unix seconds -> "YYYY-MM-DD" (UTC). */
  function ymd(seconds) {
    const d = new Date(Number(seconds) * 1000);
    return Number.isFinite(d.getTime()) ? d.toISOString().slice(0, 10) : '';
  }

  /** A <time> element showing the date; the full UTC time is in its tooltip. */
  function dateNode(seconds, zeroText) {
    if (!seconds) return el('span', { className: 'never', text: zeroText || '' });
    const d = new Date(Number(seconds) * 1000);
    if (!Number.isFinite(d.getTime())) return el('span', { text: String(seconds) });
    const iso = d.toISOString();
    return el('time', {
      text: iso.slice(0, 10),
      attrs: { datetime: iso, title: `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` },
    });
  }

  /** Role keys are [A-Za-z0-9:._-]; ids keep [A-Za-z0-9_-]. */
  function idPart(key) {
    return String(key).replace(/[^A-Za-z0-9_-]/g, '_');
  }

  function utf8Length(text) {
    return new TextEncoder().encode(text).length;
  }

  const enc = encodeURIComponent;

  /* ------------------------------------------------------------------ */
  /* The API                                                             */
  /* ------------------------------------------------------------------ */

  class ApiError extends Error {
    constructor(status, code, message, extra = {}) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.code = code || '';
      this.silent = Boolean(extra.silent);
      this.data = extra.data || null;
    }
  }

  /** Words for a failed reply that carries no message of its own. */
  function fallbackMessage(status) {
    if (status === 400) return 'the request was not accepted.';
    if (status === 403) return 'you are not allowed to do this.';
    if (status === 404) return 'it was not found.';
    if (status === 413) return 'a limit was reached.';
    if (status === 429) return 'too many requests; wait a moment and try again.';
    if (status === 503) return 'the server is busy; try again in a moment.';
    return `the server answered with HTTP ${status}.`;
  }

  /**
   * One API call. Adds the credential (Bearer key, or the CSRF header on
   * state-changing requests in session mode), sends and parses JSON, and turns
   * failures into ApiError with the server's message.
   *
   * A 401 means the session ended: the ended screen is shown and the error is
   * silent. With probe: true (checking a session or a pasted key) a 401 is just
   * thrown, for the caller to handle.
   */
  async function api(method, path, { body, probe = false, key } = {}) {
    const headers = { Accept: 'application/json' };
    const bearer = key !== undefined ? key : auth.mode === 'key' ? auth.key : '';
    if (bearer) {
      headers.Authorization = `Bearer ${bearer}`;
    } else if (auth.mode === 'session' && method !== 'GET' && method !== 'HEAD') {
      headers['X-Tokend-CSRF'] = auth.csrf;
    }
    if (body !== undefined) headers['Content-Type'] = 'application/json';

    const epoch = auth.epoch;
    const signal = !probe && auth.controller ? auth.controller.signal : undefined;
    let res;
    let text;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
        signal,
      });
      text = await res.text();
    } catch (err) {
      if (err && err.name === 'AbortError') throw new ApiError(0, 'aborted', 'cancelled.', { silent: true });
      throw new ApiError(0, 'network', 'the server could not be reached. Check your connection and try again.');
    }
    /* The session changed while this request was on its way: drop the reply. */
    if (!probe && epoch !== auth.epoch) throw new ApiError(0, 'stale', 'cancelled.', { silent: true });

    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (res.ok) return data && typeof data === 'object' ? data : {};

    const code = data && typeof data.error === 'string' ? data.error : '';
    let message = data && typeof data.message === 'string' && data.message ? data.message : fallbackMessage(res.status);
    if (res.status === 429) {
      const ms = Number(data && data.retry_after_ms) || Number(res.headers.get('Retry-After')) * 1000;
      if (ms > 0) message += ` (try again in ${Math.ceil(ms / 1000)} s)`;
    }
    if (res.status === 401 && !probe) {
      sessionEnded();
      throw new ApiError(401, code, message, { silent: true, data });
    }
    throw new ApiError(res.status, code, message, { data });
  }

  /** GET every page of a listing (following "next" while "more"): the rows of field. */
  async function listAll(path, field) {
    const rows = [];
    let after = '';
    for (let i = 0; i < LIST_MAX_PAGES; i++) {
      const sep = path.includes('?') ? '&' : '?';
      const data = await api('GET', after ? `${path}${sep}after=${enc(after)}` : path);
      if (Array.isArray(data[field])) rows.push(...data[field]);
      if (!data.more || !data.next) break;
      after = data.next;
    }
    return rows;
  }

  /* ------------------------------------------------------------------ */
  /* Screens: sign-in, ended, the app                                    */
  /* ------------------------------------------------------------------ */

  /** Forget the credential and everything shown for it. */
  function resetAuth() {
    if (auth.controller) auth.controller.abort();
    clearTimeout(auth.expiryTimer);
    Object.assign(auth, {
      mode: '', key: '', csrf: '', actor: '', tenant: '', account: '', user: '',
      expiresAt: 0, controller: null, expiryTimer: 0,
    });
    auth.epoch += 1;
  }

  /** Take down the signed-in page: close dialogs and menus, empty every view. */
  function teardownApp() {
    setupTabs('');    /* every tab and panel back in the page, as in the markup */
    closeMenu(false);
    busyDialogs.clear();
    for (const id of ['generate-dialog', 'delete-dialog', 'secret-dialog']) {
      const dialog = $(id);
      if (dialog.open) dialog.close();
    }
    eraseSecret();
    clearTimeout(tokensView.debounce);
    Object.assign(tokensView, { search: '', cursor: '', back: [], page: 1, next: '', highlight: '' });
    tokensView.seq += 1;
    tokensView.rows.clear();
    Object.assign(roleData, { roles: null, myRoles: null, signature: '', loading: null });
    Object.assign(adminView, { tenant: '', patching: false });
    adminView.seq += 1;
    $('tokens-search').value = '';
    $('tokens-table').tBodies[0].replaceChildren();
    $('keys-table').tBodies[0].replaceChildren();
    $('admin-roles-table').tBodies[0].replaceChildren();
    $('admin-tenant').replaceChildren();
    $('admin-tenant').disabled = true;      /* both usable again once loaded */
    $('admin-api-tokens').disabled = true;
    $('admin-api-tokens').checked = false;
    $('gen-roles').replaceChildren();
    $('gen-form').reset();
    $('whoami').textContent = '';
    $('intro').textContent = '';
    $('intro').hidden = true;
    $('app').hidden = true;
    $('session-bar').hidden = true;
  }

  function showSignin(message) {
    $('boot').hidden = true;
    $('signin').hidden = false;
    $('signin-submit').disabled = false;
    setSigninError(message || '');
  }

  function setSigninError(text) {
    setMessage($('signin-error'), text);
    if (text) $('signin-key').setAttribute('aria-invalid', 'true');
    else $('signin-key').removeAttribute('aria-invalid');
  }

  /**
   * Any 401: the session expired, was signed out, or the user lost portal access.
   * Show the ended screen, and in key mode the sign-in form again.
   */
  function sessionEnded(title = 'Session ended') {
    if (!auth.mode) return;     /* already ended */
    const wasKey = auth.mode === 'key';
    resetAuth();
    teardownApp();
    clearMessages();
    $('ended-title').textContent = title;
    $('ended').hidden = false;
    if (wasKey) showSignin();
    $('ended-title').focus();
  }

  /** Signed in: remember who, set up the tabs for the actor, open the first view. */
  function enterApp(mode, session, key) {
    resetAuth();
    auth.mode = mode;
    auth.key = mode === 'key' ? key : '';
    auth.csrf = mode === 'session' ? String(session.csrf || '') : '';
    auth.actor = session.actor === 'operator' ? 'operator' : 'user';
    auth.tenant = String(session.tenant || '');
    auth.account = String(session.account || '');
    auth.user = String(session.user || '');
    auth.expiresAt = Number(session.expires_at) || 0;
    auth.controller = new AbortController();

    $('boot').hidden = true;
    $('signin').hidden = true;
    $('ended').hidden = true;
    clearMessages();

    $('whoami').textContent = auth.actor === 'operator'
      ? 'operator'
      : [auth.user, auth.account, auth.tenant].filter(Boolean).join(' · ');
    $('intro').textContent = auth.actor === 'operator'
      ? 'You are signed in with the operator key. Switch API tokens on or off for a tenant and review its roles.'
      : `API tokens let your systems call ${auth.tenant || 'your vendor'}'s API. A token carries roles no stronger than yours.`;
    $('tokens-caption').textContent = auth.account ? `API tokens of ${auth.account}` : 'API tokens';

    setupTabs(auth.actor);
    $('session-bar').hidden = false;
    $('intro').hidden = false;
    $('app').hidden = false;
    selectTab(currentTabs()[0], false);

    if (auth.actor === 'user') loadRoleData().catch(() => {}); /* warm the generate dialog */
    if (mode === 'session') scheduleExpiryCheck();
  }

  /** In session mode, check the session again when it is due to expire. */
  function scheduleExpiryCheck() {
    clearTimeout(auth.expiryTimer);
    if (!auth.expiresAt) return;
    const delay = Math.min(Math.max(auth.expiresAt * 1000 - Date.now() + 1000, 1000), MAX_TIMER_MS);
    auth.expiryTimer = setTimeout(async () => {
      try {
        const s = await api('GET', '/v1/portal/session');  /* a 401 shows the ended screen */
        const next = Number(s.expires_at) || 0;
        if (next && next !== auth.expiresAt) {
          auth.expiresAt = next;
          if (s.csrf) auth.csrf = String(s.csrf);
          scheduleExpiryCheck();
        }
      } catch (_) { /* a network failure: the next request will tell */ }
    }, delay);
  }

  /** Sign in with a pasted key. */
  async function onSigninSubmit(event) {
    event.preventDefault();
    const input = $('signin-key');
    const key = input.value.trim();
    if (!key) {
      setSigninError('Paste a personal key or the operator key.');
      input.focus();
      return;
    }
    const button = $('signin-submit');
    button.disabled = true;
    setSigninError('');
    try {
      const session = await api('GET', '/v1/portal/session', { probe: true, key });
      input.value = '';  /* the key now lives in auth.key only */
      enterApp('key', session, key);
      focusOr($('tablist').querySelector('[role="tab"][aria-selected="true"]'));
    } catch (err) {
      if (!(err instanceof ApiError)) console.error(err);
      const why = err instanceof ApiError ? err.message : 'something went wrong on this page.';
      setSigninError(err.status === 401 ? `The key was not accepted: ${why}` : `Could not sign in: ${why}`);
      input.focus();
    } finally {
      button.disabled = false;
    }
  }

  /** Sign out: end the portal session on the server, or just forget the key. */
  async function onSignout() {
    if (auth.mode === 'key') {
      resetAuth();
      teardownApp();
      clearMessages();
      $('ended').hidden = true;
      showSignin();
      $('signin-key').focus();
      return;
    }
    const button = $('signout');
    button.disabled = true;
    try {
      await api('DELETE', '/v1/portal/session');
      sessionEnded('Signed out');
    } catch (err) {
      reportError('Could not sign out', err);
    } finally {
      button.disabled = false;
    }
  }

  /* ------------------------------------------------------------------ */
  /* Tabs                                                                */
  /* ------------------------------------------------------------------ */

  /* Each tab: its button, its panel, who sees it, and the view it loads. */
  const TABS = [
    { tab: 'tab-tokens', panel: 'panel-tokens', actor: 'user', load: () => loadTokens() },
    { tab: 'tab-keys', panel: 'panel-keys', actor: 'user', load: () => loadKeys() },
    { tab: 'tab-admin', panel: 'panel-admin', actor: 'operator', load: () => loadAdmin() },
  ].map((t) => ({ ...t, tabEl: $(t.tab), panelEl: $(t.panel) }));

  /** Only the actor's tabs exist in the page: the others are taken out of it ('' = all). */
  function setupTabs(actor) {
    const mine = TABS.filter((t) => !actor || t.actor === actor);
    for (const t of TABS) {
      if (actor && t.actor !== actor) {
        t.tabEl.remove();
        t.panelEl.remove();
      }
    }
    $('tablist').append(...mine.map((t) => t.tabEl));
    $('panels').append(...mine.map((t) => t.panelEl));
  }

  function currentTabs() {
    return TABS.filter((t) => t.tabEl.isConnected);
  }

  /** Show a tab's panel (and load its view); focus the tab when asked. */
  function selectTab(entry, focus = true) {
    if (!entry) return;
    closeMenu(false);
    for (const t of currentTabs()) {
      const on = t === entry;
      t.tabEl.setAttribute('aria-selected', on ? 'true' : 'false');
      t.tabEl.tabIndex = on ? 0 : -1;
      t.panelEl.hidden = !on;
    }
    if (focus) entry.tabEl.focus();
    entry.load();
  }

  /** Arrow keys, Home and End move between tabs (and select them). */
  function onTabKeydown(event) {
    const tabs = currentTabs();
    const i = tabs.findIndex((t) => t.tabEl === event.target);
    if (i < 0) return;
    let j = -1;
    if (event.key === 'ArrowRight' || event.key === 'ArrowDown') j = (i + 1) % tabs.length;
    else if (event.key === 'ArrowLeft' || event.key === 'ArrowUp') j = (i - 1 + tabs.length) % tabs.length;
    else if (event.key === 'Home') j = 0;
    else if (event.key === 'End') j = tabs.length - 1;
    if (j < 0) return;
    event.preventDefault();
    clearMessages();
    selectTab(tabs[j], true);
  }

  function onTabClick(event) {
    const entry = currentTabs().find((t) => t.tabEl === event.target.closest('[role="tab"]'));
    if (!entry) return;
    clearMessages();
    selectTab(entry, true);
  }

  /* ------------------------------------------------------------------ */
  /* Tokens view                                                         */
  /* ------------------------------------------------------------------ */

  /** Load the current page of tokens (the newest request wins). */
  async function loadTokens() {
    if (auth.actor !== 'user') return;
    const seq = ++tokensView.seq;
    let path = `/v1/tokens?limit=${TOKENS_PAGE_SIZE}`;
    if (tokensView.cursor) path += `&after=${enc(tokensView.cursor)}`;
    if (tokensView.search) path += `&search=${enc(tokensView.search)}`;

    const table = $('tokens-table');
    table.setAttribute('aria-busy', 'true');
    try {
      const data = await api('GET', path);
      if (seq !== tokensView.seq) return;
      const rows = Array.isArray(data.tokens) ? data.tokens : [];
      /* A page emptied by deletions: step back to the one before. */
      if (!rows.length && tokensView.page > 1) {
        tokensView.cursor = tokensView.back.pop() || '';
        tokensView.page -= 1;
        loadTokens();
        return;
      }
      tokensView.next = data.more && data.next ? String(data.next) : '';
      renderTokens(rows);
    } catch (err) {
      if (seq === tokensView.seq) reportError('Could not load the tokens', err);
    } finally {
      if (seq === tokensView.seq) table.removeAttribute('aria-busy');
    }
  }

  /** Render the rows, the empty message and the pager; keep focus in the table. */
  function renderTokens(rows) {
    const body = $('tokens-table').tBodies[0];
    /* If focus is in the table, put it back on the same row's menu button after re-rendering. */
    const focusedRow = body.contains(document.activeElement) ? document.activeElement.closest('tr') : null;
    const focusedId = focusedRow ? focusedRow.dataset.clientId : null;

    tokensView.rows.clear();
    body.replaceChildren(...rows.map(tokenRow));

    const empty = $('tokens-empty');
    empty.textContent = tokensView.search
      ? `No tokens match “${tokensView.search}”.`
      : 'No API tokens yet. Generate one to let a system call the API.';
    empty.hidden = rows.length > 0;
    updatePager();

    if (focusedId !== null) {
      const row = [...body.rows].find((tr) => tr.dataset.clientId === focusedId) || body.rows[0];
      focusOr(row ? row.querySelector('button.token-menu') : null, $('generate'));
    }
    tokensView.highlight = '';  /* a new token is highlighted once */
  }

  /** One token's row: its cells carry labels for the narrow (card) layout. */
  function tokenRow(t) {
    const id = String(t.client_id || '');
    tokensView.rows.set(id, t);

    const roles = Array.isArray(t.roles) ? t.roles : [];
    const rolesCell = roles.length
      ? el('span', { className: 'chips' }, ...roles.flatMap((r, i) => [
          ...(i ? [' '] : []), el('span', { className: 'chip', text: String(r) })]))
      : el('span', { className: 'muted', text: 'None' });

    const description = t.description
      ? el('span', { className: 'description', text: String(t.description) })
      : el('span', { className: 'muted', text: 'No description' });

    const expires = Number(t.expires_at) || 0;
    const tr = el('tr', { attrs: { role: 'row' }, data: { clientId: id } },
      cell('Client ID', el('code', { className: 'id', text: id })),
      cell('Description', description),
      cell('Roles', rolesCell),
      cell('Created by', String(t.created_by || '')),
      cell('Created', dateNode(t.created_at, '')),
      cell('Expires', dateNode(expires, 'Never')),
      menuCell(id));
    if (expires && expires * 1000 < Date.now()) {
      tr.classList.add('is-expired');
      tr.title = 'This token has expired';
    }
    if (id && id === tokensView.highlight) tr.classList.add('is-new');
    return tr;
  }

  function cell(label, ...content) {
    return el('td', { attrs: { role: 'cell', 'data-label': label } }, ...content);
  }

  function updatePager() {
    const prev = $('tokens-prev');
    const next = $('tokens-next');
    const focused = document.activeElement;
    prev.disabled = tokensView.page <= 1;
    next.disabled = !tokensView.next;
    $('tokens-page').textContent = `Page ${tokensView.page}`;
    /* Don't leave focus on a button that has just been disabled. */
    if (focused === prev && prev.disabled) focusOr(next, $('tokens-search'));
    if (focused === next && next.disabled) focusOr(prev, $('tokens-search'));
  }

  function onPrev() {
    if (tokensView.page <= 1) return;
    clearMessages();
    tokensView.cursor = tokensView.back.pop() || '';
    tokensView.page -= 1;
    loadTokens();
  }

  function onNext() {
    if (!tokensView.next) return;
    clearMessages();
    tokensView.back.push(tokensView.cursor);
    tokensView.cursor = tokensView.next;
    tokensView.page += 1;
    loadTokens();
  }

  /** Start again at page 1 with the search box's text (force: even if unchanged). */
  function applySearch(force) {
    clearTimeout(tokensView.debounce);
    const q = $('tokens-search').value.trim();
    if (!force && q === tokensView.search) return;
    tokensView.search = q;
    tokensView.cursor = '';
    tokensView.back = [];
    tokensView.page = 1;
    loadTokens();
  }

  function onSearchInput() {
    clearTimeout(tokensView.debounce);
    tokensView.debounce = setTimeout(() => applySearch(false), SEARCH_DEBOUNCE_MS);
  }

  function onSearchKeydown(event) {
    if (event.key === 'Enter') {
      event.preventDefault();
      applySearch(true);
    }
  }

  /* ------------------------------------------------------------------ */
  /* Token menus (one small menu per row)                                */
  /* ------------------------------------------------------------------ */

  function menuCell(clientId) {
    const menuId = `token-menu-${++menuSeq}`;
    const button = el('button', {
      type: 'button',
      className: 'token-menu icon-btn',
      attrs: {
        'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': menuId,
        'aria-label': `Actions for ${clientId}`,
      },
    }, el('span', { className: 'dots', text: '⋯', attrs: { 'aria-hidden': 'true' } }));
    const remove = el('button', {
      type: 'button', className: 'token-delete menu-item danger-text', text: 'Delete token…',
      attrs: { role: 'menuitem', tabindex: '-1' },
    });
    const menu = el('div', {
      id: menuId, className: 'menu', hidden: true,
      attrs: { role: 'menu', 'aria-label': `Actions for ${clientId}` },
    }, remove);

    button.addEventListener('click', () => {
      if (openMenu && openMenu.button === button) closeMenu(true);
      else showMenu(button, menu, 0);
    });
    button.addEventListener('keydown', (event) => {
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        showMenu(button, menu, event.key === 'ArrowUp' ? -1 : 0);
      }
    });
    menu.addEventListener('keydown', onMenuKeydown);
    menu.addEventListener('focusout', () => {
      /* Focus moved elsewhere (not a click on nothing, which pointerdown handles): close. */
      setTimeout(() => {
        const now = document.activeElement;
        if (openMenu && openMenu.menu === menu && now && now !== document.body
            && !menu.contains(now) && now !== button) closeMenu(false);
      }, 0);
    });
    remove.addEventListener('click', () => {
      closeMenu(false);
      const token = tokensView.rows.get(clientId) || { client_id: clientId };
      openDeleteDialog(token, button);
    });
    return el('td', { className: 'col-menu', attrs: { role: 'cell' } },
      el('div', { className: 'menu-wrap' }, button, menu));
  }

  function menuItems(menu) {
    return [...menu.querySelectorAll('[role="menuitem"]')];
  }

  /** Open a row's menu and focus an item (index; -1 = the last). */
  function showMenu(button, menu, index) {
    closeMenu(false);
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    openMenu = { button, menu };
    const items = menuItems(menu);
    const item = items[index < 0 ? items.length - 1 : index];
    if (item) item.focus();
  }

  /** Close the open menu; with refocus, focus goes back to its button. */
  function closeMenu(refocus) {
    if (!openMenu) return;
    const { button, menu } = openMenu;
    openMenu = null;
    menu.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    if (refocus) focusOr(button);
  }

  function onMenuKeydown(event) {
    const items = menuItems(event.currentTarget);
    const i = items.indexOf(document.activeElement);
    let j = -1;
    if (event.key === 'Tab') { closeMenu(false); return; }
    if (event.key === 'ArrowDown') j = (i + 1) % items.length;
    else if (event.key === 'ArrowUp') j = (i - 1 + items.length) % items.length;
    else if (event.key === 'Home') j = 0;
    else if (event.key === 'End') j = items.length - 1;
    if (j < 0) return;
    event.preventDefault();
    items[j].focus();
  }

  /** Escape anywhere closes the open menu; focus goes back to its button. */
  function onDocumentKeydown(event) {
    if (event.key === 'Escape' && openMenu) {
      event.preventDefault();
      closeMenu(true);
    }
  }

  /** A press outside the open menu closes it. */
  function onDocumentPointerDown(event) {
    if (!openMenu) return;
    if (openMenu.menu.contains(event.target) || openMenu.button.contains(event.target)) return;
    closeMenu(false);
  }

  /* ------------------------------------------------------------------ */
  /* Dialogs: shared open/close behaviour                                */
  /* ------------------------------------------------------------------ */

  /** showModal, remember the opener, focus the first field. */
  function openDialog(dialog, opener, first) {
    dialogOpeners.set(dialog, opener || document.activeElement);
    if (!dialog.open) dialog.showModal();
    if (first) first.focus();
  }

  /** On close: focus goes back to the opener (or a fallback if it is gone). */
  function restoreFocus(dialog, fallback) {
    const opener = dialogOpeners.get(dialog);
    dialogOpeners.delete(dialog);
    if (!auth.mode) return;
    focusOr(opener, fallback);
  }

  /** Escape on a dialog that waits for a reply does nothing. */
  function guardCancel(event) {
    if (busyDialogs.has(event.currentTarget)) event.preventDefault();
  }

  function setDialogBusy(dialog, busy) {
    if (busy) busyDialogs.add(dialog);
    else busyDialogs.delete(dialog);
    dialog.setAttribute('aria-busy', busy ? 'true' : 'false');
    for (const button of dialog.querySelectorAll('button')) button.disabled = busy;
  }

  /* ------------------------------------------------------------------ */
  /* Generate dialog                                                     */
  /* ------------------------------------------------------------------ */

  /** Load the tenant's roles and the user's own (shared while a load is pending). */
  function loadRoleData() {
    if (roleData.loading) return roleData.loading;
    const epoch = auth.epoch;
    roleData.loading = Promise.all([
      loadMyRoles(),
      listAll(`/v1/roles?limit=${LIST_PAGE_SIZE}`, 'roles'),
    ]).then(([mine, roles]) => {
      if (epoch !== auth.epoch) return false;
      const signature = JSON.stringify([mine, roles]);
      const changed = signature !== roleData.signature;
      Object.assign(roleData, { myRoles: mine, roles, signature });
      return changed;
    }).finally(() => {
      if (epoch === auth.epoch) roleData.loading = null;
    });
    return roleData.loading;
  }

  /** The user's own role keys: GET /v1/users/{user}. */
  async function loadMyRoles() {
    const me = await api('GET', `/v1/users/${enc(auth.user)}`);
    return Array.isArray(me.roles) ? me.roles.map(String) : [];
  }

  /** The user's strongest level (the smallest number), or null with no known role. */
  function myBestLevel() {
    const levels = new Map((roleData.roles || []).map((r) => [String(r.key), Number(r.level)]));
    let best = null;
    for (const key of roleData.myRoles || []) {
      const level = levels.get(key);
      if (Number.isFinite(level) && (best === null || level < best)) best = level;
    }
    return best;
  }

  /** The role checkboxes, strongest first; keeps what was checked. */
  function renderRoleChoices() {
    const box = $('gen-roles');
    if (!roleData.roles) {
      box.replaceChildren(el('p', { className: 'muted', text: 'Loading the roles…' }));
      return;
    }
    const checked = new Set([...box.querySelectorAll('input[name="role"]:checked')].map((i) => i.value));
    const roles = [...roleData.roles].sort(byLevelThenKey);
    if (!roles.length) {
      box.replaceChildren(el('p', { className: 'muted', text: 'There are no roles yet, so no token can be generated.' }));
      return;
    }
    const best = myBestLevel();
    const used = new Set();
    box.replaceChildren(...roles.map((role) => roleChoice(role, best, checked, used)));
  }

  function roleChoice(role, best, checked, used) {
    const key = String(role.key);
    const level = Number(role.level);
    /* Keys that sanitize alike (a.b, a:b) get a suffix so that ids stay unique. */
    let part = idPart(key);
    for (let n = 2; used.has(part); n++) part = `${idPart(key)}-${n}`;
    used.add(part);

    const input = el('input', {
      type: 'checkbox', id: `role-${part}`, attrs: { name: 'role', value: key },
    });
    const label = el('label', { text: `${role.name || key} (level ${level})`, attrs: { for: input.id } });
    const item = el('div', { className: 'role-choice' }, input, label);

    const describedBy = [];
    const tooStrong = best === null || level < best;
    if (tooStrong) {
      input.disabled = true;
      const reason = el('span', {
        className: 'role-reason', id: `role-reason-${part}`,
        text: best === null
          ? `Stronger than your own roles (level ${level}; you have no roles)`
          : `Stronger than your own roles (level ${level}; yours is at best level ${best})`,
      });
      item.append(reason);
      describedBy.push(reason.id);
    } else if (checked.has(key)) {
      input.checked = true;
    }
    const perms = Array.isArray(role.permissions) ? role.permissions : [];
    if (perms.length) {
      const list = el('span', {
        className: 'role-perms', id: `role-perms-${part}`, text: `Permissions: ${perms.join(', ')}`,
      });
      item.append(list);
      describedBy.push(list.id);
    }
    if (describedBy.length) input.setAttribute('aria-describedby', describedBy.join(' '));
    return item;
  }

  function byLevelThenKey(a, b) {
    const d = Number(a.level) - Number(b.level);
    if (d) return d;
    const ka = String(a.key);
    const kb = String(b.key);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  }

  function openGenerateDialog() {
    clearMessages();
    const dialog = $('generate-dialog');
    $('gen-form').reset();
    setMessage($('gen-error'), '');
    setDialogBusy(dialog, false);
    $('gen-roles').replaceChildren();
    renderRoleChoices();
    openDialog(dialog, $('generate'), $('gen-description'));

    /* Refresh the roles behind the cached list; re-render only if they changed. */
    loadRoleData().then((changed) => {
      if (changed && dialog.open) renderRoleChoices();
    }).catch((err) => {
      if (dialog.open) reportError('Could not load the roles', err, $('gen-error'));
    });
  }

  async function onGenerateSubmit(event) {
    event.preventDefault();
    const dialog = $('generate-dialog');
    if (busyDialogs.has(dialog)) return;
    const errorEl = $('gen-error');
    const description = $('gen-description').value.trim();
    const roles = [...$('gen-roles').querySelectorAll('input[name="role"]:checked')].map((i) => i.value);

    if (utf8Length(description) > DESCRIPTION_MAX_BYTES) {
      setMessage(errorEl, `The description is too long: at most ${DESCRIPTION_MAX_BYTES} bytes.`);
      $('gen-description').focus();
      return;
    }
    if (!roles.length) {
      setMessage(errorEl, 'Choose at least one role');
      focusOr($('gen-roles').querySelector('input[name="role"]:not(:disabled)'), $('gen-description'));
      return;
    }
    const body = { description, roles };
    const expiresIn = Number($('gen-expiry').value);
    if (expiresIn > 0) body.expires_in = expiresIn;

    setMessage(errorEl, '');
    setDialogBusy(dialog, true);
    let created;
    try {
      created = await api('POST', '/v1/tokens', { body });
    } catch (err) {
      setDialogBusy(dialog, false);
      if (!dialog.open) return;
      reportError('Could not create the token', err, errorEl);
      $('gen-submit').focus();  /* it lost focus while it was disabled */
      if (err.code === 'denied') loadRoleData().then((c) => { if (c && dialog.open) renderRoleChoices(); }).catch(() => {});
      return;
    }
    setDialogBusy(dialog, false);
    const opener = dialogOpeners.get(dialog);
    dialog.close();
    showSecretDialog(created, opener);
  }

  /* ------------------------------------------------------------------ */
  /* Secret dialog                                                       */
  /* ------------------------------------------------------------------ */

  /** Show a new token's client ID and secret; the reply object is wiped afterwards. */
  function showSecretDialog(created, opener) {
    const dialog = $('secret-dialog');
    const clientId = String(created.client_id || '');
    $('secret-client-id').textContent = clientId;
    $('secret-value').textContent = String(created.secret || '');
    created.secret = '';   /* the DOM holds the only copy until the dialog closes */
    const expires = Number(created.expires_at) || 0;
    $('secret-expires').textContent = expires ? `The token expires on ${ymd(expires)} (UTC).` : 'The token never expires.';
    resetCopyButtons();
    tokensView.highlight = clientId;
    openDialog(dialog, opener || $('generate'), $('copy-client-id'));
  }

  function resetCopyButtons() {
    $('copy-client-id').textContent = 'Copy client ID';
    $('copy-secret').textContent = 'Copy secret';
    $('copy-status').textContent = '';
  }

  /** Remove the secret from the page (on close, on sign-out). */
  function eraseSecret() {
    $('secret-value').textContent = '';
    $('secret-client-id').textContent = '';
    $('secret-expires').textContent = '';
    resetCopyButtons();
    const selection = window.getSelection();
    if (selection) selection.removeAllRanges();
  }

  async function copyText(sourceId, button) {
    const source = $(sourceId);
    const text = source.textContent;
    const status = $('copy-status');
    try {
      if (!navigator.clipboard || !navigator.clipboard.writeText) throw new Error('no clipboard');
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
      status.textContent = 'Copied to the clipboard';
    } catch (_) {
      /* No clipboard access (an insecure origin, a refused permission): select it for Ctrl+C. */
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      status.textContent = 'Could not copy automatically. The text is selected: press Ctrl+C (⌘C on a Mac) to copy it.';
    }
  }

  function onSecretClose() {
    eraseSecret();
    restoreFocus($('secret-dialog'), $('generate'));
    if (auth.actor !== 'user') return;
    /* Show the new token: from the first page, without a search that might hide it. */
    $('tokens-search').value = '';
    applySearch(true);
    showStatus('Token generated');
  }

  /* ------------------------------------------------------------------ */
  /* Delete dialog                                                       */
  /* ------------------------------------------------------------------ */

  let deleteTarget = '';

  function openDeleteDialog(token, opener) {
    clearMessages();
    deleteTarget = String(token.client_id || '');
    const text = $('delete-text');
    const description = token.description ? ` (“${token.description}”)` : ' (no description)';
    text.replaceChildren(
      'The token ', el('code', { className: 'id', text: deleteTarget }), description,
      ' stops working at once for every system that uses it. This cannot be undone.');
    setDialogBusy($('delete-dialog'), false);
    openDialog($('delete-dialog'), opener, $('delete-cancel'));
  }

  async function onDeleteConfirm() {
    const dialog = $('delete-dialog');
    if (busyDialogs.has(dialog) || !deleteTarget) return;
    const clientId = deleteTarget;
    setDialogBusy(dialog, true);
    try {
      await api('DELETE', `/v1/tokens/${enc(clientId)}`);
      setDialogBusy(dialog, false);
      dialog.close();
      showStatus('Token deleted');
    } catch (err) {
      setDialogBusy(dialog, false);
      if (dialog.open) dialog.close();
      reportError('Could not delete the token', err);
    }
    if (auth.actor === 'user') loadTokens();
  }

  function onDeleteClose() {
    deleteTarget = '';
    $('delete-text').replaceChildren();
    restoreFocus($('delete-dialog'), $('generate'));
  }

  /* ------------------------------------------------------------------ */
  /* Personal keys view (read only)                                      */
  /* ------------------------------------------------------------------ */

  let keysSeq = 0;

  async function loadKeys() {
    if (auth.actor !== 'user') return;
    const seq = ++keysSeq;
    const table = $('keys-table');
    table.setAttribute('aria-busy', 'true');
    try {
      const keys = await listAll('/v1/keys', 'keys');
      if (seq !== keysSeq) return;
      table.tBodies[0].replaceChildren(...keys.map((k) => el('tr', {
        attrs: { role: 'row' }, data: { keyId: String(k.key_id || '') },
      },
        cell('Key ID', el('code', { className: 'id', text: String(k.key_id || '') })),
        cell('Created', dateNode(k.created_at, '')),
        cell('Expires', dateNode(Number(k.expires_at) || 0, 'Never')))));
      $('keys-empty').hidden = keys.length > 0;
    } catch (err) {
      if (seq === keysSeq) reportError('Could not load your personal keys', err);
    } finally {
      if (seq === keysSeq) table.removeAttribute('aria-busy');
    }
  }

  /* ------------------------------------------------------------------ */
  /* Tenants view (operator)                                             */
  /* ------------------------------------------------------------------ */

  /**
   * List the tenants into the select, keep the selection, show the selected one.
   * The select stays disabled until its options are there, the switch until the
   * tenant's state is known: nothing can be chosen or toggled on a guess.
   */
  async function loadAdmin() {
    if (auth.actor !== 'operator') return;
    const seq = ++adminView.seq;
    try {
      const tenants = await listAll(`/v1/tenants?limit=${LIST_PAGE_SIZE}`, 'tenants');
      if (seq !== adminView.seq) return;
      const select = $('admin-tenant');
      const slugs = tenants.map((t) => String(t.tenant));
      select.replaceChildren(...slugs.map((slug) => el('option', { text: slug, attrs: { value: slug } })));
      const none = slugs.length === 0;
      $('admin-empty').hidden = !none;
      select.disabled = none;
      if (none) {
        $('admin-api-tokens').disabled = true;
        adminView.tenant = '';
        $('admin-api-tokens').checked = false;
        $('admin-roles-table').tBodies[0].replaceChildren();
        $('admin-roles-empty').hidden = true;
        return;
      }
      const keep = slugs.includes(adminView.tenant) ? adminView.tenant : slugs[0];
      select.value = keep;
      showTenant(keep);
    } catch (err) {
      if (seq === adminView.seq) reportError('Could not load the tenants', err);
    }
  }

  /** One tenant's API-tokens switch and roles. */
  async function showTenant(slug) {
    const seq = ++adminView.seq;
    adminView.tenant = slug;
    const table = $('admin-roles-table');
    table.setAttribute('aria-busy', 'true');
    $('admin-api-tokens').disabled = true;
    $('admin-roles-caption').textContent = `Roles of ${slug}`;
    try {
      const [row, roles] = await Promise.all([
        api('GET', `/v1/tenants/${enc(slug)}`),
        listAll(`/v1/tenants/${enc(slug)}/roles?limit=${LIST_PAGE_SIZE}`, 'roles'),
      ]);
      if (seq !== adminView.seq) return;
      $('admin-api-tokens').checked = Boolean(row.api_tokens);
      $('admin-api-tokens').disabled = false;
      roles.sort(byLevelThenKey);
      table.tBodies[0].replaceChildren(...roles.map((r) => el('tr', {
        attrs: { role: 'row' }, data: { role: String(r.key) },
      },
        cell('Key', el('code', { className: 'id', text: String(r.key) })),
        cell('Name', String(r.name || '')),
        cell('Level', String(r.level)))));
      $('admin-roles-empty').hidden = roles.length > 0;
    } catch (err) {
      if (seq === adminView.seq) reportError(`Could not load the tenant ${slug}`, err);
    } finally {
      if (seq === adminView.seq) table.removeAttribute('aria-busy');
    }
  }

  function onTenantChange() {
    clearMessages();
    showTenant($('admin-tenant').value);
  }

  /* While a change is on its way, further clicks on the switch are ignored. */
  function onApiTokensClick(event) {
    if (adminView.patching) event.preventDefault();
  }

  /** PATCH the tenant's api_tokens; on failure the checkbox goes back. */
  async function onApiTokensChange() {
    const box = $('admin-api-tokens');
    const tenant = adminView.tenant;
    if (!tenant) return;
    const want = box.checked;
    const onOff = want ? 'on' : 'off';
    adminView.patching = true;
    box.setAttribute('aria-busy', 'true');
    clearMessages();
    try {
      await api('PATCH', `/v1/tenants/${enc(tenant)}`, { body: { api_tokens: want } });
      if (adminView.tenant === tenant) showStatus(`API tokens switched ${onOff} for ${tenant}`);
    } catch (err) {
      if (adminView.tenant === tenant) box.checked = !want;
      reportError(`Could not switch API tokens ${onOff} for ${tenant}`, err);
    } finally {
      adminView.patching = false;
      box.removeAttribute('aria-busy');
    }
  }

  /* ------------------------------------------------------------------ */
  /* Start-up                                                            */
  /* ------------------------------------------------------------------ */

  function wireEvents() {
    $('signin-form').addEventListener('submit', onSigninSubmit);
    $('signout').addEventListener('click', onSignout);

    $('tablist').addEventListener('click', onTabClick);
    $('tablist').addEventListener('keydown', onTabKeydown);

    $('generate').addEventListener('click', openGenerateDialog);
    $('tokens-search').addEventListener('input', onSearchInput);
    $('tokens-search').addEventListener('keydown', onSearchKeydown);
    $('tokens-prev').addEventListener('click', onPrev);
    $('tokens-next').addEventListener('click', onNext);
    document.addEventListener('pointerdown', onDocumentPointerDown);
    document.addEventListener('keydown', onDocumentKeydown);

    const gen = $('generate-dialog');
    $('gen-form').addEventListener('submit', onGenerateSubmit);
    $('gen-cancel').addEventListener('click', () => gen.close());
    gen.addEventListener('cancel', guardCancel);
    gen.addEventListener('close', () => {
      if (!$('secret-dialog').open) restoreFocus(gen, $('generate'));
    });

    const secret = $('secret-dialog');
    $('copy-client-id').addEventListener('click', (e) => copyText('secret-client-id', e.currentTarget));
    $('copy-secret').addEventListener('click', (e) => copyText('secret-value', e.currentTarget));
    $('secret-done').addEventListener('click', () => secret.close());
    // Escape must not lose a secret that is shown only once: the dialog
    // closes through "I have copied it" alone.
    secret.addEventListener('cancel', (event) => event.preventDefault());
    secret.addEventListener('close', onSecretClose);

    const del = $('delete-dialog');
    $('delete-confirm').addEventListener('click', onDeleteConfirm);
    $('delete-cancel').addEventListener('click', () => del.close());
    del.addEventListener('cancel', guardCancel);
    del.addEventListener('close', onDeleteClose);

    $('admin-tenant').addEventListener('change', onTenantChange);
    $('admin-api-tokens').addEventListener('click', onApiTokensClick);
    $('admin-api-tokens').addEventListener('change', onApiTokensChange);
  }

  /** Is there a portal session (the HttpOnly cookie)? If not, offer the key form. */
  async function start() {
    wireEvents();
    try {
      const session = await api('GET', '/v1/portal/session', { probe: true });
      enterApp('session', session);
    } catch (err) {
      if (err.status === 401) {
        showSignin();
      } else {
        showSignin();
        reportError('Could not check your session', err);
      }
    }
  }

  start();
})();
