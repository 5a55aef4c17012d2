// Models of the fetched data: what the views show, from state.data.

import { state } from './state.js';
import { entries, own } from './dom.js';
import { DAY, int, list, nowS } from './format.js';

export function tokenList() {
  var t = state.data.tokens && state.data.tokens.tokens;
  return Array.isArray(t) ? t.filter(function (x) { return x && typeof x.id === 'string'; }) : [];
}

export function tokenIndex() {
  var m = new Map();
  tokenList().forEach(function (t) { m.set(t.id, t); });
  return m;
}

export function tokenMetrics() {
  var m = state.data.metrics && state.data.metrics.tokens;
  return m && typeof m === 'object' ? m : {};
}

export function tokenRequests(t) {
  var m = own(tokenMetrics(), t.id);
  return Math.max(int(t.request_count), int(m && m.requests));
}

export function meta(t, key) {
  var v = own(t.metadata, key);
  return typeof v === 'string' ? v : '';
}

export function isLive(st) {
  return st === 'active' || st === 'expiring';
}

function accountList() {
  var a = state.data.accounts && state.data.accounts.service_accounts;
  return Array.isArray(a) ? a.filter(function (x) { return x && typeof x.name === 'string'; }) : [];
}

export function findAccount(name) {
  var all = accountList();
  for (var i = 0; i < all.length; i++) if (all[i].name === name) return all[i];
  return null;
}

var KIND_ORDER = { account: 0, user: 1, service: 2, partner: 3 };

export function principalKey(kind, subject, owner, partner, contract) {
  return [kind, subject, owner || '', partner || '', contract || ''].join('|');
}

// Tokens grouped by who they stand for: kind and subject, plus the owner of
// self-service tokens and the partner and contract of partner tokens. Service
// accounts are principals even before their first token.
export function principalModels() {
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
export function partnerModels() {
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

export function tokenState(t) {
  if (t.revoked_at != null || t.revoked === true) return 'revoked';
  if (typeof t.expires_at === 'number' && t.expires_at <= nowS()) return 'expired';
  if (typeof t.expires_at === 'number' && t.expires_at - nowS() < DAY) return 'expiring';
  return 'active';
}

export function lastUse(t) {
  var a = typeof t.last_used_at === 'number' ? t.last_used_at : null;
  var m = own(tokenMetrics(), t.id);
  var b = m && typeof m.last_seen === 'number' ? m.last_seen : null;
  if (a == null) return b;
  if (b == null) return a;
  return Math.max(a, b);
}

export function routeModels() {
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

export function endpointModels(rt) {
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
