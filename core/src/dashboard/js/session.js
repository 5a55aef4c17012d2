// Signing in and out, the status bar, and the periodic refresh of every view's data.

import { state } from './state.js';
import { $, append, clear, h, own, show } from './dom.js';
import { clock, when } from './format.js';
import { api, ApiError, claims, isAuthError, storeToken } from './api.js';
import { render } from './render.js';
import { hideNewToken } from './tokens.js';
import { closeIssueForm, hideAccountToken, showNotice } from './accounts.js';
import { auditPath } from './audit.js';

var REFRESH_MS = 10000;

export function signIn(token) {
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

export function signOut(message) {
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

export function setStatus(text, kind) {
  $('status').textContent = text;
  $('statusbar').className = 'statusbar ' + (kind || '');
}

// ---------------------------------------------------------------------------
// Refresh
// ---------------------------------------------------------------------------

// Calls an older gateway answers with 404: the data they fill, and the state flag that
// remembers the answer (null: not known yet; true: served; false: absent, not asked again).
var OPTIONAL_APIS = {
  accounts: { path: '/service-accounts', flag: 'accountsApi' },
  budgets: { path: '/budgets', flag: 'budgetsApi' },
};

export function refresh() {
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
