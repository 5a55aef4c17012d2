// A stand-in for the gateway's admin API, for working on the dashboard without
// building the gateway. It is NOT the gateway: it serves the dashboard files from
// core/src/dashboard with the same Content-Security-Policy, and answers the admin
// calls the page makes from canned, in-memory data (routes with their models, tokens, service
// accounts, metrics with per-partner usage and vLLM load readings, token budgets with their use,
// audit). Revoking and issuing tokens, creating or deleting service accounts and setting or
// deleting budgets change that memory only; issued "tokens" are not JWTs and the mock accepts
// only its own admin token.
//
//   node tests/browser/mock-gateway.mjs      # prints the URL and the admin token
//   MOCK_PORT=8799 MOCK_ADMIN_TOKEN=secret node tests/browser/mock-gateway.mjs
//   MOCK_NO_SERVICE_ACCOUNTS=1 node ...      # answers 404 to /service-accounts, like an older gateway
//   MOCK_NO_BUDGETS=1 node ...               # answers 404 to /budgets, like an older gateway
//
// Listens on 127.0.0.1 only.

import { createServer } from 'node:http';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../core/src/dashboard');
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const JS = 'text/javascript; charset=utf-8';
const FILES = {
  '/_gateway/dashboard': ['index.html', 'text/html; charset=utf-8'],
  '/_gateway/dashboard/app.js': ['app.js', JS],
  '/_gateway/dashboard/app.css': ['app.css', 'text/css; charset=utf-8'],
  // The modules app.js imports, at /_gateway/dashboard/js/{name}.js: every file of core/src/dashboard/js
  // (the gateway serves the same files from its table in core/src/dashboard.rs).
  ...Object.fromEntries(readdirSync(path.join(DIR, 'js')).filter((f) => f.endsWith('.js')).map((f) => [`/_gateway/dashboard/js/${f}`, [`js/${f}`, JS]])),
};

function seed(now) {
  const id = () => 'tok_' + randomBytes(13).toString('hex').slice(0, 26);
  const routes = [
    { name: 'llama-prod', host: null, enabled: true, endpoints: [{ id: 'a', url: 'http://10.0.1.5:8000', weight: 1 }, { id: 'b', url: 'http://10.0.1.6:8000', weight: 1 }], auth: { required: true, groups: ['ml-team', 'partner-acme'] }, affinity: { header: 'x-session-id', cookie: null }, upstream_api_key_secret: 'VLLM_API_KEY', timeouts: { connect_ms: 2000, response_ms: 300000 }, max_body_bytes: 10485760, usage: 'always', models: ['meta-llama/Llama-3.1-8B-Instruct', 'llama'], managed_by: 'terraform' },
    { name: 'mistral-dev', host: null, enabled: true, endpoints: [{ id: 'gpu-1', url: 'http://10.0.2.9:8000', weight: 2 }], auth: { required: true, groups: ['ml-team'] }, affinity: { header: 'x-session-id', cookie: null }, upstream_api_key_secret: null, timeouts: { connect_ms: 2000, response_ms: 300000 }, max_body_bytes: 10485760, models: ['mistral-7b'], managed_by: null },
    { name: 'qwen-batch', host: null, enabled: false, endpoints: [{ id: 'q1', url: 'http://10.0.3.2:8000', weight: 1 }], auth: { required: true, groups: ['batch'] }, affinity: { header: 'x-session-id', cookie: null }, upstream_api_key_secret: null, timeouts: { connect_ms: 2000, response_ms: 300000 }, max_body_bytes: 10485760, managed_by: null },
  ];
  const tok = (subject, kind, groups, description, createdAgo, ttl, extra = {}) => ({
    id: id(), subject, kind, groups, routes: null, description, metadata: {}, created_by: 'admin@example.com',
    created_at: now - createdAgo, expires_at: now - createdAgo + ttl, revoked_at: null, last_used_at: null, request_count: 0, ...extra,
  });
  // The first three are referred to by position in metrics() below.
  const tokens = [
    tok('alice@example.com', 'user', ['ml-team'], 'notebook', 3 * 86400, 30 * 86400),
    tok('ci-eval', 'service', ['ml-team', 'batch'], 'nightly evals', 10 * 86400, 10 * 86400 + 5 * 3600),
    tok('acme-corp', 'partner', [], 'Acme integration <b>pilot</b>', 20 * 86400, 90 * 86400, { routes: ['llama-prod'], metadata: { partner: 'acme', contract_id: 'C-2025-031' } }),
    tok('bob@example.com', 'user', ['ml-team'], 'old laptop', 40 * 86400, 60 * 86400, { revoked_at: now - 5 * 86400 }),
    tok('admin@example.com', 'user', ['admin'], 'dashboard', 86400, 7 * 86400),
    tok('svc-batch', 'service', ['batch'], 'scoring job', 6 * 86400, 30 * 86400, { metadata: { service_account: 'svc-batch' } }),
    tok('alice@example.com', 'user', ['ml-team'], 'eval script', 2 * 86400, 14 * 86400, { owner: 'corp:alice@example.com', metadata: { issued_via: 'self-service' }, created_by: 'alice@example.com' }),
    tok('acme-corp', 'partner', [], 'Acme pilot (2024 contract)', 120 * 86400, 90 * 86400, { routes: ['llama-prod'], metadata: { partner: 'acme', contract_id: 'C-2024-112' }, revoked_at: now - 40 * 86400 }),
    tok('globex-api', 'partner', [], 'Globex evaluation', 2 * 86400, 30 * 86400, { routes: ['mistral-dev'], metadata: { partner: 'globex', contract_id: 'GX-7' } }),
    // Partner-typed text a spreadsheet would run as formulas: the CSV export must neutralise it.
    tok('initech-api', 'partner', ['+sales', 'partners'], '=HYPERLINK("x")', 4 * 86400, 30 * 86400, {
      routes: ['mistral-dev'], metadata: { partner: 'initech', contract_id: '@INI-7, rev "b"' }, owner: 'initech ops\r\n-second line', created_by: '-partner-portal',
    }),
  ];
  const serviceAccounts = [
    { name: 'svc-batch', groups: ['batch'], owner: 'data-platform@example.com', description: 'Nightly batch scoring', created_at: now - 8 * 86400, created_by: 'admin@example.com' },
    { name: 'svc-reports', groups: ['analytics'], owner: 'bi-team@example.com', description: 'Weekly usage reports', created_at: now - 3600, created_by: 'admin@example.com' },
  ];
  const audit = [];
  for (let i = 1; i <= 64; i++) {
    const t = tokens[i % tokens.length];
    audit.push({ seq: i, at: now - (65 - i) * 1800, actor: 'admin@example.com', actor_token: 'tok_admin', action: i % 3 ? 'token.issue' : 'route.put', object: i % 3 ? `token/${t.id}` : `route/${routes[i % 2].name}`, outcome: i % 17 ? 'ok' : 'conflict' });
  }
  // Token budgets as GET /_gateway/budgets lists them (by kind, then id), with the tokens used
  // in each window now: alice's notebook token has spent its minute (the answer that crossed
  // the limit completed, so it is over), acme's contract is at 84% of its month, and a contract
  // no token names, whose id a spreadsheet would read as a formula, has spent its day. Acme's
  // is Terraform's (managed_by), so the admin API refuses to change it, as the gateway does.
  const budgets = [
    { kind: 'contracts', id: '+INI-2026', tokens_per_minute: 1000, tokens_per_day: 50_000, tokens_per_month: 1_000_000, used: { minute: 0, day: 50_000, month: 52_000 } },
    { kind: 'contracts', id: 'C-2025-031', tokens_per_month: 5_000_000, managed_by: 'terraform', used: { minute: 300, day: 12_300, month: 4_200_000 } },
    { kind: 'service-accounts', id: 'svc-batch', tokens_per_day: 2_000_000, used: { minute: 0, day: 41_000, month: 1_200_000 } },
    { kind: 'tokens', id: tokens[0].id, tokens_per_minute: 20_000, tokens_per_day: 1_000_000, used: { minute: 20_480, day: 750_000, month: 750_000 } },
  ];
  return { routes, tokens, serviceAccounts, audit, budgets };
}

function distribution(p50, p95, p99) {
  return { p50, p95, p99, histogram: { counts: [], sum_us: 0 } };
}

function metrics(db, now) {
  const minute = Math.floor(now / 60) * 60;
  const series = (scale, errEvery) => Array.from({ length: 60 }, (_, i) => {
    const requests = Math.max(0, Math.round(scale * (1 + Math.sin(i / 6)) + (i % 7)));
    return { at: minute - (59 - i) * 60, requests, errors: errEvery && i % errEvery === 0 ? Math.min(requests, 2) : 0 };
  });
  const [alice, ci, acme] = db.tokens;
  const batch = db.tokens.find((t) => t.subject === 'svc-batch');
  const selfService = db.tokens.find((t) => t.owner);
  const initech = db.tokens.find((t) => t.subject === 'initech-api');
  const sum = (s, k) => s.reduce((a, p) => a + p[k], 0);
  const llama = series(7, 13);
  const mistral = series(1.5, 0);
  return {
    generated_at: now,
    histogram_bounds_ms: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000],
    routes: {
      'llama-prod': {
        requests_total: 1234, requests_last_hour: sum(llama, 'requests'), by_status_class: { '2xx': 1181, '4xx': 41, '5xx': 12 },
        latency_ms: distribution(412, 1830, 4210), latency_ms_last_hour: distribution(388, 1650, 3980), gateway_overhead_ms: distribution(0.8, 1.9, 3.4),
        bytes_in: 3_482_112, bytes_out: 48_911_002, prompt_tokens: 912_441, completion_tokens: 210_377, series: llama,
        endpoints: {
          // vLLM's latest readings: a busy (requests queueing), b's from before it went down (stale: older
          // than 30 s, which the balancer ignores), none for the lease.
          a: { requests: 640, failures: 2, health: 'up', uptime_24h: 1, uptime_7d: 0.9987, last_probe_at: now - 12,
            load: { at: now - 4, running: 14, waiting: 3, kv_cache_usage: 0.913, prefix_cache_hit_rate: 0.624, prefix_cache_queries: 182_340, prefix_cache_hits: 113_780 } },
          b: { requests: 606, failures: 10, health: 'down', uptime_24h: 0.912, uptime_7d: 0.981, last_probe_at: now - 12,
            load: { at: now - 95, running: 2, waiting: 0, kv_cache_usage: 0.18, prefix_cache_hit_rate: 0.41, prefix_cache_queries: 52_000, prefix_cache_hits: 21_320 } },
          'lease-7f': { requests: 3, failures: 0, health: 'unknown', uptime_24h: null, uptime_7d: null, last_probe_at: null, load: null },
        },
      },
      'mistral-dev': {
        requests_total: 310, requests_last_hour: sum(mistral, 'requests'), by_status_class: { '2xx': 301, '4xx': 9 },
        latency_ms: distribution(95, 240, 610), latency_ms_last_hour: distribution(91, 230, 580), gateway_overhead_ms: distribution(0.6, 1.2, 2.1),
        bytes_in: 210_000, bytes_out: 1_900_000, prompt_tokens: 41_200, completion_tokens: 9_800, series: mistral,
        // Idle and freshly read; no prefix-cache lookups yet, so no hit rate.
        endpoints: { 'gpu-1': { requests: 310, failures: 0, health: 'up', uptime_24h: 1, uptime_7d: 1, last_probe_at: now - 20,
          load: { at: now - 7, running: 0, waiting: 0, kv_cache_usage: 0, prefix_cache_hit_rate: null, prefix_cache_queries: 0, prefix_cache_hits: 0 } } },
      },
      'k7q2m9x4zp': {
        requests_total: 4, requests_last_hour: 0, by_status_class: { '2xx': 4 },
        latency_ms: distribution(52, 80, 80), latency_ms_last_hour: distribution(null, null, null), gateway_overhead_ms: distribution(0.5, 0.7, 0.7),
        bytes_in: 800, bytes_out: 5200, prompt_tokens: 120, completion_tokens: 300, series: series(0, 0).map((p) => ({ ...p, requests: 0 })),
        endpoints: { e0: { requests: 4, failures: 0, health: 'unknown', uptime_24h: null, uptime_7d: null, last_probe_at: null, load: null } },
      },
    },
    tokens: {
      [alice.id]: { requests: 900, routes: { 'llama-prod': 700, 'mistral-dev': 200 }, last_seen: now - 40, prompt_tokens: 600000, completion_tokens: 150000 },
      [ci.id]: { requests: 420, routes: { 'llama-prod': 310, 'mistral-dev': 110 }, last_seen: now - 3 * 3600, prompt_tokens: 300000, completion_tokens: 60000 },
      [acme.id]: { requests: 224, routes: { 'llama-prod': 224 }, last_seen: now - 26 * 3600, prompt_tokens: 12000, completion_tokens: 300 },
      tok_mintedoffline000000000000: { requests: 4, routes: { k7q2m9x4zp: 4 }, last_seen: now - 2 * 86400, prompt_tokens: 120, completion_tokens: 300 },
      ...(batch ? { [batch.id]: { requests: 96, routes: { 'llama-prod': 96 }, last_seen: now - 7 * 3600, prompt_tokens: 41000, completion_tokens: 9000 } } : {}),
      ...(selfService ? { [selfService.id]: { requests: 18, routes: { 'mistral-dev': 18 }, last_seen: now - 20 * 60, prompt_tokens: 5400, completion_tokens: 2100 } } : {}),
      ...(initech ? { [initech.id]: { requests: 7, routes: { 'mistral-dev': 7 }, last_seen: now - 5 * 3600, prompt_tokens: 2100, completion_tokens: 640 } } : {}),
    },
    // Usage by partner: the acme and initech tokens' traffic (the globex token has not been used).
    partners: {
      acme: { requests: 224, routes: { 'llama-prod': 224 }, last_seen: now - 26 * 3600, prompt_tokens: 12000, completion_tokens: 300 },
      ...(initech ? { initech: { requests: 7, routes: { 'mistral-dev': 7 }, last_seen: now - 5 * 3600, prompt_tokens: 2100, completion_tokens: 640 } } : {}),
    },
  };
}

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  res.end(text);
}

const error = (res, status, type, code, message, headers) => send(res, status, { error: { message, type, code } }, headers);

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
  } catch {
    return undefined;
  }
}

const tokenList = (db, now, filter = () => true) =>
  db.tokens.filter(filter).sort((a, b) => b.created_at - a.created_at).map((t) => ({ ...t, revoked: t.revoked_at != null, expired: now >= t.expires_at }));

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

const BUDGET_KINDS = ['tokens', 'service-accounts', 'contracts'];
const BUDGET_FIELDS = ['tokens_per_minute', 'tokens_per_day', 'tokens_per_month'];
const budgetKey = (b) => `${b.kind}/${b.id}`;

export async function startMock({ port = 0, adminToken = 'mock-admin-' + randomBytes(8).toString('hex'), noServiceAccounts = false, noBudgets = false } = {}) {
  const now = () => Math.floor(Date.now() / 1000);
  const db = seed(now());
  const audit = (action, object, outcome) => db.audit.push({ seq: db.audit.length + 1, at: now(), actor: 'admin@example.com', actor_token: 'tok_admin', action, object, outcome });

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const file = FILES[url.pathname];
    if (file && req.method === 'GET') {
      const text = await readFile(path.join(DIR, file[0]));
      res.writeHead(200, { 'content-type': file[1], 'content-security-policy': CSP, 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer', 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' });
      return res.end(text);
    }
    if (!url.pathname.startsWith('/_gateway/')) return error(res, 404, 'invalid_request_error', 'not_found', 'no such route');
    if (req.headers.authorization !== `Bearer ${adminToken}`) {
      return error(res, 401, 'authentication_error', 'invalid_token', req.headers.authorization ? 'token signature is invalid' : 'missing bearer token', { 'www-authenticate': 'Bearer error="invalid_token"' });
    }
    const parts = url.pathname.slice('/_gateway/'.length).split('/');
    const key = `${req.method} ${parts[0]}${parts.length > 1 ? '/:id' : ''}${parts.length > 2 ? '/' + parts.slice(2).join('/') : ''}`;
    if (noServiceAccounts && parts[0] === 'service-accounts') return error(res, 404, 'invalid_request_error', 'not_found', 'no such admin call');
    if (parts[0] === 'budgets') {
      if (noBudgets) return error(res, 404, 'invalid_request_error', 'not_found', 'no such admin call');
      if (req.method === 'GET' && parts.length === 1) {
        return send(res, 200, { budgets: [...db.budgets].sort((a, b) => (budgetKey(a) < budgetKey(b) ? -1 : 1)) });
      }
      if ((req.method === 'PUT' || req.method === 'DELETE') && parts.length === 3) {
        const [kind, id] = [parts[1], decodeURIComponent(parts[2])];
        if (!BUDGET_KINDS.includes(kind)) return error(res, 400, 'invalid_request_error', 'invalid_field', 'kind: must be tokens, service-accounts or contracts');
        if (!/^[\x21-\x2e\x30-\x7e]{1,128}$/.test(id)) return error(res, 400, 'invalid_request_error', 'invalid_field', 'id: must be 1 to 128 visible characters without /');
        const i = db.budgets.findIndex((b) => b.kind === kind && b.id === id);
        if (i >= 0 && db.budgets[i].managed_by) return error(res, 409, 'invalid_request_error', 'conflict', `budget \`${kind}/${id}\` is managed by terraform; change it there`);
        if (req.method === 'DELETE') {
          if (i < 0) return error(res, 404, 'invalid_request_error', 'not_found', `no budget for ${kind} \`${id}\``);
          db.budgets.splice(i, 1);
          audit('budget.delete', `budget/${kind}/${id}`, 'ok');
          return send(res, 200, { deleted: `${kind}/${id}` });
        }
        const b = await body(req);
        if (!b || typeof b !== 'object' || Array.isArray(b)) return error(res, 400, 'invalid_request_error', 'invalid_body', 'body must be a JSON object');
        if (b.managed_by != null) return error(res, 400, 'invalid_request_error', 'invalid_field', 'managed_by: is set by Terraform, not through the admin API');
        const unknown = Object.keys(b).find((k) => !BUDGET_FIELDS.includes(k));
        if (unknown) return error(res, 400, 'invalid_request_error', 'invalid_body', `unknown field \`${unknown}\``);
        const bad = BUDGET_FIELDS.find((k) => b[k] != null && !(Number.isInteger(b[k]) && b[k] >= 1 && b[k] <= 1e12));
        if (bad) return error(res, 400, 'invalid_request_error', 'invalid_field', `${bad}: must be between 1 and 1000000000000`);
        if (!BUDGET_FIELDS.some((k) => b[k] != null)) return error(res, 400, 'invalid_request_error', 'invalid_field', 'tokens_per_minute: a budget sets tokens_per_minute, tokens_per_day or tokens_per_month');
        const record = { kind, id, ...Object.fromEntries(BUDGET_FIELDS.filter((k) => b[k] != null).map((k) => [k, b[k]])) };
        const used = i >= 0 ? db.budgets[i].used : { minute: 0, day: 0, month: 0 };
        if (i >= 0) db.budgets[i] = { ...record, used };
        else db.budgets.push({ ...record, used });
        audit('budget.put', `budget/${kind}/${id}`, 'ok');
        return send(res, 200, record);
      }
    }
    const newToken = (fields) => {
      const t = { id: 'tok_' + randomBytes(13).toString('hex').slice(0, 26), routes: null, description: '', metadata: {}, created_by: 'admin@example.com', created_at: now(), revoked_at: null, last_used_at: null, request_count: 0, ...fields };
      db.tokens.push(t);
      return t;
    };
    switch (key) {
      case 'GET metrics':
        return send(res, 200, metrics(db, now()));
      case 'GET routes':
        return send(res, 200, { routes: db.routes });
      case 'GET tokens':
        return send(res, 200, { tokens: tokenList(db, now()) });
      case 'POST tokens': {
        const b = await body(req);
        if (!b || typeof b !== 'object') return error(res, 400, 'invalid_request_error', 'invalid_body', 'body must be a JSON object');
        if (typeof b.subject !== 'string' || !b.subject) return error(res, 400, 'invalid_request_error', 'invalid_field', 'subject: must be 1-128 printable characters');
        if (!['user', 'service', 'partner'].includes(b.kind)) return error(res, 400, 'invalid_request_error', 'invalid_field', 'kind: must be user, service or partner');
        if (!Number.isInteger(b.ttl_seconds) || b.ttl_seconds < 60 || b.ttl_seconds > 90 * 86400) return error(res, 400, 'invalid_request_error', 'invalid_field', `ttl_seconds: must be between 60 and ${90 * 86400} seconds`);
        if (b.kind === 'partner' && !Array.isArray(b.routes)) return error(res, 400, 'invalid_request_error', 'invalid_field', 'routes: a partner token needs an allow-list');
        if (b.kind === 'partner' && !/^[a-z0-9-]{1,64}$/.test(b.metadata?.partner || '')) return error(res, 400, 'invalid_request_error', 'invalid_field', 'metadata.partner: a partner token names its partner, ^[a-z0-9-]{1,64}$');
        if (b.kind === 'partner' && !String(b.metadata?.contract_id || '').trim()) return error(res, 400, 'invalid_request_error', 'invalid_field', 'metadata.contract_id: a partner token names the contract it is issued under');
        const t = newToken({ subject: b.subject, kind: b.kind, groups: b.groups || [], routes: b.routes || null, description: b.description || '', metadata: b.metadata || {}, expires_at: now() + b.ttl_seconds });
        audit('token.issue', `token/${t.id}`, 'ok');
        return send(res, 201, { id: t.id, token: 'mock.' + randomBytes(48).toString('base64url') + '.not-a-real-jwt', expires_at: t.expires_at });
      }
      case 'DELETE tokens/:id': {
        const id = decodeURIComponent(parts[1]);
        const t = db.tokens.find((x) => x.id === id);
        if (!t) return error(res, 404, 'invalid_request_error', 'not_found', `no token \`${id}\``);
        if (t.revoked_at != null) {
          audit('token.revoke', `token/${id}`, 'conflict');
          return error(res, 409, 'invalid_request_error', 'conflict', `token \`${id}\` is already revoked`);
        }
        t.revoked_at = now();
        audit('token.revoke', `token/${id}`, 'ok');
        return send(res, 200, { id, revoked: true, revoked_at: t.revoked_at });
      }
      case 'GET service-accounts':
        return send(res, 200, { service_accounts: [...db.serviceAccounts].sort((a, b) => (a.name < b.name ? -1 : 1)) });
      case 'POST service-accounts': {
        const b = await body(req);
        if (!b || typeof b !== 'object') return error(res, 400, 'invalid_request_error', 'invalid_body', 'body must be a JSON object');
        const unknown = Object.keys(b).find((k) => !['name', 'groups', 'owner', 'description'].includes(k));
        if (unknown) return error(res, 400, 'invalid_request_error', 'invalid_body', `unknown field \`${unknown}\``);
        if (typeof b.name !== 'string' || !NAME.test(b.name)) return error(res, 400, 'invalid_request_error', 'invalid_field', 'name: must match ^[a-z0-9][a-z0-9-]{0,62}$');
        if (typeof b.owner !== 'string' || !b.owner.trim()) return error(res, 400, 'invalid_request_error', 'invalid_field', 'owner: must be 1-128 printable characters');
        if (db.serviceAccounts.some((a) => a.name === b.name)) return error(res, 409, 'invalid_request_error', 'conflict', `service account \`${b.name}\` already exists`);
        const a = { name: b.name, groups: Array.isArray(b.groups) ? b.groups : [], owner: b.owner, description: b.description || '', created_at: now(), created_by: 'admin@example.com' };
        db.serviceAccounts.push(a);
        audit('service_account.create', `service-account/${a.name}`, 'ok');
        return send(res, 201, a);
      }
      case 'GET service-accounts/:id': {
        const name = decodeURIComponent(parts[1]);
        const a = db.serviceAccounts.find((x) => x.name === name);
        if (!a) return error(res, 404, 'invalid_request_error', 'not_found', `no service account \`${name}\``);
        return send(res, 200, { ...a, tokens: tokenList(db, now(), (t) => t.kind === 'service' && t.subject === name) });
      }
      case 'DELETE service-accounts/:id': {
        const name = decodeURIComponent(parts[1]);
        const i = db.serviceAccounts.findIndex((x) => x.name === name);
        if (i < 0) return error(res, 404, 'invalid_request_error', 'not_found', `no service account \`${name}\``);
        let revoked = 0;
        for (const t of db.tokens) {
          if (t.kind === 'service' && t.subject === name && t.revoked_at == null) {
            t.revoked_at = now();
            revoked++;
          }
        }
        db.serviceAccounts.splice(i, 1);
        audit('service_account.delete', `service-account/${name}`, 'ok');
        return send(res, 200, { deleted: name, revoked_tokens: revoked });
      }
      case 'POST service-accounts/:id/tokens': {
        const name = decodeURIComponent(parts[1]);
        const a = db.serviceAccounts.find((x) => x.name === name);
        if (!a) return error(res, 404, 'invalid_request_error', 'not_found', `no service account \`${name}\``);
        const b = await body(req);
        if (!b || typeof b !== 'object') return error(res, 400, 'invalid_request_error', 'invalid_body', 'body must be a JSON object');
        const unknown = Object.keys(b).find((k) => !['ttl_seconds', 'description', 'routes', 'rate_limit_rpm', 'groups'].includes(k));
        if (unknown) return error(res, 400, 'invalid_request_error', 'invalid_body', `unknown field \`${unknown}\``);
        if (b.groups !== undefined) return error(res, 400, 'invalid_request_error', 'invalid_field', "groups: a service account's tokens carry the account's groups");
        if (!Number.isInteger(b.ttl_seconds) || b.ttl_seconds < 60 || b.ttl_seconds > 90 * 86400) return error(res, 400, 'invalid_request_error', 'invalid_field', `ttl_seconds: must be between 60 and ${90 * 86400} seconds`);
        const t = newToken({ subject: name, kind: 'service', groups: a.groups, routes: Array.isArray(b.routes) ? b.routes : null, description: b.description || '', metadata: { service_account: name }, expires_at: now() + b.ttl_seconds });
        audit('service_account.token', `service-account/${name}`, 'ok');
        return send(res, 201, { id: t.id, token: 'mock.' + randomBytes(48).toString('base64url') + '.not-a-real-jwt', expires_at: t.expires_at });
      }
      case 'GET audit': {
        const limit = Math.min(Math.max(Number(url.searchParams.get('limit')) || 50, 1), 500);
        const before = url.searchParams.has('before') ? Number(url.searchParams.get('before')) : Infinity;
        const entries = [...db.audit].reverse().filter((e) => e.seq < before).slice(0, limit);
        return send(res, 200, { entries, next_before: entries.length === limit ? entries[entries.length - 1].seq : null });
      }
      default:
        return error(res, 404, 'invalid_request_error', 'not_found', `no admin call ${req.method} /_gateway/${parts.join('/')}`);
    }
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, adminToken, db, close: () => new Promise((r) => server.close(r)) };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const noServiceAccounts = process.env.MOCK_NO_SERVICE_ACCOUNTS === '1';
  const noBudgets = process.env.MOCK_NO_BUDGETS === '1';
  const m = await startMock({ port: Number(process.env.MOCK_PORT || 0), adminToken: process.env.MOCK_ADMIN_TOKEN || undefined, noServiceAccounts, noBudgets });
  const active = m.db.tokens.find((t) => t.revoked_at == null && t.subject === 'alice@example.com');
  console.log(`mock gateway (canned data, not the real gateway) on ${m.url}/_gateway/dashboard`);
  if (noServiceAccounts) console.log('answering 404 to /_gateway/service-accounts like an older gateway (the browser logs that 404 as a console error, so dashboard.mjs fails on it)');
  if (noBudgets) console.log('answering 404 to /_gateway/budgets like an older gateway (the browser logs that 404 as a console error, so dashboard.mjs fails on it)');
  const hostile = m.db.tokens.find((t) => t.subject === 'initech-api');
  console.log(`GATEWAY_URL=${m.url} ADMIN_TOKEN=${m.adminToken} EXPECT_ROUTE=llama-prod EXPECT_REQUESTS=1234 REVOKE_TOKEN_ID=${active.id} EXPECT_PARTNER=acme EXPECT_PARTNER_REQUESTS=224 EXPECT_HOSTILE_TOKEN=${hostile.id} EXPECT_MOCK_LOAD=1${noBudgets ? '' : ' EXPECT_MOCK_BUDGETS=1'}`);
}
