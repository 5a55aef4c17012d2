// ---------------------------------------------------------------------------
// Token budgets: limits in LLM tokens per minute, UTC day and UTC month, for a
// token, a service subject or a partner contract, next to what was used
// ---------------------------------------------------------------------------

import { state } from './state.js';
import { $, badge, clear, h, own, show } from './dom.js';
import { compact, dateTime, DAY, int, nowS, num } from './format.js';
import { findAccount, isLive, meta, tokenIndex, tokenList, tokenState } from './models.js';
import { budgetBar } from './charts.js';

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

export function budgetList() {
  var b = state.data.budgets && state.data.budgets.budgets;
  var out = Array.isArray(b) ? b.filter(function (x) { return x && typeof x.kind === 'string' && typeof x.id === 'string'; }) : [];
  var order = function (k) { var o = own(BUDGET_KINDS, k); return o ? o.order : 9; };
  return out.slice().sort(function (a, b) {
    return order(a.kind) - order(b.kind) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  });
}

// Each window of a budget: its limit (null: none set), the tokens used in it, and
// whether it is spent (the gateway refuses with 429 until the window turns).
export function budgetWindows(b) {
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

export function renderBudgets() {
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
