// The routes panel: a card per route with its traffic, latency, endpoints (with
// vLLM's load readings) and the tokens calling it.

import { state } from './state.js';
import { $, badge, clear, entries, h, own } from './dom.js';
import { bytes, compact, dateTime, int, list, ms, nowS, numberFmt, pct, relative, span, when } from './format.js';
import { endpointModels, tokenIndex, tokenMetrics, tokenState } from './models.js';
import { rateChart, statusMix } from './charts.js';

export function renderRoutes(routes) {
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
