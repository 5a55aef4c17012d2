// ---------------------------------------------------------------------------
// CSV export: built here from what the page last fetched, no other call
// ---------------------------------------------------------------------------

import { state } from './state.js';
import { entries, h, own } from './dom.js';
import { clock, int, list, pad } from './format.js';
import { setStatus } from './session.js';
import { endpointModels, lastUse, meta, routeModels, tokenIndex, tokenList, tokenMetrics, tokenRequests, tokenState } from './models.js';
import { STATUS_ORDER } from './charts.js';
import { budgetList, budgetWindows } from './budgets.js';

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

export function exportCsv(what) {
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
