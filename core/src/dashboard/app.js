// The Model Endpoints dashboard. Served under a strict Content-Security-Policy:
// no inline code, no other origin. The DOM is built with createElement and
// textContent only; route names, subjects, descriptions, account and partner
// names come from callers and are never parsed as markup.
(function () {
  'use strict';

  var TOKEN_KEY = 'gateway_admin_token';
  var API = '/_gateway';
  var REFRESH_MS = 10000;
  var AUDIT_PAGE = 50;
  var HOUR = 3600;
  var DAY = 86400;
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var STATUS_ORDER = ['2xx', '3xx', '4xx', '5xx', '1xx', 'other'];

  var state = {
    token: null,
    gen: 0, // bumped at each sign-in and sign-out; stale answers are dropped
    timer: null,
    inFlight: null,
    again: false,
    data: { metrics: null, routes: null, tokens: null, audit: null, accounts: null, budgets: null },
    errors: {},
    pendingRevoke: null,
    pendingRevokeIn: null, // the container ('tokens' or 'principals') whose row asked
    revoking: null,
    accountsApi: null, // false once GET /service-accounts answered 404 (an older gateway)
    budgetsApi: null, // false once GET /budgets answered 404 (an older gateway)
    expanded: new Set(), // principal keys whose tokens are shown
    pendingDelete: null, // service account name awaiting confirmation
    deleting: null,
    issueFor: null, // service account the side form issues a token for
    auditBefore: null, // null: newest page
    auditHistory: [],
    lastRefresh: null,
  };

  // ---------------------------------------------------------------------------
  // DOM helpers
  // ---------------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function own(obj, key) {
    return obj && typeof obj === 'object' && Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
  }

  function entries(obj) {
    return obj && typeof obj === 'object' ? Object.keys(obj).map(function (k) { return [k, obj[k]]; }) : [];
  }

  function append(el, children) {
    for (var i = 0; i < children.length; i++) {
      var c = children[i];
      if (c == null || c === false) continue;
      if (Array.isArray(c)) append(el, c);
      else if (typeof c === 'object' && c.nodeType) el.appendChild(c);
      else el.appendChild(document.createTextNode(String(c)));
    }
    return el;
  }

  function setAttrs(el, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v == null || v === false) return;
      if (k === 'text') el.textContent = String(v);
      else if (typeof v === 'function') el.addEventListener(k, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    });
  }

  // h('div', {class: 'x', 'data-a': 1}, child, 'text', [more])
  function h(tag, attrs) {
    var el = document.createElement(tag);
    setAttrs(el, attrs);
    return append(el, Array.prototype.slice.call(arguments, 2));
  }

  function s(tag, attrs) {
    var el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    return append(el, Array.prototype.slice.call(arguments, 2));
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function show(el, on) {
    el.hidden = !on;
  }

  // ---------------------------------------------------------------------------
  // Formatting
  // ---------------------------------------------------------------------------

  var numberFmt = new Intl.NumberFormat(undefined);

  function num(n) {
    return typeof n === 'number' && isFinite(n) ? numberFmt.format(n) : '0';
  }

  function int(n) {
    return typeof n === 'number' && isFinite(n) ? n : 0;
  }

  function compact(n) {
    n = int(n);
    if (n < 10000) return numberFmt.format(n);
    var units = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'k']];
    for (var i = 0; i < units.length; i++) {
      if (n >= units[i][0]) {
        var v = n / units[i][0];
        return (v >= 100 ? Math.round(v) : v.toFixed(1).replace(/\.0$/, '')) + units[i][1];
      }
    }
    return String(n);
  }

  function bytes(n) {
    n = int(n);
    var units = ['B', 'KB', 'MB', 'GB', 'TB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + units[i];
  }

  function ms(v) {
    if (typeof v !== 'number' || !isFinite(v)) return '—';
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 1 : 2) + ' s';
    if (v >= 100) return Math.round(v) + ' ms';
    if (v >= 10) return v.toFixed(1).replace(/\.0$/, '') + ' ms';
    return v.toFixed(2).replace(/0$/, '').replace(/\.0$/, '') + ' ms';
  }

  function pct(v) {
    if (typeof v !== 'number' || !isFinite(v)) return '—';
    var p = v * 100;
    if (p >= 100) return '100%';
    return (p >= 99 ? p.toFixed(2) : p.toFixed(1)) + '%';
  }

  function nowS() {
    return Math.floor(Date.now() / 1000);
  }

  function pad(n) {
    return n < 10 ? '0' + n : String(n);
  }

  function clock(d) {
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function dateTime(unix) {
    if (typeof unix !== 'number') return '—';
    var d = new Date(unix * 1000);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + clock(d);
  }

  function span(secs) {
    secs = Math.abs(secs);
    if (secs < 60) return Math.round(secs) + ' s';
    if (secs < HOUR) return Math.floor(secs / 60) + ' min';
    if (secs < 2 * DAY) return Math.floor(secs / HOUR) + ' h';
    return Math.floor(secs / DAY) + ' d';
  }

  function relative(unix) {
    if (typeof unix !== 'number' || !unix) return 'never';
    var d = unix - nowS();
    if (Math.abs(d) < 5) return 'just now';
    return d < 0 ? span(d) + ' ago' : 'in ' + span(d);
  }

  // A <time> element showing a relative time, with the exact time on hover.
  function when(unix, fallback) {
    if (typeof unix !== 'number' || !unix) return h('span', { class: 'muted', text: fallback != null ? fallback : 'never' });
    return h('time', { datetime: new Date(unix * 1000).toISOString(), title: dateTime(unix), text: relative(unix) });
  }

  function list(v) {
    return Array.isArray(v) ? v.filter(function (x) { return typeof x === 'string'; }) : [];
  }

  function splitList(text) {
    return text.split(',').map(function (x) { return x.trim(); }).filter(function (x) { return x.length > 0; });
  }

  // ---------------------------------------------------------------------------
  // Admin API
  // ---------------------------------------------------------------------------

  function ApiError(status, message, code) {
    this.status = status;
    this.message = message;
    this.code = code;
  }

  function isAuthError(e) {
    return e instanceof ApiError && (e.status === 401 || e.status === 403);
  }

  function api(method, path, body) {
    var headers = { Authorization: 'Bearer ' + state.token, Accept: 'application/json' };
    var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(
      function (res) {
        return res.text().then(function (text) {
          var data = null;
          if (text) {
            try {
              data = JSON.parse(text);
            } catch (_) {
              data = null;
            }
          }
          if (!res.ok) {
            var err = data && typeof data === 'object' ? data.error : null;
            var msg = err && typeof err.message === 'string' && err.message ? err.message : 'HTTP ' + res.status;
            throw new ApiError(res.status, msg, err && typeof err.code === 'string' ? err.code : null);
          }
          return data;
        });
      },
      function (e) {
        throw new ApiError(0, 'cannot reach the gateway (' + (e && e.message ? e.message : 'network error') + ')', 'network');
      }
    );
  }

  // ---------------------------------------------------------------------------
  // Session
  // ---------------------------------------------------------------------------

  // The admin token lives in this page's memory only, never in web storage: routes on the
  // same origin serve upstream content, and a page there must not find it. A reload asks again.
  var heldToken = null;

  function readStoredToken() {
    return heldToken;
  }

  function storeToken(t) {
    heldToken = t || null;
    try {
      // Sessions of earlier versions kept it in sessionStorage; clear that copy.
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Storage disabled: nothing to clear.
    }
  }

  // The token's own claims, for the header only; the gateway verifies it.
  function claims(token) {
    try {
      var part = token.split('.')[1];
      var b64 = part.replace(/-/g, '+').replace(/_/g, '/');
      while (b64.length % 4) b64 += '=';
      var raw = atob(b64);
      var bytesArr = new Uint8Array(raw.length);
      for (var i = 0; i < raw.length; i++) bytesArr[i] = raw.charCodeAt(i);
      var c = JSON.parse(new TextDecoder().decode(bytesArr));
      return c && typeof c === 'object' ? c : null;
    } catch (_) {
      return null;
    }
  }

  function signIn(token) {
    state.token = token;
    state.gen++;
    storeToken(token);
    var c = claims(token);
    var who = $('whoami');
    clear(who);
    if (c && typeof c.sub === 'string') {
      append(who, ['Signed in as ', h('strong', { text: c.sub })]);
      if (typeof c.exp === 'number') append(who, [' · token expires ', when(c.exp)]);
    }
    show($('login-view'), false);
    show($('app-view'), true);
    show($('session'), true);
    show($('statusbar'), true);
    setStatus('Loading…', 'busy');
    refresh();
    if (state.timer) clearInterval(state.timer);
    state.timer = setInterval(function () {
      refresh();
    }, REFRESH_MS);
  }

  function signOut(message) {
    state.token = null;
    state.gen++;
    storeToken(null);
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    state.data = { metrics: null, routes: null, tokens: null, audit: null, accounts: null, budgets: null };
    state.errors = {};
    state.pendingRevoke = null;
    state.pendingRevokeIn = null;
    state.revoking = null;
    state.accountsApi = null;
    state.budgetsApi = null;
    state.expanded = new Set();
    state.pendingDelete = null;
    state.deleting = null;
    closeIssueForm();
    hideAccountToken();
    showNotice(null);
    state.auditBefore = null;
    state.auditHistory = [];
    state.lastRefresh = null;
    hideNewToken();
    ['routes', 'tokens', 'audit', 'summary', 'expiring', 'principals', 'partners', 'budgets'].forEach(function (id) { clear($(id)); });
    show($('app-view'), false);
    show($('session'), false);
    show($('statusbar'), false);
    show($('login-view'), true);
    var err = $('login-error');
    err.textContent = message || '';
    show(err, !!message);
    var input = $('token');
    input.value = '';
    input.focus();
  }

  function setStatus(text, kind) {
    $('status').textContent = text;
    $('statusbar').className = 'statusbar ' + (kind || '');
  }

  // ---------------------------------------------------------------------------
  // Refresh
  // ---------------------------------------------------------------------------

  function auditPath() {
    return '/audit?limit=' + AUDIT_PAGE + (state.auditBefore != null ? '&before=' + encodeURIComponent(state.auditBefore) : '');
  }

  // Calls an older gateway answers with 404: the data they fill, and the state flag that
  // remembers the answer (null: not known yet; true: served; false: absent, not asked again).
  var OPTIONAL_APIS = {
    accounts: { path: '/service-accounts', flag: 'accountsApi' },
    budgets: { path: '/budgets', flag: 'budgetsApi' },
  };

  function refresh() {
    if (!state.token) return Promise.resolve();
    if (state.inFlight) {
      state.again = true;
      return state.inFlight;
    }
    var gen = state.gen;
    var names = ['metrics', 'routes', 'tokens', 'audit'];
    var calls = [api('GET', '/metrics'), api('GET', '/routes'), api('GET', '/tokens'), api('GET', auditPath())];
    // Service accounts and token budgets are newer than the rest of the admin API: an
    // older gateway answers 404, after which this session stops asking (once per sign-in).
    Object.keys(OPTIONAL_APIS).forEach(function (name) {
      var o = OPTIONAL_APIS[name];
      if (state[o.flag] !== false) {
        names.push(name);
        calls.push(api('GET', o.path));
      }
    });
    $('refresh').disabled = true;
    state.inFlight = Promise.all(
      calls.map(function (p) {
        return p.then(
          function (v) { return { ok: true, value: v }; },
          function (e) { return { ok: false, error: e }; }
        );
      })
    )
      .then(function (results) {
        if (gen !== state.gen) return;
        for (var i = 0; i < results.length; i++) {
          if (!results[i].ok && isAuthError(results[i].error)) {
            signOut(results[i].error.message);
            return;
          }
        }
        var failed = [];
        results.forEach(function (r, i) {
          var optional = own(OPTIONAL_APIS, names[i]);
          if (optional) {
            if (r.ok) state[optional.flag] = true;
            else if (r.error instanceof ApiError && r.error.status === 404 && state[optional.flag] !== true) {
              state[optional.flag] = false;
              state.data[names[i]] = null;
              delete state.errors[names[i]];
              return;
            }
          }
          if (r.ok) {
            state.data[names[i]] = r.value;
            delete state.errors[names[i]];
          } else {
            var msg = r.error instanceof ApiError ? r.error.message : String(r.error);
            state.errors[names[i]] = msg;
            failed.push(names[i] + ': ' + msg);
          }
        });
        state.lastRefresh = new Date();
        render();
        var stamp = 'Updated ' + clock(state.lastRefresh) + ' · refreshes every ' + REFRESH_MS / 1000 + ' s';
        if (failed.length) setStatus(stamp + ' · could not load ' + failed.join('; '), 'error');
        else setStatus(stamp, 'ok');
      })
      .catch(function (e) {
        if (gen !== state.gen) return;
        setStatus('Display error: ' + (e && e.message ? e.message : String(e)), 'error');
        if (window.console) console.warn(e);
      })
      .then(function () {
        state.inFlight = null;
        $('refresh').disabled = false;
        if (state.again) {
          state.again = false;
          refresh();
        }
      });
    return state.inFlight;
  }

  // ---------------------------------------------------------------------------
  // Models of the fetched data
  // ---------------------------------------------------------------------------

  function tokenList() {
    var t = state.data.tokens && state.data.tokens.tokens;
    return Array.isArray(t) ? t.filter(function (x) { return x && typeof x.id === 'string'; }) : [];
  }

  function tokenIndex() {
    var m = new Map();
    tokenList().forEach(function (t) { m.set(t.id, t); });
    return m;
  }

  function tokenMetrics() {
    var m = state.data.metrics && state.data.metrics.tokens;
    return m && typeof m === 'object' ? m : {};
  }

  function tokenRequests(t) {
    var m = own(tokenMetrics(), t.id);
    return Math.max(int(t.request_count), int(m && m.requests));
  }

  function meta(t, key) {
    var v = own(t.metadata, key);
    return typeof v === 'string' ? v : '';
  }

  function isLive(st) {
    return st === 'active' || st === 'expiring';
  }

  function accountList() {
    var a = state.data.accounts && state.data.accounts.service_accounts;
    return Array.isArray(a) ? a.filter(function (x) { return x && typeof x.name === 'string'; }) : [];
  }

  var KIND_ORDER = { account: 0, user: 1, service: 2, partner: 3 };

  function principalKey(kind, subject, owner, partner, contract) {
    return [kind, subject, owner || '', partner || '', contract || ''].join('|');
  }

  // Tokens grouped by who they stand for: kind and subject, plus the owner of
  // self-service tokens and the partner and contract of partner tokens. Service
  // accounts are principals even before their first token.
  function principalModels() {
    var byKey = new Map();
    function get(kind, subject, owner, partner, contract) {
      var key = principalKey(kind, subject, owner, partner, contract);
      var p = byKey.get(key);
      if (!p) {
        p = { key: key, kind: kind, subject: subject, owner: owner, partner: partner, contract: contract, account: null, tokens: [] };
        byKey.set(key, p);
      }
      return p;
    }
    accountList().forEach(function (a) {
      get('service', a.name, '', '', '').account = a;
    });
    tokenList().forEach(function (t) {
      var kind = typeof t.kind === 'string' ? t.kind : '?';
      var partner = kind === 'partner' ? meta(t, 'partner') : '';
      var contract = kind === 'partner' ? meta(t, 'contract_id') : '';
      get(kind, typeof t.subject === 'string' ? t.subject : '', typeof t.owner === 'string' ? t.owner : '', partner, contract).tokens.push(t);
    });
    var out = Array.from(byKey.values());
    out.forEach(function (p) {
      p.active = 0;
      p.lastUse = null;
      p.requests = 0;
      var groups = new Set();
      p.tokens.forEach(function (t) {
        if (isLive(tokenState(t))) p.active++;
        var u = lastUse(t);
        if (u != null && (p.lastUse == null || u > p.lastUse)) p.lastUse = u;
        p.requests += tokenRequests(t);
        list(t.groups).forEach(function (g) { groups.add(g); });
      });
      p.groups = p.account ? list(p.account.groups) : Array.from(groups).sort();
      p.order = p.account ? KIND_ORDER.account : own(KIND_ORDER, p.kind) != null ? KIND_ORDER[p.kind] : 9;
    });
    return out.sort(function (a, b) {
      if (a.order !== b.order) return a.order - b.order;
      var x = [a.subject, a.owner, a.partner, a.contract].join('|');
      var y = [b.subject, b.owner, b.partner, b.contract].join('|');
      return x < y ? -1 : x > y ? 1 : 0;
    });
  }

  // Partners known from their usage or from their tokens.
  function partnerModels() {
    var byName = new Map();
    function get(name) {
      var p = byName.get(name);
      if (!p) {
        p = { name: name, m: null, tokens: [] };
        byName.set(name, p);
      }
      return p;
    }
    entries(state.data.metrics && state.data.metrics.partners).forEach(function (kv) {
      get(kv[0]).m = kv[1] && typeof kv[1] === 'object' ? kv[1] : null;
    });
    tokenList().forEach(function (t) {
      if (t.kind === 'partner' && meta(t, 'partner')) get(meta(t, 'partner')).tokens.push(t);
    });
    return Array.from(byName.values()).sort(function (a, b) {
      var d = int(b.m && b.m.requests) - int(a.m && a.m.requests);
      return d || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    });
  }

  function tokenState(t) {
    if (t.revoked_at != null || t.revoked === true) return 'revoked';
    if (typeof t.expires_at === 'number' && t.expires_at <= nowS()) return 'expired';
    if (typeof t.expires_at === 'number' && t.expires_at - nowS() < DAY) return 'expiring';
    return 'active';
  }

  function lastUse(t) {
    var a = typeof t.last_used_at === 'number' ? t.last_used_at : null;
    var m = own(tokenMetrics(), t.id);
    var b = m && typeof m.last_seen === 'number' ? m.last_seen : null;
    if (a == null) return b;
    if (b == null) return a;
    return Math.max(a, b);
  }

  function routeModels() {
    var defs = state.data.routes && Array.isArray(state.data.routes.routes) ? state.data.routes.routes : [];
    var metrics = (state.data.metrics && state.data.metrics.routes) || {};
    var byName = new Map();
    defs.forEach(function (r) {
      if (r && typeof r.name === 'string') byName.set(r.name, { name: r.name, def: r, m: null });
    });
    entries(metrics).forEach(function (kv) {
      var e = byName.get(kv[0]) || { name: kv[0], def: null, m: null };
      e.m = kv[1] && typeof kv[1] === 'object' ? kv[1] : null;
      byName.set(kv[0], e);
    });
    // Static routes first, then those known from metrics only (ephemeral ids), each by name.
    return Array.from(byName.values()).sort(function (a, b) {
      if (!a.def !== !b.def) return a.def ? -1 : 1;
      return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    });
  }

  function endpointModels(rt) {
    var out = new Map();
    var defs = rt.def && Array.isArray(rt.def.endpoints) ? rt.def.endpoints : [];
    defs.forEach(function (e) {
      if (e && typeof e.id === 'string') out.set(e.id, { id: e.id, def: e, m: null });
    });
    entries(rt.m && rt.m.endpoints).forEach(function (kv) {
      var e = out.get(kv[0]) || { id: kv[0], def: null, m: null };
      e.m = kv[1] && typeof kv[1] === 'object' ? kv[1] : null;
      out.set(kv[0], e);
    });
    return Array.from(out.values());
  }

  // ---------------------------------------------------------------------------
  // Rendering
  // ---------------------------------------------------------------------------

  function render() {
    var routes = routeModels();
    keepFocus(function () {
      renderSummary(routes);
      renderRoutes(routes);
      renderTokens();
      renderPrincipals();
      renderPartners();
      renderBudgets();
      renderAudit();
    });
  }

  // The views that show tokens: after a revoke, a confirmation or a toggle.
  function renderTokenViews() {
    keepFocus(function () {
      renderTokens();
      renderPrincipals();
      renderPartners();
    });
  }

  // Re-rendering replaces the buttons; put the focus back on the same one.
  var FOCUS_ATTRS = ['data-token-id', 'data-account', 'data-principal-key'];
  function keepFocus(fn) {
    var a = document.activeElement;
    var box = a && a.tagName === 'BUTTON' && a.closest ? a.closest('#tokens, #principals, #partners') : null;
    var want = box ? { box: box.id, cls: a.className, attrs: FOCUS_ATTRS.map(function (n) { return a.getAttribute(n); }) } : null;
    fn();
    if (!want || document.activeElement === a && document.contains(a)) return;
    var buttons = $(want.box).querySelectorAll('button');
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      if (b.className === want.cls && FOCUS_ATTRS.every(function (n, j) { return b.getAttribute(n) === want.attrs[j]; })) {
        b.focus();
        return;
      }
    }
  }

  function stat(label, value, note, cls) {
    return h('div', { class: 'stat' + (cls ? ' ' + cls : '') },
      h('div', { class: 'stat-label', text: label }),
      h('div', { class: 'stat-value', text: value }),
      note ? h('div', { class: 'stat-note', text: note }) : null);
  }

  function renderSummary(routes) {
    var reqHour = 0, errHour = 0, total = 0, up = 0, down = 0, eps = 0;
    routes.forEach(function (rt) {
      var m = rt.m || {};
      total += int(m.requests_total);
      reqHour += int(m.requests_last_hour);
      (Array.isArray(m.series) ? m.series : []).forEach(function (p) { errHour += int(p && p.errors); });
      endpointModels(rt).forEach(function (e) {
        eps++;
        var hs = e.m && e.m.health;
        if (hs === 'up') up++;
        else if (hs === 'down') down++;
      });
    });
    var tokens = tokenList();
    var active = 0, expiring = 0;
    tokens.forEach(function (t) {
      var st = tokenState(t);
      if (st === 'active' || st === 'expiring') active++;
      if (st === 'expiring') expiring++;
    });
    var el = clear($('summary'));
    append(el, [
      stat('Routes', num(routes.length), routes.filter(function (r) { return r.def && r.def.enabled === false; }).length + ' disabled'),
      stat('Requests, last hour', compact(reqHour), compact(total) + ' in total'),
      stat('5xx, last hour', compact(errHour), reqHour ? pct(errHour / reqHour) + ' of requests' : 'no traffic', errHour ? 'bad' : ''),
      stat('Endpoints up', up + ' / ' + eps, down ? down + ' down' : eps - up ? eps - up + ' unknown' : 'all healthy', down ? 'bad' : ''),
      stat('Active tokens', num(active), tokens.length - active + ' revoked or expired'),
      stat('Expiring within 24 h', num(expiring), expiring ? 'see the tokens panel' : 'none', expiring ? 'warn' : ''),
    ]);
  }

  function badge(text, cls, title) {
    return h('span', { class: 'badge ' + (cls || ''), text: text, title: title || null });
  }

  function renderRoutes(routes) {
    var el = clear($('routes'));
    var note = [];
    if (state.errors.metrics) note.push('metrics unavailable: ' + state.errors.metrics);
    if (state.errors.routes) note.push('route list unavailable: ' + state.errors.routes);
    $('routes-note').textContent = note.join(' · ');
    if (!routes.length) {
      el.appendChild(h('div', { class: 'card empty', text: 'No routes yet. Create one with PUT /_gateway/routes/{name} or Terraform.' }));
      return;
    }
    var ctx = { tokens: tokenIndex(), tmetrics: tokenMetrics() };
    routes.forEach(function (rt) {
      el.appendChild(routeCard(rt, ctx));
    });
  }

  function routeCard(rt, ctx) {
    var m = rt.m || {};
    var def = rt.def;
    var badges = [];
    if (!def) badges.push(badge('ephemeral', 'neutral', 'Known from metrics only: an ephemeral route id, or a route since deleted'));
    else {
      if (def.expires_at) badges.push(badge('ephemeral', 'neutral', 'Expires ' + dateTime(def.expires_at)));
      badges.push(def.enabled === false ? badge('disabled', 'warn') : badge('enabled', 'good'));
      if (def.auth && def.auth.required === false) badges.push(badge('public', 'warn', 'No token required'));
      if (def.usage === 'always') badges.push(badge('usage: always', 'neutral usage-always', 'The gateway asks for usage on every stream, so per-token usage and budgets are complete; clients that did not ask get vLLM\'s stream unchanged'));
      if (def.managed_by) badges.push(badge(String(def.managed_by), 'neutral', 'Managed by ' + def.managed_by + '; the admin API will not change it'));
    }
    var series = Array.isArray(m.series) ? m.series : [];
    var err5 = 0;
    series.forEach(function (p) { err5 += int(p && p.errors); });
    var total = int(m.requests_total);

    var sub = [];
    if (def && def.host) sub.push('host ' + def.host);
    if (def && def.auth && def.auth.required !== false) {
      var g = list(def.auth.groups);
      sub.push(g.length ? 'groups: ' + g.join(', ') : 'no group may call it');
    }
    var models = def ? list(def.models) : [];

    return h('article', { class: 'card route', 'data-route': rt.name },
      h('div', { class: 'route-head' },
        h('h3', { class: 'route-name', title: rt.name, text: rt.name }),
        h('div', { class: 'badges' }, badges)),
      sub.length ? h('p', { class: 'route-sub muted small', text: sub.join(' · ') }) : null,
      models.length ? h('div', { class: 'route-models small', title: 'The body\'s model picks this route under /v1/ (model routing)' },
        h('span', { class: 'muted', text: models.length === 1 ? 'Model ' : 'Models ' }),
        models.map(function (m) { return h('span', { class: 'chip model mono', 'data-model': m, text: m }); })) : null,
      h('div', { class: 'route-stats' },
        h('div', { class: 'kv' },
          h('span', { class: 'k', text: 'Requests' }),
          h('span', { class: 'v requests-total', 'data-value': total, text: String(total) })),
        h('div', { class: 'kv' },
          h('span', { class: 'k', text: 'Last hour' }),
          h('span', { class: 'v requests-last-hour', text: String(int(m.requests_last_hour)) })),
        h('div', { class: 'kv' },
          h('span', { class: 'k', text: '5xx last hour' }),
          h('span', { class: 'v' + (err5 ? ' bad' : ''), text: String(err5) })),
        h('div', { class: 'kv llm' },
          h('span', { class: 'k', text: 'LLM tokens in / out' }),
          h('span', { class: 'v', title: 'prompt: ' + int(m.prompt_tokens) + ', completion: ' + int(m.completion_tokens) },
            h('span', { class: 'prompt-tokens', text: compact(m.prompt_tokens) }),
            h('span', { class: 'sep', text: ' / ' }),
            h('span', { class: 'completion-tokens', text: compact(m.completion_tokens) })))),
      h('div', { class: 'section' },
        h('div', { class: 'section-head' },
          h('span', { class: 'section-title', text: 'Requests / min · last hour' }),
          h('span', { class: 'legend' },
            h('span', { class: 'swatch sw-req' }), 'requests ',
            h('span', { class: 'swatch sw-err' }), '5xx')),
        rateChart(series)),
      h('div', { class: 'section split' },
        latencyTable(m),
        statusMix(m.by_status_class)),
      h('div', { class: 'section' },
        h('div', { class: 'section-head' }, h('span', { class: 'section-title', text: 'Endpoints' })),
        endpointTable(endpointModels(rt))),
      h('div', { class: 'section' },
        h('div', { class: 'section-head' }, h('span', { class: 'section-title', text: 'Tokens calling this route' })),
        routeTokens(rt.name, ctx)),
      h('p', { class: 'route-foot muted small', text: 'Traffic: ' + bytes(m.bytes_in) + ' in · ' + bytes(m.bytes_out) + ' out' }));
  }

  function niceMax(v) {
    if (v <= 4) return 4;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function rateChart(series) {
    var W = 240, H = 56;
    var n = Math.max(series.length, 60);
    var max = 0;
    series.forEach(function (p) { max = Math.max(max, int(p && p.requests)); });
    var top = niceMax(max);
    var slot = W / n;
    var bw = Math.max(slot - 0.8, 0.6);
    var svg = s('svg', { class: 'chart', viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Requests and 5xx per minute over the last 60 minutes' },
      s('line', { class: 'grid', x1: 0, x2: W, y1: 0.5, y2: 0.5, 'vector-effect': 'non-scaling-stroke' }),
      s('line', { class: 'grid', x1: 0, x2: W, y1: H / 2, y2: H / 2, 'vector-effect': 'non-scaling-stroke' }),
      s('line', { class: 'axis', x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, 'vector-effect': 'non-scaling-stroke' }));
    var offset = n - series.length;
    series.forEach(function (p, i) {
      var req = int(p && p.requests);
      var err = Math.min(int(p && p.errors), req || int(p && p.errors));
      var x = (offset + i) * slot + (slot - bw) / 2;
      var g = s('g', null);
      var label = (p && typeof p.at === 'number' ? clock(new Date(p.at * 1000)).slice(0, 5) + ' · ' : '') + req + ' requests, ' + int(p && p.errors) + ' 5xx';
      g.appendChild(s('title', { text: label }));
      // A transparent full-height rect gives every minute a hover target.
      g.appendChild(s('rect', { class: 'hit', x: offset * slot + i * slot, y: 0, width: slot, height: H }));
      if (req > 0) {
        var rh = Math.max((req / top) * H, 1);
        g.appendChild(s('rect', { class: 'bar-req', x: x, y: H - rh, width: bw, height: rh }));
      }
      if (err > 0) {
        var eh = Math.max((err / top) * H, 1);
        g.appendChild(s('rect', { class: 'bar-err', x: x, y: H - eh, width: bw, height: eh }));
      }
      svg.appendChild(g);
    });
    return h('div', { class: 'chart-wrap' },
      h('div', { class: 'chart-y' }, h('span', { text: compact(top) }), h('span', { text: compact(top / 2) }), h('span', { text: '0' })),
      h('div', { class: 'chart-main' },
        svg,
        h('div', { class: 'chart-x' }, h('span', { text: '60 min ago' }), h('span', { text: '30' }), h('span', { text: 'now' }))),
      max === 0 ? h('div', { class: 'chart-empty', text: 'no requests in the last hour' }) : null);
  }

  function latencyTable(m) {
    function row(label, d, keys) {
      d = d && typeof d === 'object' ? d : {};
      return h('tr', null,
        h('th', { scope: 'row', text: label }),
        keys.map(function (k) { return h('td', { class: 'num', text: k ? ms(d[k]) : '' }); }));
    }
    return h('div', { class: 'latency' },
      h('div', { class: 'section-title', text: 'Latency' }),
      h('table', { class: 'mini' },
        h('thead', null, h('tr', null, h('th', null), h('th', { class: 'num', text: 'p50' }), h('th', { class: 'num', text: 'p95' }), h('th', { class: 'num', text: 'p99' }))),
        h('tbody', null,
          row('Last hour', m.latency_ms_last_hour, ['p50', 'p95', 'p99']),
          row('All time', m.latency_ms, ['p50', 'p95', 'p99']),
          row('Gateway', m.gateway_overhead_ms, ['p50', null, 'p99']))));
  }

  function statusMix(by) {
    var parts = [];
    var total = 0;
    STATUS_ORDER.forEach(function (k) {
      var v = int(own(by, k));
      if (k === '2xx' || k === '4xx' || k === '5xx' || v > 0) parts.push([k, v]);
      total += v;
    });
    var svg = s('svg', { class: 'stack', viewBox: '0 0 100 10', preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Responses by status class' });
    if (total === 0) {
      svg.appendChild(s('rect', { class: 'st-none', x: 0, y: 0, width: 100, height: 10 }));
    } else {
      var x = 0;
      parts.forEach(function (p) {
        if (!p[1]) return;
        var w = (p[1] / total) * 100;
        svg.appendChild(s('rect', { class: 'st-' + p[0], x: x, y: 0, width: w, height: 10 }, s('title', { text: p[0] + ': ' + p[1] })));
        x += w;
      });
    }
    return h('div', { class: 'status-mix' },
      h('div', { class: 'section-title', text: 'Status mix' }),
      svg,
      h('ul', { class: 'mix-legend' },
        parts.map(function (p) {
          return h('li', { 'data-class': p[0] },
            h('span', { class: 'swatch st-' + p[0] }),
            h('span', { class: 'mix-k', text: p[0] }),
            h('span', { class: 'mix-v', text: num(p[1]) }),
            total ? h('span', { class: 'muted', text: ' ' + pct(p[1] / total) }) : null);
        })));
  }

  // vLLM's latest load reading of an endpoint (`load` in the metrics; null: none
  // yet, or not a vLLM). The balancer ignores a reading older than this.
  var LOAD_STALE_SECS = 30;

  function loadReading(m) {
    var l = m && m.load;
    if (!l || typeof l !== 'object') return null;
    var at = typeof l.at === 'number' && l.at > 0 ? l.at : null;
    // The age by the gateway's clock (when the metrics were generated), not this browser's.
    var gen = state.data.metrics && typeof state.data.metrics.generated_at === 'number' ? state.data.metrics.generated_at : nowS();
    var age = at != null ? Math.max(0, gen - at) : null;
    return { load: l, at: at, age: age, stale: age == null || age > LOAD_STALE_SECS };
  }

  function count(v) {
    return typeof v === 'number' && isFinite(v) ? numberFmt.format(Math.round(v * 10) / 10) : '—';
  }

  // The four load cells of an endpoint's row: running, waiting, KV cache, prefix hits.
  function loadCells(m) {
    var r = loadReading(m);
    if (!r) {
      var none = 'No load reading (not read yet, or not a vLLM)';
      return ['running', 'waiting', 'kv', 'prefix'].map(function (k) {
        return h('td', { class: 'num load load-' + k + ' load-none muted', title: none, text: '—' });
      });
    }
    var l = r.load;
    var title = (r.age == null ? 'Reading time unknown' : 'Read ' + span(r.age) + ' ago (' + dateTime(r.at) + ')') +
      (r.stale ? ' · stale: the balancer ignores readings older than ' + LOAD_STALE_SECS + ' s' : '');
    var base = 'num load' + (r.stale ? ' load-stale' : '');
    var waiting = typeof l.waiting === 'number' && l.waiting > 0;
    var hits = title;
    if (typeof l.prefix_cache_queries === 'number' && typeof l.prefix_cache_hits === 'number') {
      hits += ' · ' + compact(l.prefix_cache_hits) + ' of ' + compact(l.prefix_cache_queries) + ' prompt tokens found in the cache since the server started';
    }
    return [
      h('td', { class: base + ' load-running', title: title, text: count(l.running) }),
      h('td', { class: base + ' load-waiting' + (waiting ? ' queued' : ''), title: waiting ? title + ' · requests are queueing' : title, text: count(l.waiting) }),
      h('td', { class: base + ' load-kv', title: title, text: pct(l.kv_cache_usage) }),
      h('td', { class: base + ' load-prefix', title: hits, text: pct(l.prefix_cache_hit_rate) }),
    ];
  }

  function endpointTable(eps) {
    if (!eps.length) return h('p', { class: 'muted small', text: 'No endpoints.' });
    var loadNote = ' (vLLM\'s last reading; hover for its age, dimmed when older than ' + LOAD_STALE_SECS + ' s)';
    var stale = eps.filter(function (e) { var r = loadReading(e.m); return r && r.stale; }).map(function (e) { return e.id; });
    return h('div', { class: 'table-wrap' }, h('table', { class: 'mini endpoints' },
      h('thead', null, h('tr', null,
        h('th', { text: 'Endpoint' }), h('th', { text: 'Health' }),
        h('th', { class: 'num', text: 'Up 24 h' }), h('th', { class: 'num', text: 'Up 7 d' }),
        h('th', { class: 'num', text: 'Requests' }), h('th', { class: 'num', text: 'Failures' }),
        h('th', { class: 'num load-col', title: 'Requests in the running batch' + loadNote, text: 'Running' }),
        h('th', { class: 'num load-col', title: 'Requests queued' + loadNote, text: 'Waiting' }),
        h('th', { class: 'num load-col', title: 'KV cache in use' + loadNote, text: 'KV cache' }),
        h('th', { class: 'num load-col', title: 'Prefix cache hit rate' + loadNote, text: 'Prefix hits' }))),
      h('tbody', null, eps.map(function (e) {
        var m = e.m || {};
        var health = m.health === 'up' || m.health === 'down' ? m.health : 'unknown';
        var info = [];
        if (e.def && typeof e.def.url === 'string') info.push(e.def.url);
        if (e.def && e.def.weight != null) info.push('weight ' + e.def.weight);
        if (e.def && e.def.via) info.push('via ' + e.def.via);
        if (!e.def) info.push('leased or no longer in the route');
        if (typeof m.last_probe_at === 'number') info.push('last probe ' + dateTime(m.last_probe_at));
        return h('tr', { class: 'endpoint', 'data-endpoint': e.id },
          h('td', { class: 'ep-id', title: info.join(' · '), text: e.id }),
          h('td', null, badge(health, 'health-' + health, typeof m.last_probe_at === 'number' ? 'Last probe ' + relative(m.last_probe_at) : 'Not probed yet')),
          h('td', { class: 'num', text: pct(m.uptime_24h) }),
          h('td', { class: 'num', text: pct(m.uptime_7d) }),
          h('td', { class: 'num', text: compact(m.requests) }),
          h('td', { class: 'num' + (int(m.failures) ? ' bad' : ''), text: compact(m.failures) }),
          loadCells(m));
      }))),
      stale.length ? h('p', { class: 'load-note muted small', text: 'Dimmed: a load reading older than ' + LOAD_STALE_SECS + ' s (' + stale.join(', ') + '), which the balancer ignores.' }) : null);
  }

  function routeTokens(route, ctx) {
    var rows = [];
    entries(ctx.tmetrics).forEach(function (kv) {
      var n = int(own(kv[1] && kv[1].routes, route));
      if (n > 0) rows.push({ id: kv[0], n: n, m: kv[1] });
    });
    if (!rows.length) return h('p', { class: 'muted small', text: 'No token has called this route.' });
    rows.sort(function (a, b) { return b.n - a.n || (a.id < b.id ? -1 : 1); });
    var shown = rows.slice(0, 6);
    return h('div', null,
      h('table', { class: 'mini route-tokens' },
        h('tbody', null, shown.map(function (r) {
          var t = ctx.tokens.get(r.id);
          var who = t ? t.subject : r.id;
          var desc = t && t.description ? t.description : t ? '' : 'not in the token list';
          var st = t ? tokenState(t) : null;
          return h('tr', { 'data-token-id': r.id },
            h('td', { class: 'who' },
              h('span', { class: 'subject', title: r.id, text: who }),
              st === 'revoked' || st === 'expired' ? badge(st, st === 'revoked' ? 'bad' : 'neutral') : null,
              desc ? h('span', { class: 'desc muted', text: desc }) : null),
            h('td', { class: 'num', title: 'requests on this route', text: compact(r.n) + ' req' }),
            h('td', { class: 'num muted' }, when(r.m && r.m.last_seen)));
        }))),
      rows.length > shown.length ? h('p', { class: 'muted small', text: '+ ' + (rows.length - shown.length) + ' more' }) : null);
  }

  function renderTokens() {
    var container = clear($('tokens'));
    var all = tokenList();
    var filter = $('token-filter').value.trim().toLowerCase();
    var hideInactive = $('hide-inactive').checked;

    // Expiring soon.
    var soon = all.filter(function (t) { return tokenState(t) === 'expiring'; })
      .sort(function (a, b) { return a.expires_at - b.expires_at; });
    var exp = clear($('expiring'));
    show(exp, soon.length > 0);
    if (soon.length) {
      append(exp, [
        h('div', { class: 'expiring-title', text: 'Expiring soon (' + soon.length + ')' }),
        h('ul', null, soon.map(function (t) {
          return h('li', { 'data-token-id': t.id },
            h('strong', { text: t.subject || t.id }),
            t.description ? h('span', { class: 'muted', text: ' · ' + t.description }) : null,
            h('span', { class: 'expiring-when' }, ' expires ', when(t.expires_at)));
        })),
      ]);
    }

    if (state.errors.tokens && !state.data.tokens) {
      container.appendChild(h('p', { class: 'form-error', text: 'Could not load tokens: ' + state.errors.tokens }));
      return;
    }
    var rows = all.filter(function (t) {
      var st = tokenState(t);
      if (hideInactive && (st === 'revoked' || st === 'expired')) return false;
      if (!filter) return true;
      return [t.id, t.subject, t.description, list(t.groups).join(','), t.owner, meta(t, 'partner'), meta(t, 'contract_id')].some(function (v) {
        return typeof v === 'string' && v.toLowerCase().indexOf(filter) >= 0;
      });
    });
    if (!rows.length) {
      container.appendChild(h('p', { class: 'muted', text: all.length ? 'No token matches.' : 'No tokens issued yet.' }));
      return;
    }
    container.appendChild(h('table', { class: 'data tokens-table' },
      h('thead', null, h('tr', null,
        h('th', { text: 'Token' }), h('th', { text: 'Kind' }), h('th', { text: 'Groups' }),
        h('th', { text: 'Expires' }), h('th', { text: 'Last use' }), h('th', { class: 'num', text: 'Requests' }), h('th', { class: 'actions-col', text: '' }))),
      h('tbody', null, rows.map(function (t) { return tokenRow(t, 'tokens'); }))));
  }

  function tokensTableHead() {
    return h('thead', null, h('tr', null,
      h('th', { text: 'Token' }), h('th', { text: 'Kind' }), h('th', { text: 'Groups' }),
      h('th', { text: 'Expires' }), h('th', { text: 'Last use' }), h('th', { class: 'num', text: 'Requests' }), h('th', { class: 'actions-col', text: '' })));
  }

  // One token as a table row, with its revoke action. `where` is the container
  // it is shown in: 'tokens' (rows of class token-row) or 'principals' (rows of
  // class principal-token), so that each container asks for its own confirmation.
  function tokenRow(t, where) {
    var st = tokenState(t);
    var groups = list(t.groups);
    var allow = Array.isArray(t.routes) ? list(t.routes) : null;
    var requests = tokenRequests(t);
    var action;
    if (st === 'revoked') {
      action = h('span', { class: 'state' }, badge('revoked', 'bad'), when(t.revoked_at, ''));
    } else if (st === 'expired') {
      action = badge('expired', 'neutral');
    } else if (state.revoking === t.id) {
      action = h('button', { type: 'button', class: 'btn btn-small btn-danger', disabled: true, text: 'Revoking…' });
    } else if (state.pendingRevoke === t.id && state.pendingRevokeIn === where) {
      action = h('span', { class: 'confirm' },
        h('button', { type: 'button', class: 'btn btn-small btn-danger revoke-confirm', 'data-token-id': t.id, text: 'Confirm revoke' }),
        h('button', { type: 'button', class: 'btn btn-small btn-quiet revoke-cancel', 'data-token-id': t.id, text: 'Cancel' }));
    } else {
      action = h('button', { type: 'button', class: 'btn btn-small revoke', 'data-token-id': t.id, text: 'Revoke', 'aria-label': 'Revoke token ' + t.id });
    }
    var by = t.created_by ? ' by ' + t.created_by : null;
    var who = [];
    if (typeof t.owner === 'string' && t.owner) who.push('owner ' + t.owner);
    if (t.kind === 'partner') {
      who.push(meta(t, 'partner') ? 'partner ' + meta(t, 'partner') : 'no partner name');
      if (meta(t, 'contract_id')) who.push('contract ' + meta(t, 'contract_id'));
    }
    return h('tr', { class: (where === 'principals' ? 'principal-token ' : 'token-row ') + st, 'data-token-id': t.id },
      h('td', { class: 'who' },
        h('div', null,
          h('strong', { class: 'subject', text: t.subject || '(no subject)' }),
          t.description ? h('span', { class: 'desc', text: t.description }) : null),
        h('div', { class: 'tok-id mono muted', text: t.id }),
        who.length ? h('div', { class: 'small tok-principal', text: who.join(' · ') }) : null,
        h('div', { class: 'muted small created' }, 'created ', when(t.created_at), by)),
      h('td', null, badge(String(t.kind || '?'), 'kind-' + (t.kind || 'unknown'))),
      h('td', null,
        groups.length ? groups.map(function (g) { return h('span', { class: 'chip', text: g }); }) : h('span', { class: 'muted', text: '—' }),
        allow ? h('div', { class: 'small muted', text: 'routes: ' + (allow.length ? allow.join(', ') : 'none') }) : null),
      h('td', { class: 'nowrap' + (st === 'expiring' ? ' warn-text' : '') }, when(t.expires_at, '—')),
      h('td', { class: 'nowrap' }, when(lastUse(t))),
      h('td', { class: 'num', text: compact(requests) }),
      h('td', { class: 'actions-col' }, action));
  }

  function renderPrincipals() {
    var container = clear($('principals'));
    var accountsOn = state.accountsApi !== false;
    show($('sa-card'), accountsOn);
    $('identity-row').classList.toggle('single', !accountsOn);
    $('principals-note').textContent = state.errors.accounts ? 'service accounts unavailable: ' + state.errors.accounts : '';
    if (state.errors.tokens && !state.data.tokens) {
      container.appendChild(h('p', { class: 'form-error', text: 'Could not load tokens: ' + state.errors.tokens }));
      return;
    }
    var all = principalModels();
    var filter = $('principal-filter').value.trim().toLowerCase();
    var hideIdle = $('hide-idle').checked;
    var rows = all.filter(function (p) {
      if (hideIdle && !p.active && !p.account) return false;
      if (!filter) return true;
      var a = p.account || {};
      return [p.subject, p.owner, p.partner, p.contract, p.groups.join(','), a.owner, a.description, p.account ? 'service account' : p.kind].some(function (v) {
        return typeof v === 'string' && v.toLowerCase().indexOf(filter) >= 0;
      });
    });
    if (!rows.length) {
      container.appendChild(h('p', { class: 'muted', text: all.length ? 'No principal matches.' : 'No principals yet: issue a token or create a service account.' }));
      return;
    }
    container.appendChild(h('table', { class: 'data principals-table' },
      h('thead', null, h('tr', null,
        h('th', { text: 'Principal' }), h('th', { text: 'Kind and groups' }),
        h('th', { class: 'num', text: 'Active tokens' }), h('th', { text: 'Last use' }), h('th', { class: 'num', text: 'Requests' }), h('th', { class: 'actions-col', text: '' }))),
      rows.map(principalBody)));
  }

  function principalBody(p) {
    var open = state.expanded.has(p.key) && p.tokens.length > 0;
    var a = p.account;
    var detail = [];
    if (a) {
      if (a.owner) detail.push(h('span', null, 'owner ', h('strong', { class: 'principal-owner', text: String(a.owner) })));
      if (a.description) detail.push(h('span', { text: String(a.description) }));
    } else {
      if (p.owner) detail.push(h('span', null, 'owner ', h('strong', { class: 'principal-owner', text: p.owner })));
      if (p.kind === 'partner') {
        detail.push(h('span', null, 'partner ', h('strong', { class: 'principal-partner', text: p.partner || '(none)' })));
        if (p.contract) detail.push(h('span', null, 'contract ', h('strong', { class: 'principal-contract', text: p.contract })));
      }
    }
    var kinds = [];
    if (a) kinds.push(badge('service account', 'kind-service', 'Service account'));
    else kinds.push(badge(p.kind, 'kind-' + p.kind));
    if (p.owner) kinds.push(badge('self-service', 'neutral', 'Issued by its owner through /_gateway/me/tokens'));

    var name = [
      h('strong', { class: 'principal-name', text: p.subject || '(no subject)' }),
    ];
    var head = p.tokens.length
      ? h('button', {
        type: 'button', class: 'principal-toggle', 'data-principal-key': p.key, 'aria-expanded': open ? 'true' : 'false',
        title: (open ? 'Hide' : 'Show') + ' its tokens',
      }, h('span', { class: 'chev', 'aria-hidden': 'true' }), name)
      : h('span', { class: 'principal-toggle static' }, h('span', { class: 'chev none', 'aria-hidden': 'true' }), name);

    var actions = [];
    if (a) {
      if (state.deleting === a.name) {
        actions.push(h('button', { type: 'button', class: 'btn btn-small btn-danger', disabled: true, text: 'Deleting…' }));
      } else if (state.pendingDelete === a.name) {
        actions.push(h('span', { class: 'confirm' },
          h('span', { class: 'small bad confirm-note', text: p.active ? 'Also revokes ' + p.active + ' token' + (p.active === 1 ? '' : 's') : 'No active token' }),
          h('button', { type: 'button', class: 'btn btn-small btn-danger sa-delete-confirm', 'data-account': a.name, text: 'Confirm delete' }),
          h('button', { type: 'button', class: 'btn btn-small btn-quiet sa-delete-cancel', 'data-account': a.name, text: 'Cancel' })));
      } else {
        actions.push(h('span', { class: 'row-actions' },
          h('button', { type: 'button', class: 'btn btn-small sa-issue-open', 'data-account': a.name, text: 'Issue token', 'aria-label': 'Issue a token for service account ' + a.name }),
          h('button', { type: 'button', class: 'btn btn-small sa-delete', 'data-account': a.name, text: 'Delete', 'aria-label': 'Delete service account ' + a.name })));
      }
    }

    var body = h('tbody', {
      class: 'principal' + (open ? ' open' : '') + (p.active ? '' : ' idle'),
      'data-principal': p.key,
      'data-kind': a ? 'service-account' : p.kind,
      'data-service-account': a ? a.name : null,
    },
      h('tr', { class: 'principal-row' },
        h('td', { class: 'who' },
          head,
          detail.length ? h('div', { class: 'small muted principal-detail' }, detail.map(function (d, i) { return i ? [' · ', d] : d; })) : null,
          a ? h('div', { class: 'muted small created' }, 'created ', when(a.created_at), a.created_by ? ' by ' + a.created_by : null) : null),
        h('td', { class: 'principal-kind' },
          h('div', { class: 'badges-inline' }, kinds),
          p.groups.length ? h('div', { class: 'principal-groups' }, p.groups.map(function (g) { return h('span', { class: 'chip', text: g }); })) : null),
        h('td', { class: 'num' },
          h('span', { class: 'principal-active', 'data-value': p.active, text: String(p.active) }),
          p.tokens.length !== p.active ? h('div', { class: 'muted small principal-total', text: p.tokens.length ? 'of ' + p.tokens.length : 'no tokens' }) : null),
        h('td', { class: 'nowrap principal-last-use' }, when(p.lastUse)),
        h('td', { class: 'num principal-requests', text: compact(p.requests) }),
        h('td', { class: 'actions-col' }, actions)));
    if (open) {
      body.appendChild(h('tr', { class: 'principal-tokens' },
        h('td', { colspan: 6 },
          h('table', { class: 'data tokens-table nested' },
            tokensTableHead(),
            h('tbody', null, p.tokens.map(function (t) { return tokenRow(t, 'principals'); }))))));
    }
    return body;
  }

  function renderPartners() {
    var el = clear($('partners'));
    var partners = partnerModels();
    var unnamed = tokenList().filter(function (t) { return t.kind === 'partner' && !meta(t, 'partner'); }).length;
    var note = [];
    if (state.errors.metrics) note.push('usage unavailable: ' + state.errors.metrics);
    if (unnamed) note.push(unnamed + ' partner token' + (unnamed === 1 ? ' names' : 's name') + ' no partner (issued before partner names were required)');
    $('partners-note').textContent = note.join(' · ');
    if (!partners.length) {
      el.appendChild(h('div', { class: 'card empty', text: 'No partners yet. Issue a token of kind partner, with the partner\'s name and contract id.' }));
      return;
    }
    partners.forEach(function (p) { el.appendChild(partnerCard(p)); });
  }

  function shareBar(f) {
    return s('svg', { class: 'share', viewBox: '0 0 100 6', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
      s('rect', { class: 'share-bg', x: 0, y: 0, width: 100, height: 6 }),
      f > 0 ? s('rect', { class: 'share-fill', x: 0, y: 0, width: Math.max(f * 100, 1), height: 6 }) : null);
  }

  function partnerCard(p) {
    var m = p.m || {};
    var requests = int(m.requests);
    var used = entries(m.routes).map(function (kv) { return [kv[0], int(kv[1])]; }).filter(function (kv) { return kv[1] > 0; })
      .sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : 1); });
    var live = p.tokens.filter(function (t) { return isLive(tokenState(t)); });
    var contracts = [];
    var allowed = [];
    live.forEach(function (t) {
      if (meta(t, 'contract_id') && contracts.indexOf(meta(t, 'contract_id')) < 0) contracts.push(meta(t, 'contract_id'));
      list(t.routes).forEach(function (r) { if (allowed.indexOf(r) < 0) allowed.push(r); });
    });
    var sub = [];
    if (contracts.length) sub.push((contracts.length === 1 ? 'contract ' : 'contracts ') + contracts.join(', '));
    if (allowed.length) sub.push('may call ' + allowed.join(', '));
    var tokens = p.tokens.slice().sort(function (a, b) {
      var la = isLive(tokenState(a)), lb = isLive(tokenState(b));
      if (la !== lb) return la ? -1 : 1;
      return int(b.created_at) - int(a.created_at);
    });

    return h('article', { class: 'card partner', 'data-partner': p.name },
      h('div', { class: 'route-head' },
        h('h3', { class: 'route-name partner-name', title: p.name, text: p.name }),
        h('div', { class: 'badges' },
          live.length ? badge(live.length + ' active token' + (live.length === 1 ? '' : 's'), 'good') : badge('no active token', 'warn'))),
      sub.length ? h('p', { class: 'route-sub muted small', text: sub.join(' · ') }) : null,
      h('div', { class: 'route-stats partner-stats' },
        h('div', { class: 'kv' },
          h('span', { class: 'k', text: 'Requests' }),
          h('span', { class: 'v partner-requests', 'data-value': requests, text: String(requests) })),
        h('div', { class: 'kv' },
          h('span', { class: 'k', text: 'Routes used' }),
          h('span', { class: 'v partner-routes-count', text: String(used.length) })),
        h('div', { class: 'kv' },
          h('span', { class: 'k', text: 'Last seen' }),
          h('span', { class: 'v partner-last-seen' }, when(m.last_seen))),
        h('div', { class: 'kv llm' },
          h('span', { class: 'k', text: 'LLM tokens in / out' }),
          h('span', { class: 'v', title: 'prompt: ' + int(m.prompt_tokens) + ', completion: ' + int(m.completion_tokens) },
            h('span', { class: 'partner-prompt-tokens', text: compact(m.prompt_tokens) }),
            h('span', { class: 'sep', text: ' / ' }),
            h('span', { class: 'partner-completion-tokens', text: compact(m.completion_tokens) })))),
      h('div', { class: 'section' },
        h('div', { class: 'section-head' }, h('span', { class: 'section-title', text: 'Requests by route' })),
        used.length
          ? h('table', { class: 'mini partner-routes' },
            h('tbody', null, used.map(function (kv) {
              return h('tr', { 'data-partner-route': kv[0] },
                h('td', { class: 'mono route-cell', title: kv[0], text: kv[0] }),
                h('td', { class: 'bar-cell' }, shareBar(kv[1] / Math.max(requests, kv[1], 1))),
                h('td', { class: 'num', text: compact(kv[1]) + ' req' }),
                h('td', { class: 'num muted', text: requests ? pct(kv[1] / requests) : '' }));
            })))
          : h('p', { class: 'muted small', text: 'No requests from this partner yet.' })),
      h('div', { class: 'section' },
        h('div', { class: 'section-head' }, h('span', { class: 'section-title', text: 'Partner tokens' })),
        tokens.length
          ? h('table', { class: 'mini partner-tokens' },
            h('thead', null, h('tr', null,
              h('th', { class: 'pt-who', text: 'Token' }), h('th', { class: 'pt-contract', text: 'Contract' }),
              h('th', { class: 'pt-expires', text: 'Expires' }), h('th', { class: 'num pt-requests', text: 'Requests' }))),
            h('tbody', null, tokens.map(function (t) {
              var st = tokenState(t);
              return h('tr', { class: 'partner-token ' + st, 'data-token-id': t.id },
                h('td', { class: 'who' },
                  h('span', { class: 'subject', title: t.id, text: t.subject || t.id }),
                  t.description ? h('span', { class: 'desc muted', text: t.description }) : null),
                h('td', { class: 'partner-contract mono', text: meta(t, 'contract_id') || '—' }),
                h('td', { class: 'nowrap' + (st === 'expiring' ? ' warn-text' : '') },
                  st === 'revoked' ? badge('revoked', 'bad', t.revoked_at ? 'Revoked ' + dateTime(t.revoked_at) : null)
                    : st === 'expired' ? badge('expired', 'neutral', 'Expired ' + dateTime(t.expires_at))
                      : when(t.expires_at, '—')),
                h('td', { class: 'num', text: compact(tokenRequests(t)) }));
            })))
          : h('p', { class: 'muted small', text: 'No tokens name this partner.' })));
  }

  // ---------------------------------------------------------------------------
  // Token budgets: limits in LLM tokens per minute, UTC day and UTC month, for a
  // token, a service subject or a partner contract, next to what was used
  // ---------------------------------------------------------------------------

  var BUDGET_WINDOWS = [
    { key: 'minute', field: 'tokens_per_minute', label: 'Per minute' },
    { key: 'day', field: 'tokens_per_day', label: 'Per day (UTC)' },
    { key: 'month', field: 'tokens_per_month', label: 'Per month (UTC)' },
  ];

  var BUDGET_KINDS = {
    tokens: { order: 0, label: 'token', cls: 'kind-user' },
    'service-accounts': { order: 1, label: 'service account', cls: 'kind-service' },
    contracts: { order: 2, label: 'contract', cls: 'kind-partner' },
  };

  function budgetList() {
    var b = state.data.budgets && state.data.budgets.budgets;
    var out = Array.isArray(b) ? b.filter(function (x) { return x && typeof x.kind === 'string' && typeof x.id === 'string'; }) : [];
    var order = function (k) { var o = own(BUDGET_KINDS, k); return o ? o.order : 9; };
    return out.slice().sort(function (a, b) {
      return order(a.kind) - order(b.kind) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    });
  }

  // Each window of a budget: its limit (null: none set), the tokens used in it, and
  // whether it is spent (the gateway refuses with 429 until the window turns).
  function budgetWindows(b) {
    return BUDGET_WINDOWS.map(function (w) {
      var l = b[w.field];
      var limit = typeof l === 'number' && isFinite(l) && l > 0 ? l : null;
      var used = int(own(b.used, w.key));
      return { key: w.key, label: w.label, field: w.field, limit: limit, used: used, spent: limit != null && used >= limit };
    });
  }

  // When the UTC window holding `now` ends (unix seconds).
  function windowEnd(key, now) {
    if (key === 'minute') return Math.floor(now / 60) * 60 + 60;
    if (key === 'day') return Math.floor(now / DAY) * DAY + DAY;
    var d = new Date(now * 1000);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) / 1000;
  }

  // A share of a limit: one decimal below it (rounded down, so an unspent budget never
  // shows 100%), whole percents at and above it (the answer that crosses a limit completes).
  function budgetPct(used, limit) {
    var p = (used / limit) * 100;
    return p >= 100 ? Math.floor(p) + '%' : (Math.floor(p * 10) / 10).toFixed(1) + '%';
  }

  function budgetBar(share) {
    var cls = share >= 1 ? ' bad' : share >= 0.8 ? ' warn' : '';
    return s('svg', { class: 'share budget-bar', viewBox: '0 0 100 6', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
      s('rect', { class: 'share-bg', x: 0, y: 0, width: 100, height: 6 }),
      share > 0 ? s('rect', { class: 'budget-fill' + cls, x: 0, y: 0, width: Math.max(Math.min(share, 1) * 100, 1), height: 6 }) : null);
  }

  // Who a budget's id stands for, from the tokens and accounts the page has.
  function budgetWho(b) {
    var live = function (t) { return isLive(tokenState(t)); };
    if (b.kind === 'tokens') {
      var t = tokenIndex().get(b.id);
      if (!t) return h('span', { class: 'muted', text: 'not in the token list' });
      var st = tokenState(t);
      return h('span', null,
        h('span', { class: 'budget-subject', text: t.subject || '(no subject)' }),
        t.description ? h('span', { class: 'muted', text: ' · ' + t.description }) : null,
        live(t) ? null : [' ', badge(st, st === 'revoked' ? 'bad' : 'neutral')]);
    }
    if (b.kind === 'service-accounts') {
      var a = findAccount(b.id);
      var n = tokenList().filter(function (x) { return x.kind === 'service' && x.subject === b.id && live(x); }).length;
      return h('span', { class: 'muted', text: (a ? 'service account' + (a.owner ? ', owner ' + a.owner : '') : 'service subject') + ' · ' + n + ' active token' + (n === 1 ? '' : 's') });
    }
    if (b.kind === 'contracts') {
      var partners = [];
      var count = 0;
      tokenList().forEach(function (x) {
        if (x.kind !== 'partner' || meta(x, 'contract_id') !== b.id) return;
        if (meta(x, 'partner') && partners.indexOf(meta(x, 'partner')) < 0) partners.push(meta(x, 'partner'));
        if (live(x)) count++;
      });
      if (!partners.length && !count) return h('span', { class: 'muted', text: 'no partner token names this contract' });
      return h('span', { class: 'muted', text: (partners.length ? 'partner ' + partners.join(', ') + ' · ' : '') + count + ' active token' + (count === 1 ? '' : 's') });
    }
    return null;
  }

  function budgetCell(w, now) {
    if (w.limit == null) {
      return h('td', { class: 'budget-cell no-limit muted', 'data-window': w.key, 'data-used': w.used, title: 'No limit in this window' + (w.used ? '; ' + num(w.used) + ' tokens used' : '') },
        h('span', { text: 'no limit' }));
    }
    var end = windowEnd(w.key, now);
    var title = num(w.used) + ' of ' + num(w.limit) + ' tokens used; the window turns ' + dateTime(end) +
      (w.spent ? '. Spent: requests are refused with 429 until then' : '');
    return h('td', { class: 'budget-cell' + (w.spent ? ' spent' : ''), 'data-window': w.key, 'data-used': w.used, 'data-limit': w.limit, title: title },
      h('div', { class: 'budget-nums' },
        h('span', { class: 'budget-used', text: compact(w.used) }),
        h('span', { class: 'muted', text: ' / ' }),
        h('span', { class: 'budget-limit', text: compact(w.limit) }),
        w.spent ? [' ', badge('spent', 'bad budget-spent', 'Refused with 429 until ' + dateTime(end))] : null),
      budgetBar(w.used / w.limit),
      h('div', { class: 'budget-pct small muted', text: budgetPct(w.used, w.limit) }));
  }

  function renderBudgets() {
    var container = clear($('budgets'));
    show($('budgets-card'), state.budgetsApi !== false);
    var all = budgetList();
    var spent = all.filter(function (b) { return budgetWindows(b).some(function (w) { return w.spent; }); }).length;
    var note = [];
    if (state.errors.budgets) note.push('budgets unavailable: ' + state.errors.budgets);
    if (spent) note.push(spent + ' of ' + all.length + ' spent');
    $('budgets-note').textContent = note.join(' · ');
    if (state.errors.budgets && !state.data.budgets) {
      container.appendChild(h('p', { class: 'form-error', text: 'Could not load budgets: ' + state.errors.budgets }));
      return;
    }
    if (!all.length) {
      container.appendChild(h('p', { class: 'muted', text: 'No token budgets. Set one with gatewayctl budgets set, or PUT /_gateway/budgets/{tokens|service-accounts|contracts}/{id}.' }));
      return;
    }
    var now = nowS();
    container.appendChild(h('table', { class: 'data budgets-table' },
      h('thead', null, h('tr', null,
        h('th', { text: 'Kind' }), h('th', { text: 'Budget for' }),
        BUDGET_WINDOWS.map(function (w) { return h('th', { class: 'budget-col', text: w.label }); }))),
      h('tbody', null, all.map(function (b) {
        var ws = budgetWindows(b);
        var k = own(BUDGET_KINDS, b.kind);
        return h('tr', { class: 'budget-row' + (ws.some(function (w) { return w.spent; }) ? ' spent' : ''), 'data-budget': b.kind + '/' + b.id },
          h('td', null,
            h('div', { class: 'badges-inline' },
              badge(k ? k.label : String(b.kind), k ? k.cls : 'neutral'),
              b.managed_by ? badge(String(b.managed_by), 'neutral budget-managed', 'Managed by ' + b.managed_by + '; the admin API will not change it') : null)),
          h('td', { class: 'who' },
            h('div', { class: 'mono budget-id', text: b.id }),
            h('div', { class: 'small' }, budgetWho(b))),
          ws.map(function (w) { return budgetCell(w, now); }));
      }))));
  }

  function renderAudit() {
    var container = clear($('audit'));
    var a = state.data.audit;
    var rows = a && Array.isArray(a.entries) ? a.entries : [];
    $('audit-newest').disabled = state.auditBefore == null;
    var older = a && (a.next_before != null || rows.length >= AUDIT_PAGE) && rows.length > 0;
    $('audit-older').disabled = !older;
    $('audit-page').textContent = state.auditBefore == null ? 'newest first' : 'older entries, before #' + state.auditBefore;
    if (state.errors.audit && !a) {
      container.appendChild(h('p', { class: 'form-error', text: 'Could not load the audit trail: ' + state.errors.audit }));
      return;
    }
    if (!rows.length) {
      container.appendChild(h('p', { class: 'muted', text: 'No admin action recorded yet.' }));
      return;
    }
    container.appendChild(h('table', { class: 'data audit-table' },
      h('thead', null, h('tr', null,
        h('th', { class: 'num', text: '#' }), h('th', { text: 'Time' }), h('th', { text: 'Actor' }),
        h('th', { text: 'Action' }), h('th', { text: 'Object' }), h('th', { text: 'Outcome' }))),
      h('tbody', null, rows.map(function (e) {
        var ok = e.outcome === 'ok';
        return h('tr', { class: 'audit-row', 'data-seq': e.seq },
          h('td', { class: 'num muted', text: e.seq != null ? String(e.seq) : '' }),
          h('td', { class: 'nowrap', title: relative(e.at), text: dateTime(e.at) }),
          h('td', { title: e.actor_token || '' }, h('span', { text: e.actor || '' })),
          h('td', null, h('code', { text: e.action || '' })),
          h('td', { class: 'mono obj', title: versions(e), text: (e.object || '') + (versions(e) ? ' (' + versions(e) + ')' : '') }),
          h('td', null, badge(String(e.outcome || '?'), ok ? 'good' : 'bad')));
      }))));
  }

  // A change Terraform made outside the admin API: its route versions, old → new.
  function versions(e) {
    if (e.old_version == null && e.new_version == null) return '';
    return (e.old_version || '∅') + ' → ' + (e.new_version || '∅');
  }

  // ---------------------------------------------------------------------------
  // CSV export: built here from what the page last fetched, no other call
  // ---------------------------------------------------------------------------

  // Text a spreadsheet would read as a formula (OWASP's list: = + - @, tab, CR)
  // gets a leading apostrophe. Subjects, descriptions, owners, contract ids and
  // hosts are whatever an admin or a partner typed.
  var FORMULA_START = /^[=+\-@\t\r]/;

  // One RFC 4180 field. Numbers and booleans as they are, null as an empty field;
  // text neutralised, then quoted (quotes doubled) when it holds a comma, a quote,
  // CR or LF, or was neutralised.
  function csvField(v) {
    if (v == null) return '';
    if (typeof v === 'number') return isFinite(v) ? String(v) : '';
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    var text = String(v);
    var neutralised = FORMULA_START.test(text);
    if (neutralised) text = "'" + text;
    return neutralised || /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function csvText(header, rows) {
    return [header].concat(rows).map(function (r) { return r.map(csvField).join(','); }).join('\r\n') + '\r\n';
  }

  // UTC, in the form spreadsheets read as a date and time; the column names say UTC.
  function utc(unix) {
    if (typeof unix !== 'number' || !unix) return null;
    return new Date(unix * 1000).toISOString().slice(0, 19).replace('T', ' ');
  }

  function num0(v) {
    return typeof v === 'number' && isFinite(v) ? v : null;
  }

  function joined(v) {
    var l = list(v);
    return l.length ? l.join('; ') : null;
  }

  function routesCsv() {
    var header = ['route', 'state', 'host', 'auth_required', 'groups', 'managed_by', 'expires_at_utc', 'endpoints', 'endpoints_up',
      'requests_total', 'requests_last_hour', 'errors_5xx_last_hour'].concat(STATUS_ORDER.map(function (k) { return 'status_' + k; }), [
      'latency_p50_ms', 'latency_p95_ms', 'latency_p99_ms', 'latency_last_hour_p50_ms', 'latency_last_hour_p95_ms', 'latency_last_hour_p99_ms',
      'gateway_overhead_p50_ms', 'gateway_overhead_p99_ms', 'prompt_tokens', 'completion_tokens', 'bytes_in', 'bytes_out', 'models', 'usage']);
    var rows = routeModels().map(function (rt) {
      var m = rt.m || {};
      var def = rt.def;
      var eps = endpointModels(rt);
      var err5 = 0;
      (Array.isArray(m.series) ? m.series : []).forEach(function (p) { err5 += int(p && p.errors); });
      var d = function (x, k) { return num0(x && typeof x === 'object' ? x[k] : null); };
      var auth = def && def.auth && typeof def.auth === 'object' ? def.auth : null;
      return [
        rt.name,
        !def ? 'metrics only' : def.enabled === false ? 'disabled' : 'enabled',
        def ? def.host : null,
        def ? !(auth && auth.required === false) : null,
        auth ? joined(auth.groups) : null,
        def ? def.managed_by : null,
        def ? utc(def.expires_at) : null,
        eps.length,
        eps.filter(function (e) { return e.m && e.m.health === 'up'; }).length,
        int(m.requests_total), int(m.requests_last_hour), err5,
      ].concat(STATUS_ORDER.map(function (k) { return int(own(m.by_status_class, k)); }), [
        d(m.latency_ms, 'p50'), d(m.latency_ms, 'p95'), d(m.latency_ms, 'p99'),
        d(m.latency_ms_last_hour, 'p50'), d(m.latency_ms_last_hour, 'p95'), d(m.latency_ms_last_hour, 'p99'),
        d(m.gateway_overhead_ms, 'p50'), d(m.gateway_overhead_ms, 'p99'),
        int(m.prompt_tokens), int(m.completion_tokens), int(m.bytes_in), int(m.bytes_out),
        def ? joined(def.models) : null,
        def ? (def.usage === 'always' ? 'always' : 'client') : null,
      ]);
    });
    return { header: header, rows: rows };
  }

  function endpointsCsv() {
    var header = ['route', 'endpoint', 'url', 'weight', 'in_route', 'health', 'uptime_24h', 'uptime_7d', 'requests', 'failures', 'last_probe_at_utc',
      'running', 'waiting', 'kv_cache_usage', 'prefix_cache_hit_rate', 'load_read_at_utc'];
    var rows = [];
    routeModels().forEach(function (rt) {
      endpointModels(rt).forEach(function (e) {
        var m = e.m || {};
        // vLLM's last reading as it is (ratios 0..1), stale or not: its time says which.
        var l = m.load && typeof m.load === 'object' ? m.load : {};
        rows.push([
          rt.name, e.id,
          e.def && typeof e.def.url === 'string' ? e.def.url : null,
          e.def ? num0(e.def.weight) : null,
          !!e.def,
          m.health === 'up' || m.health === 'down' ? m.health : 'unknown',
          num0(m.uptime_24h), num0(m.uptime_7d),
          int(m.requests), int(m.failures),
          utc(m.last_probe_at),
          num0(l.running), num0(l.waiting), num0(l.kv_cache_usage), num0(l.prefix_cache_hit_rate), utc(l.at),
        ]);
      });
    });
    return { header: header, rows: rows };
  }

  function byRoute(m) {
    var used = entries(m && m.routes).filter(function (kv) { return int(kv[1]) > 0; })
      .sort(function (a, b) { return int(b[1]) - int(a[1]) || (a[0] < b[0] ? -1 : 1); });
    return used.length ? used.map(function (kv) { return kv[0] + '=' + int(kv[1]); }).join('; ') : null;
  }

  // Every listed token, whatever the filter, then the tokens seen only in the
  // metrics (minted offline, or since purged from the list).
  function tokensCsv() {
    var header = ['token_id', 'subject', 'description', 'kind', 'partner', 'contract_id', 'owner', 'groups', 'allowed_routes', 'state', 'revoked',
      'requests', 'requests_by_route', 'prompt_tokens', 'completion_tokens', 'last_seen_utc', 'created_at_utc', 'expires_at_utc', 'revoked_at_utc', 'created_by'];
    var tm = tokenMetrics();
    var listed = tokenIndex();
    var rows = tokenList().map(function (t) {
      var m = own(tm, t.id) || {};
      var st = tokenState(t);
      return [
        t.id, t.subject, t.description || null, t.kind,
        meta(t, 'partner') || null, meta(t, 'contract_id') || null, typeof t.owner === 'string' ? t.owner : null,
        joined(t.groups), Array.isArray(t.routes) ? list(t.routes).join('; ') : null,
        st, st === 'revoked',
        tokenRequests(t), byRoute(m), int(m.prompt_tokens), int(m.completion_tokens),
        utc(lastUse(t)), utc(t.created_at), utc(t.expires_at), utc(t.revoked_at), t.created_by || null,
      ];
    });
    entries(tm).filter(function (kv) { return !listed.has(kv[0]); })
      .sort(function (a, b) { return a[0] < b[0] ? -1 : 1; })
      .forEach(function (kv) {
        var m = kv[1] || {};
        rows.push([kv[0], null, null, null, null, null, null, null, null, 'not listed', null,
          int(m.requests), byRoute(m), int(m.prompt_tokens), int(m.completion_tokens), utc(m.last_seen), null, null, null, null]);
      });
    return { header: header, rows: rows };
  }

  // Every budget with its limits and the tokens used in each window now; `spent` names
  // the windows whose limit is reached (refused with 429 until they turn).
  function budgetsCsv() {
    var header = ['kind', 'id', 'tokens_per_minute', 'used_minute', 'tokens_per_day', 'used_day', 'tokens_per_month', 'used_month', 'spent', 'managed_by'];
    var rows = budgetList().map(function (b) {
      var ws = budgetWindows(b);
      var row = [b.kind, b.id];
      ws.forEach(function (w) { row.push(w.limit, w.used); });
      var spent = ws.filter(function (w) { return w.spent; }).map(function (w) { return w.key; });
      row.push(spent.length ? spent.join('; ') : null, b.managed_by || null);
      return row;
    });
    return { header: header, rows: rows };
  }

  var EXPORTS = {
    routes: { build: routesCsv, needs: ['routes', 'metrics'], noun: 'route' },
    endpoints: { build: endpointsCsv, needs: ['routes', 'metrics'], noun: 'endpoint' },
    tokens: { build: tokensCsv, needs: ['tokens', 'metrics'], noun: 'token' },
    budgets: { build: budgetsCsv, needs: ['budgets'], noun: 'budget' },
  };

  function exportCsv(what) {
    var x = EXPORTS[what];
    var missing = x.needs.filter(function (k) { return !state.data[k]; });
    if (missing.length) {
      setStatus('Nothing to export yet: ' + missing.join(' and ') + ' not loaded' + (missing.some(function (k) { return state.errors[k]; }) ? ' (see the errors above)' : ''), 'error');
      return;
    }
    var t = x.build();
    var d = new Date();
    var name = 'ai-gateway-' + what + '-' + d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + '.csv';
    // A byte order mark, so that Excel reads the file as UTF-8.
    var url = URL.createObjectURL(new Blob(['\ufeff', csvText(t.header, t.rows)], { type: 'text/csv;charset=utf-8' }));
    var a = h('a', { href: url, download: name, hidden: true });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 30000);
    var n = t.rows.length;
    // The page asks for one page of each listing (up to 1000); say so if there were more.
    var partial = x.needs.filter(function (k) { return state.data[k] && state.data[k].next_cursor != null; });
    setStatus('Exported ' + n + ' ' + x.noun + (n === 1 ? '' : 's') + ' to ' + name + ' (as of the update at ' + (state.lastRefresh ? clock(state.lastRefresh) : '?') + ')' +
      (partial.length ? '; the gateway listed more ' + partial.join(' and ') + ' than this page loads, so the file is incomplete' : ''), partial.length ? 'error' : 'ok');
  }

  // ---------------------------------------------------------------------------
  // Actions
  // ---------------------------------------------------------------------------

  function revoke(id) {
    var gen = state.gen;
    state.revoking = id;
    state.pendingRevoke = null;
    state.pendingRevokeIn = null;
    renderTokenViews();
    setStatus('Revoking ' + id + '…', 'busy');
    api('DELETE', '/tokens/' + encodeURIComponent(id)).then(
      function () {
        if (gen !== state.gen) return;
        state.revoking = null;
        setStatus('Revoked ' + id, 'ok');
        return refresh();
      },
      function (e) {
        if (gen !== state.gen) return;
        state.revoking = null;
        if (isAuthError(e)) return signOut(e.message);
        var msg = 'Could not revoke ' + id + ': ' + e.message;
        setStatus(msg, 'error');
        renderTokenViews();
        if (e.status === 409) {
          refresh().then(function () {
            if (gen === state.gen) setStatus(msg, 'error');
          });
        }
      }
    );
  }

  function hideNewToken() {
    $('new-token-value').value = '';
    $('new-token-meta').textContent = '';
    $('copy-result').textContent = '';
    show($('new-token'), false);
  }

  function createToken(ev) {
    ev.preventDefault();
    var err = $('create-error');
    show(err, false);
    var subject = $('new-subject').value.trim();
    var amount = Number($('new-ttl').value);
    var unit = Number($('new-ttl-unit').value);
    var fail = function (msg) {
      err.textContent = msg;
      show(err, true);
    };
    if (!subject) return fail('Subject is required.');
    if (!(amount > 0) || Math.floor(amount) !== amount) return fail('Lifetime must be a whole number above zero.');
    var body = {
      subject: subject,
      kind: $('new-kind').value,
      groups: splitList($('new-groups').value),
      ttl_seconds: amount * unit,
      description: $('new-description').value.trim(),
    };
    var routes = splitList($('new-routes').value);
    if (routes.length) body.routes = routes;
    if (body.kind === 'partner') {
      var partner = $('new-partner').value.trim();
      var contract = $('new-contract').value.trim();
      if (!/^[a-z0-9-]{1,64}$/.test(partner)) return fail('A partner token names its partner: lowercase letters, digits and dashes, up to 64.');
      if (!contract) return fail('A partner token names the contract it is issued under.');
      if (!routes.length) return fail('A partner token needs a routes allow-list.');
      body.metadata = { partner: partner, contract_id: contract };
    }
    var gen = state.gen;
    var button = $('create');
    button.disabled = true;
    api('POST', '/tokens', body).then(
      function (res) {
        button.disabled = false;
        if (gen !== state.gen) return;
        $('create-form').reset();
        syncKind();
        hideNewToken();
        $('new-token-value').value = res && typeof res.token === 'string' ? res.token : '';
        $('new-token-meta').textContent = 'Token ' + (res && res.id ? res.id : '') + ' for ' + subject +
          (res && typeof res.expires_at === 'number' ? ', expires ' + dateTime(res.expires_at) : '') + '.';
        show($('new-token'), true);
        $('new-token-value').focus();
        $('new-token-value').select();
        setStatus('Issued ' + (res && res.id ? res.id : 'a token') + ' for ' + subject, 'ok');
        refresh();
      },
      function (e) {
        button.disabled = false;
        if (gen !== state.gen) return;
        if (isAuthError(e)) return signOut(e.message);
        fail(e.message);
      }
    );
  }

  function syncKind() {
    show($('partner-fields'), $('new-kind').value === 'partner');
  }

  function showNotice(text, kind) {
    var n = $('sa-notice');
    n.textContent = text || '';
    n.className = 'small ' + (kind === 'error' ? 'form-error' : 'notice-ok');
    show(n, !!text);
  }

  function findAccount(name) {
    var all = accountList();
    for (var i = 0; i < all.length; i++) if (all[i].name === name) return all[i];
    return null;
  }

  function openIssueForm(name) {
    var a = findAccount(name);
    var g = a ? list(a.groups) : [];
    state.issueFor = name;
    hideAccountToken();
    $('sa-issue-form').reset();
    $('sa-issue-name').textContent = name;
    $('sa-issue-groups').textContent = 'A service token with subject ' + name + (g.length ? ' and the account\'s groups: ' + g.join(', ') : ' and no groups') + '.';
    show($('sa-issue-error'), false);
    show($('sa-issue-form'), true);
    $('sa-issue-form').scrollIntoView({ block: 'nearest' });
    $('sa-ttl').focus();
  }

  function closeIssueForm() {
    state.issueFor = null;
    $('sa-issue-form').reset();
    $('sa-issue-name').textContent = '';
    show($('sa-issue-error'), false);
    show($('sa-issue-form'), false);
  }

  function hideAccountToken() {
    $('sa-new-token-value').value = '';
    $('sa-new-token-meta').textContent = '';
    $('sa-copy-result').textContent = '';
    show($('sa-new-token'), false);
  }

  function issueAccountToken(ev) {
    ev.preventDefault();
    var name = state.issueFor;
    if (!name) return;
    var err = $('sa-issue-error');
    show(err, false);
    var fail = function (msg) {
      err.textContent = msg;
      show(err, true);
    };
    var amount = Number($('sa-ttl').value);
    var unit = Number($('sa-ttl-unit').value);
    if (!(amount > 0) || Math.floor(amount) !== amount) return fail('Lifetime must be a whole number above zero.');
    var body = { ttl_seconds: amount * unit, description: $('sa-token-description').value.trim() };
    var gen = state.gen;
    var button = $('sa-issue');
    button.disabled = true;
    api('POST', '/service-accounts/' + encodeURIComponent(name) + '/tokens', body).then(
      function (res) {
        button.disabled = false;
        if (gen !== state.gen) return;
        closeIssueForm();
        $('sa-new-token-value').value = res && typeof res.token === 'string' ? res.token : '';
        $('sa-new-token-meta').textContent = 'Token ' + (res && res.id ? res.id : '') + ' for service account ' + name +
          (res && typeof res.expires_at === 'number' ? ', expires ' + dateTime(res.expires_at) : '') + '.';
        show($('sa-new-token'), true);
        $('sa-new-token-value').focus();
        $('sa-new-token-value').select();
        state.expanded.add(principalKey('service', name));
        setStatus('Issued ' + (res && res.id ? res.id : 'a token') + ' for service account ' + name, 'ok');
        refresh();
      },
      function (e) {
        button.disabled = false;
        if (gen !== state.gen) return;
        if (isAuthError(e)) return signOut(e.message);
        fail(e.message);
      }
    );
  }

  function deleteAccount(name) {
    var gen = state.gen;
    state.deleting = name;
    state.pendingDelete = null;
    renderPrincipals();
    setStatus('Deleting service account ' + name + '…', 'busy');
    api('DELETE', '/service-accounts/' + encodeURIComponent(name)).then(
      function (res) {
        if (gen !== state.gen) return;
        state.deleting = null;
        var n = res && typeof res.revoked_tokens === 'number' ? res.revoked_tokens : null;
        var msg = 'Deleted service account ' + name + (n == null ? '.' : '; ' + n + ' token' + (n === 1 ? '' : 's') + ' revoked.');
        if (state.issueFor === name) closeIssueForm();
        showNotice(msg);
        setStatus(msg, 'ok');
        return refresh();
      },
      function (e) {
        if (gen !== state.gen) return;
        state.deleting = null;
        if (isAuthError(e)) return signOut(e.message);
        var msg = 'Could not delete service account ' + name + ': ' + e.message;
        showNotice(msg, 'error');
        setStatus(msg, 'error');
        renderPrincipals();
        if (e.status === 404) refresh();
      }
    );
  }

  function createAccount(ev) {
    ev.preventDefault();
    var err = $('sa-error');
    show(err, false);
    var fail = function (msg) {
      err.textContent = msg;
      show(err, true);
    };
    var name = $('sa-name').value.trim();
    var owner = $('sa-owner').value.trim();
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) return fail('Name: lowercase letters, digits and dashes, starting with a letter or digit, up to 63.');
    if (!owner) return fail('Owner is required: the person or team answerable for the account.');
    var body = { name: name, groups: splitList($('sa-groups').value), owner: owner, description: $('sa-description').value.trim() };
    var gen = state.gen;
    var button = $('sa-create');
    button.disabled = true;
    api('POST', '/service-accounts', body).then(
      function () {
        button.disabled = false;
        if (gen !== state.gen) return;
        $('sa-form').reset();
        showNotice('Created service account ' + name + '. Issue its first token with “Issue token” on its row.');
        setStatus('Created service account ' + name, 'ok');
        refresh();
      },
      function (e) {
        button.disabled = false;
        if (gen !== state.gen) return;
        if (isAuthError(e)) return signOut(e.message);
        fail(e.message);
      }
    );
  }

  function copyToken(boxId, resultId) {
    var box = $(boxId);
    var result = $(resultId);
    var done = function () { result.textContent = 'Copied.'; };
    var fallback = function () {
      box.focus();
      box.select();
      try {
        result.textContent = document.execCommand('copy') ? 'Copied.' : 'Select the text and copy it.';
      } catch (_) {
        result.textContent = 'Select the text and copy it.';
      }
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(box.value).then(done, fallback);
    else fallback();
  }

  // ---------------------------------------------------------------------------
  // Wiring
  // ---------------------------------------------------------------------------

  function init() {
    $('login-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var t = $('token').value.trim().replace(/^bearer\s+/i, '');
      var err = $('login-error');
      if (!t || !/^[\x21-\x7e]+$/.test(t)) {
        err.textContent = 'Paste the token itself: printable characters, no spaces.';
        show(err, true);
        return;
      }
      show(err, false);
      $('token').value = '';
      signIn(t);
    });
    $('logout').addEventListener('click', function () { signOut(null); });
    $('refresh').addEventListener('click', function () { refresh(); });
    ['routes', 'endpoints', 'tokens', 'budgets'].forEach(function (what) {
      $('export-' + what).addEventListener('click', function () { exportCsv(what); });
    });
    $('token-filter').addEventListener('input', renderTokens);
    $('hide-inactive').addEventListener('change', renderTokens);
    $('principal-filter').addEventListener('input', renderPrincipals);
    $('hide-idle').addEventListener('change', renderPrincipals);
    $('create-form').addEventListener('submit', createToken);
    $('new-kind').addEventListener('change', syncKind);
    $('copy-token').addEventListener('click', function () { copyToken('new-token-value', 'copy-result'); });
    $('dismiss-token').addEventListener('click', hideNewToken);
    $('sa-form').addEventListener('submit', createAccount);
    $('sa-issue-form').addEventListener('submit', issueAccountToken);
    $('sa-issue-cancel').addEventListener('click', closeIssueForm);
    $('sa-copy-token').addEventListener('click', function () { copyToken('sa-new-token-value', 'sa-copy-result'); });
    $('sa-dismiss-token').addEventListener('click', hideAccountToken);
    $('audit-older').addEventListener('click', function () {
      var a = state.data.audit;
      var rows = a && Array.isArray(a.entries) ? a.entries : [];
      if (!rows.length) return;
      var next = a.next_before != null ? a.next_before : rows[rows.length - 1].seq;
      state.auditHistory.push(state.auditBefore);
      state.auditBefore = next;
      refresh();
    });
    $('audit-newest').addEventListener('click', function () {
      state.auditBefore = null;
      state.auditHistory = [];
      refresh();
    });
    // Revoke, then confirm: in the tokens table and in a principal's token list.
    ['tokens', 'principals'].forEach(function (where) {
      $(where).addEventListener('click', function (ev) {
        var b = ev.target && ev.target.closest ? ev.target.closest('button[data-token-id]') : null;
        if (!b || b.disabled) return;
        var id = b.getAttribute('data-token-id');
        if (b.classList.contains('revoke')) {
          state.pendingRevoke = id;
          state.pendingRevokeIn = where;
          renderTokenViews();
          var c = $(where).querySelector('button.revoke-confirm');
          if (c) c.focus();
        } else if (b.classList.contains('revoke-confirm')) {
          revoke(id);
        } else if (b.classList.contains('revoke-cancel')) {
          state.pendingRevoke = null;
          state.pendingRevokeIn = null;
          renderTokenViews();
        }
      });
    });
    $('principals').addEventListener('click', function (ev) {
      var b = ev.target && ev.target.closest ? ev.target.closest('button[data-principal-key], button[data-account]') : null;
      if (!b || b.disabled) return;
      var key = b.getAttribute('data-principal-key');
      var name = b.getAttribute('data-account');
      if (key != null) {
        if (state.expanded.has(key)) state.expanded.delete(key);
        else state.expanded.add(key);
        renderTokenViews();
      } else if (b.classList.contains('sa-issue-open')) {
        openIssueForm(name);
      } else if (b.classList.contains('sa-delete')) {
        state.pendingDelete = name;
        renderPrincipals();
        var c = $('principals').querySelector('button.sa-delete-confirm');
        if (c) c.focus();
      } else if (b.classList.contains('sa-delete-confirm')) {
        deleteAccount(name);
      } else if (b.classList.contains('sa-delete-cancel')) {
        state.pendingDelete = null;
        renderPrincipals();
      }
    });
    document.addEventListener('keydown', function (ev) {
      if (ev.key !== 'Escape') return;
      if (state.pendingRevoke || state.pendingDelete) {
        state.pendingRevoke = null;
        state.pendingRevokeIn = null;
        state.pendingDelete = null;
        renderTokenViews();
      } else if (state.issueFor && $('sa-card').contains(document.activeElement)) {
        closeIssueForm();
      }
    });
    // A blocked resource or inline code would be a bug in this page: make it visible.
    document.addEventListener('securitypolicyviolation', function (ev) {
      if (window.console) console.error('CSP violation: ' + ev.violatedDirective + ' blocked ' + (ev.blockedURI || 'inline code'));
    });

    syncKind();
    var saved = readStoredToken();
    if (saved) signIn(saved);
    else signOut(null);
    document.body.setAttribute('data-app', 'ready');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
