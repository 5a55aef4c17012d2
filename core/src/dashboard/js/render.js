// Rendering every view, keeping the focus, and the summary at the top.

import { $, append, clear, h } from './dom.js';
import { compact, int, num, pct } from './format.js';
import { endpointModels, routeModels, tokenList, tokenState } from './models.js';
import { renderRoutes } from './routes.js';
import { renderTokens } from './tokens.js';
import { renderPrincipals } from './principals.js';
import { renderPartners } from './partners.js';
import { renderBudgets } from './budgets.js';
import { renderAudit } from './audit.js';

export function render() {
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
export function renderTokenViews() {
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
