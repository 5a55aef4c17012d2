// Browser test of the Model Endpoints dashboard (`GET /_gateway/dashboard`),
// driven by playwright-core with the system Chromium.
//
// Env: GATEWAY_URL, ADMIN_TOKEN, EXPECT_ROUTE, EXPECT_REQUESTS, REVOKE_TOKEN_ID,
// OUT_DIR (dashboard.png, dashboard-export.png and the exported CSV files are
// written there); CHROMIUM (default /usr/bin/chromium); optional EXPECT_PARTNER
// with EXPECT_PARTNER_REQUESTS; optional EXPECT_HOSTILE_TOKEN (the mock's token
// whose description and contract id are formulas; the real gateway's run has none);
// optional EXPECT_MOCK_LOAD=1 (the mock's canned vLLM load readings, see MOCK_LOAD);
// optional EXPECT_MOCK_BUDGETS=1 (the mock's canned token budgets, see MOCK_BUDGETS).
//
// It fails on any console error (Chromium reports Content-Security-Policy
// violations as console errors) or uncaught page error; checks the page's CSP
// header; signs in; waits for EXPECT_ROUTE's card to show EXPECT_REQUESTS; checks
// that EXPECT_ROUTE's endpoint table has the load columns (running, waiting, KV
// cache, prefix hits), each cell a number, a percentage or "—", and with
// EXPECT_MOCK_LOAD the mock's exact readings (a queue marked, a stale reading
// dimmed, none as "—"); that EXPECT_ROUTE's card shows the route's models and its
// usage: always badge as GET /_gateway/routes has them; that the budgets panel has a row
// per budget of GET /_gateway/budgets with a "spent" badge exactly where a window's use
// reached its limit (and with EXPECT_MOCK_BUDGETS the mock's exact numbers, percentages
// and principals); that the principals panel lists at least one principal and, when EXPECT_PARTNER
// is set, that the partner's card shows EXPECT_PARTNER_REQUESTS; revokes
// REVOKE_TOKEN_ID through the page and checks through the admin API that it is
// revoked; saves a full-page screenshot at 1280x900. Then it clicks the four
// CSV export buttons, parses each download strictly (RFC 4180), checks the header
// rows, EXPECT_ROUTE's row (its models and usage too) and endpoints, the tokens that called it, the budgets and the partner
// against GET /_gateway/metrics (the load columns: their form always, the mock's
// values with EXPECT_MOCK_LOAD, since a real gateway reads its endpoints every 10 s),
// and that no cell starts as a formula would; with
// EXPECT_HOSTILE_TOKEN, that its formulas come out quoted behind an apostrophe.
// dashboard-export.png shows the export buttons and two of the files as tables.
//
// Standalone, against the mock (canned data):
//   node tests/browser/mock-gateway.mjs        # prints the environment to set
//   env GATEWAY_URL=... ADMIN_TOKEN=... ... OUT_DIR=target/browser node tests/browser/dashboard.mjs

import { chromium } from 'playwright-core';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const TOTAL_TIMEOUT_MS = 60_000;
const ROUTE_WAIT_MS = 20_000;

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last;
    if (Date.now() >= deadline) throw new Error(`${what}: not reached within ${timeoutMs / 1000} s (${last.detail})`);
    await sleep(250);
  }
}

async function listTokens(base, adminToken) {
  const res = await fetch(`${base}/_gateway/tokens`, { headers: { authorization: `Bearer ${adminToken}` } });
  if (!res.ok) throw new Error(`GET /_gateway/tokens answered ${res.status}: ${await res.text()}`);
  const body = await res.json();
  if (!body || !Array.isArray(body.tokens)) throw new Error('GET /_gateway/tokens: no `tokens` array in the answer');
  return body.tokens;
}

async function adminGet(base, adminToken, what) {
  const res = await fetch(`${base}/_gateway/${what}`, { headers: { authorization: `Bearer ${adminToken}` } });
  if (!res.ok) throw new Error(`GET /_gateway/${what} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

// The export's columns: what a spreadsheet user's formulas refer to, so a change is deliberate.
const CSV_HEADERS = {
  routes: ['route', 'state', 'host', 'auth_required', 'groups', 'managed_by', 'expires_at_utc', 'endpoints', 'endpoints_up',
    'requests_total', 'requests_last_hour', 'errors_5xx_last_hour', 'status_2xx', 'status_3xx', 'status_4xx', 'status_5xx', 'status_1xx', 'status_other',
    'latency_p50_ms', 'latency_p95_ms', 'latency_p99_ms', 'latency_last_hour_p50_ms', 'latency_last_hour_p95_ms', 'latency_last_hour_p99_ms',
    'gateway_overhead_p50_ms', 'gateway_overhead_p99_ms', 'prompt_tokens', 'completion_tokens', 'bytes_in', 'bytes_out', 'models', 'usage'],
  endpoints: ['route', 'endpoint', 'url', 'weight', 'in_route', 'health', 'uptime_24h', 'uptime_7d', 'requests', 'failures', 'last_probe_at_utc',
    'running', 'waiting', 'kv_cache_usage', 'prefix_cache_hit_rate', 'load_read_at_utc'],
  tokens: ['token_id', 'subject', 'description', 'kind', 'partner', 'contract_id', 'owner', 'groups', 'allowed_routes', 'state', 'revoked',
    'requests', 'requests_by_route', 'prompt_tokens', 'completion_tokens', 'last_seen_utc', 'created_at_utc', 'expires_at_utc', 'revoked_at_utc', 'created_by'],
  budgets: ['kind', 'id', 'tokens_per_minute', 'used_minute', 'tokens_per_day', 'used_day', 'tokens_per_month', 'used_month', 'spent', 'managed_by'],
};

// A strict RFC 4180 reader: CRLF after every record, quotes only around whole
// fields, doubled inside. Returns the records (arrays of strings).
function parseCsv(text, what) {
  const records = [];
  let i = 0;
  const fail = (why) => { throw new Error(`${what}: not RFC 4180 at offset ${i}: ${why} (near ${JSON.stringify(text.slice(Math.max(0, i - 20), i + 20))})`); };
  if (!text.endsWith('\r\n')) fail('the last record does not end with CRLF');
  while (i < text.length) {
    const rec = [];
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          const q = text.indexOf('"', i);
          if (q < 0) fail('unterminated quoted field');
          field += text.slice(i, q);
          if (text[q + 1] === '"') { field += '"'; i = q + 2; } else { i = q + 1; break; }
        }
      } else {
        field = /^[^",\r\n]*/.exec(text.slice(i))[0];
        i += field.length;
        if (text[i] === '"') fail('a quote inside an unquoted field');
      }
      rec.push(field);
      if (text[i] === ',') { i++; continue; }
      if (text.startsWith('\r\n', i)) { i += 2; break; }
      fail('a field is followed by neither a comma nor CRLF');
    }
    records.push(rec);
  }
  return records;
}

async function exportCsv(page, what, outDir) {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.click(`#export-${what}`)]);
  const name = download.suggestedFilename();
  if (!new RegExp(`^ai-gateway-${what}-\\d{4}-\\d{2}-\\d{2}\\.csv$`).test(name)) throw new Error(`export ${what}: file name ${JSON.stringify(name)}`);
  const failure = await download.failure();
  if (failure) throw new Error(`export ${what}: download failed: ${failure}`);
  const bytes = await readFile(await download.path());
  await writeFile(path.join(outDir, name), bytes);
  // UTF-8 with a byte order mark (Excel reads it as UTF-8 only then).
  if (!(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf)) throw new Error(`export ${what}: no UTF-8 byte order mark`);
  const text = bytes.subarray(3).toString('utf8');
  const [header, ...rows] = parseCsv(text, `export ${what}`);
  if (JSON.stringify(header) !== JSON.stringify(CSV_HEADERS[what])) throw new Error(`export ${what}: header row is ${JSON.stringify(header)}, want ${JSON.stringify(CSV_HEADERS[what])}`);
  const bad = rows.findIndex((r) => r.length !== header.length);
  if (bad >= 0) throw new Error(`export ${what}: row ${bad + 1} has ${rows[bad].length} fields, the header ${header.length}`);
  // Whoever typed the text, no cell may start as a formula would (OWASP's list).
  for (const r of rows) {
    const f = r.find((v) => /^[=+\-@\t\r]/.test(v));
    if (f !== undefined) throw new Error(`export ${what}: cell ${JSON.stringify(f)} would run as a formula`);
  }
  const objects = rows.map((r) => Object.fromEntries(header.map((h, j) => [h, r[j]])));
  return { name, text, header, rows, objects };
}

function expectEq(what, got, want) {
  if (String(got) !== String(want)) throw new Error(`${what}: ${JSON.stringify(got)}, want ${JSON.stringify(String(want))}`);
}

// The mock's vLLM load readings (tests/browser/mock-gateway.mjs) as the endpoint
// tables show them: running, waiting, KV cache, prefix hits; `queued` (waiting > 0,
// in the warning colour), `stale` (older than 30 s, dimmed), `none` (load: null).
const MOCK_LOAD = {
  'llama-prod/a': { cells: ['14', '3', '91.3%', '62.4%'], queued: true, stale: false, none: false, age: 'Read 4 s ago',
    csv: { running: '14', waiting: '3', kv_cache_usage: '0.913', prefix_cache_hit_rate: '0.624' } },
  'llama-prod/b': { cells: ['2', '0', '18.0%', '41.0%'], queued: false, stale: true, none: false, age: 'Read 1 min ago',
    csv: { running: '2', waiting: '0', kv_cache_usage: '0.18', prefix_cache_hit_rate: '0.41' } },
  'llama-prod/lease-7f': { cells: ['—', '—', '—', '—'], queued: false, stale: false, none: true,
    csv: { running: '', waiting: '', kv_cache_usage: '', prefix_cache_hit_rate: '', load_read_at_utc: '' } },
  'mistral-dev/gpu-1': { cells: ['0', '0', '0.0%', '—'], queued: false, stale: false, none: false, age: 'Read 7 s ago',
    csv: { running: '0', waiting: '0', kv_cache_usage: '0', prefix_cache_hit_rate: '' } },
  'k7q2m9x4zp/e0': { cells: ['—', '—', '—', '—'], queued: false, stale: false, none: true,
    csv: { running: '', waiting: '', kv_cache_usage: '', prefix_cache_hit_rate: '', load_read_at_utc: '' } },
};
const LOAD_HEADS = ['Running', 'Waiting', 'KV cache', 'Prefix hits'];
const LOAD_CELLS = ['load-running', 'load-waiting', 'load-kv', 'load-prefix'];

// The load columns of the endpoint tables: EXPECT_ROUTE's always (a real gateway's
// endpoints may or may not have a reading, and it changes every 10 s, so only the
// form of each cell), and the mock's exact readings with EXPECT_MOCK_LOAD.
async function checkLoadCells(page, route) {
  const tables = await page.locator('[data-route] table.endpoints').evaluateAll((ts, cls) => ts.map((t) => ({
    route: t.closest('[data-route]').getAttribute('data-route'),
    heads: [...t.querySelectorAll('thead th')].map((th) => th.textContent.trim()),
    note: t.parentElement.querySelector('.load-note')?.textContent || null,
    rows: [...t.querySelectorAll('tr.endpoint')].map((tr) => ({
      id: tr.getAttribute('data-endpoint'),
      cells: cls.map((c) => { const td = tr.querySelector('td.' + c); return td ? { text: td.textContent.trim(), cls: td.className, title: td.title || '' } : null; }),
    })),
  })), LOAD_CELLS);
  const mine = tables.find((t) => t.route === route);
  if (!mine) throw new Error(`no endpoint table in ${route}'s card`);
  for (const t of tables) {
    const heads = t.heads.slice(-4);
    if (JSON.stringify(heads) !== JSON.stringify(LOAD_HEADS)) throw new Error(`${t.route} endpoint table: last headers ${JSON.stringify(heads)}, want ${JSON.stringify(LOAD_HEADS)}`);
    for (const r of t.rows) {
      r.cells.forEach((c, i) => {
        if (!c) throw new Error(`${t.route}/${r.id}: no ${LOAD_CELLS[i]} cell`);
        const form = i < 2 ? /^(—|\d[\d,.]*)$/ : /^(—|\d{1,3}(\.\d{1,2})?%)$/;
        if (!form.test(c.text)) throw new Error(`${t.route}/${r.id} ${LOAD_CELLS[i]}: ${JSON.stringify(c.text)} is neither "—" nor a ${i < 2 ? 'number' : 'percentage'}`);
        if (c.text !== '—' && !/^(Read |Reading time unknown)/.test(c.title)) throw new Error(`${t.route}/${r.id} ${LOAD_CELLS[i]}: the reading's age is not in the title (${JSON.stringify(c.title)})`);
      });
    }
  }
  if (process.env.EXPECT_MOCK_LOAD !== '1') return `columns present in ${tables.length} endpoint tables (values not checked: EXPECT_MOCK_LOAD not set)`;
  for (const [key, want] of Object.entries(MOCK_LOAD)) {
    const [rname, id] = key.split('/');
    const row = tables.find((t) => t.route === rname)?.rows.find((r) => r.id === id);
    if (!row) throw new Error(`no endpoint row ${key}`);
    expectEq(`${key} load cells`, JSON.stringify(row.cells.map((c) => c.text)), JSON.stringify(want.cells));
    const has = (c, k) => c.cls.split(/\s+/).includes(k);
    expectEq(`${key} waiting marked as a queue`, has(row.cells[1], 'queued'), want.queued);
    for (const c of row.cells) {
      expectEq(`${key} ${c.cls}: dimmed as stale`, has(c, 'load-stale'), want.stale);
      expectEq(`${key} ${c.cls}: marked as no reading`, has(c, 'load-none'), want.none);
      if (want.age && !c.title.startsWith(want.age)) throw new Error(`${key} ${c.cls}: title ${JSON.stringify(c.title)}, want it to start with ${JSON.stringify(want.age)}`);
      if (want.stale && !/stale: the balancer ignores readings older than 30 s/.test(c.title)) throw new Error(`${key} ${c.cls}: title ${JSON.stringify(c.title)} does not say the reading is stale`);
      if (!want.stale && /stale/.test(c.title)) throw new Error(`${key} ${c.cls}: title ${JSON.stringify(c.title)} calls a fresh reading stale`);
    }
  }
  const note = tables.find((t) => t.route === 'llama-prod').note || '';
  if (!/older than 30 s \(b\)/.test(note)) throw new Error(`llama-prod: the note under the endpoints is ${JSON.stringify(note)}, want it to name b as stale`);
  if (tables.find((t) => t.route === 'mistral-dev').note) throw new Error('mistral-dev: a stale note with no stale reading');
  return `the mock's readings shown (a queue marked, a stale reading dimmed, none as "—")`;
}

// EXPECT_ROUTE's models (model routing) and `usage: always`, on its card as GET /_gateway/routes has them.
async function checkRouteModels(page, base, adminToken, route) {
  const def = ((await adminGet(base, adminToken, 'routes')).routes || []).find((r) => r.name === route);
  if (!def) throw new Error(`GET /_gateway/routes does not list ${route}`);
  const card = page.locator(`[data-route="${route}"]`);
  const chips = await card.locator('.route-models .chip.model').evaluateAll((cs) => cs.map((c) => c.textContent));
  expectEq(`${route} card: models`, JSON.stringify(chips), JSON.stringify(def.models || []));
  const usage = await card.locator('.badge.usage-always').count();
  expectEq(`${route} card: usage: always badge`, usage, def.usage === 'always' ? 1 : 0);
  return `${(def.models || []).length} models${def.usage === 'always' ? ', usage: always' : ''}`;
}

// The mock's budgets (tests/browser/mock-gateway.mjs) as the budgets table shows them:
// the windows spent, each window's percentage (null: no limit) and who the budget is for.
// `tokens/*` is the one token budget (alice's notebook token, whose id the mock draws).
const MOCK_BUDGETS = {
  'contracts/+INI-2026': { spent: ['day'], pct: ['0.0%', '100%', '5.2%'], who: /^no partner token names this contract$/ },
  'contracts/C-2025-031': { spent: [], pct: [null, null, '84.0%'], who: /^partner acme · 1 active token$/, managed: 'terraform' },
  'service-accounts/svc-batch': { spent: [], pct: [null, '2.0%', null], who: /^service account, owner data-platform@example\.com · 1 active token$/ },
  'tokens/*': { spent: ['minute'], pct: ['102%', '75.0%', null], who: /^alice@example\.com · notebook/ },
};
const WINDOWS = [['minute', 'tokens_per_minute'], ['day', 'tokens_per_day'], ['month', 'tokens_per_month']];

// The budgets panel against GET /_gateway/budgets: a row per budget, each window's
// limit and use, and a "spent" badge exactly where the use reached the limit.
async function checkBudgets(page, base, adminToken) {
  const listed = (await adminGet(base, adminToken, 'budgets')).budgets;
  if (!Array.isArray(listed)) throw new Error('GET /_gateway/budgets: no `budgets` array in the answer');
  await page.locator('#budgets-card').waitFor({ state: 'visible' });
  if (await page.locator('#budgets .form-error').count()) throw new Error(`budgets panel: ${await page.locator('#budgets .form-error').textContent()}`);
  const mock = process.env.EXPECT_MOCK_BUDGETS === '1';
  if (mock && listed.length !== Object.keys(MOCK_BUDGETS).length) throw new Error(`the mock lists ${listed.length} budgets, want ${Object.keys(MOCK_BUDGETS).length}`);
  const rows = await poll(`budgets panel listing ${listed.length} budgets`, 10_000, async () => {
    const r = await page.locator('#budgets tr.budget-row').evaluateAll((trs) => trs.map((tr) => ({
      key: tr.getAttribute('data-budget'),
      spentRow: tr.classList.contains('spent'),
      managed: (tr.querySelector('.budget-managed')?.textContent || '').trim(),
      who: (tr.querySelector('td.who .small')?.textContent || '').trim(),
      cells: [...tr.querySelectorAll('td.budget-cell')].map((td) => ({
        window: td.getAttribute('data-window'), used: td.getAttribute('data-used'), limit: td.getAttribute('data-limit'),
        badge: td.querySelectorAll('.budget-spent').length, pct: td.querySelector('.budget-pct')?.textContent.trim() ?? null, text: td.textContent.trim(),
      })),
    })));
    return { ok: r.length === listed.length, rows: r, detail: `${r.length} rows` };
  }).then((x) => x.rows);
  if (!listed.length) {
    const text = (await page.locator('#budgets').textContent()) || '';
    if (!text.includes('No token budgets')) throw new Error(`budgets panel with no budget: ${JSON.stringify(text)}`);
    return 'no budget on this gateway: the empty panel shown';
  }
  let spent = 0;
  for (const b of listed) {
    const key = `${b.kind}/${b.id}`;
    const row = rows.find((r) => r.key === key);
    if (!row) throw new Error(`budgets panel: no row for ${key}`);
    expectEq(`budget ${key}: windows`, row.cells.map((c) => c.window).join(' '), 'minute day month');
    row.cells.forEach((c, i) => {
      const [w, field] = WINDOWS[i];
      const limit = b[field] ?? null;
      expectEq(`budget ${key} ${w}: limit`, c.limit, limit);
      if (limit == null) {
        if (c.text !== 'no limit' || c.badge) throw new Error(`budget ${key} ${w}: no limit, but the cell shows ${JSON.stringify(c.text)}`);
        return;
      }
      if (!/^\d+(\.\d)?%$/.test(c.pct || '')) throw new Error(`budget ${key} ${w}: percentage ${JSON.stringify(c.pct)}`);
      // The page's copy and this call may be a refresh apart on a real gateway; the mock's use does not move.
      if (mock) expectEq(`budget ${key} ${w}: used`, c.used, b.used?.[w] ?? 0);
      expectEq(`budget ${key} ${w}: spent badge`, c.badge, Number(c.used) >= Number(limit) ? 1 : 0);
      spent += c.badge;
    });
    expectEq(`budget ${key}: row marked spent`, row.spentRow, row.cells.some((c) => c.badge));
    expectEq(`budget ${key}: managed_by badge`, row.managed, b.managed_by || '');
    if (!mock) continue;
    const want = MOCK_BUDGETS[b.kind === 'tokens' ? 'tokens/*' : key];
    if (!want) throw new Error(`the mock lists ${key}, which MOCK_BUDGETS does not know`);
    expectEq(`budget ${key}: spent windows`, row.cells.filter((c) => c.badge).map((c) => c.window).join(' '), want.spent.join(' '));
    expectEq(`budget ${key}: percentages`, JSON.stringify(row.cells.map((c) => c.pct)), JSON.stringify(want.pct));
    if (!want.who.test(row.who)) throw new Error(`budget ${key}: shown as for ${JSON.stringify(row.who)}, want ${want.who}`);
    expectEq(`budget ${key}: managed by`, row.managed, want.managed || '');
  }
  if (mock && spent !== 2) throw new Error(`budgets panel: ${spent} spent badges, want the mock's 2`);
  return mock ? `the mock's ${listed.length} budgets shown with their use, percentages, 2 spent badges and Terraform's marked` : `${listed.length} budgets shown, spent badges where the use reached the limit`;
}

// Exports the four files and checks them against the page and the admin API.
async function checkExports(page, { base, adminToken, route, expected, revokeId, partner, partnerExpected, outDir }) {
  const cardEndpoints = await page.locator(`[data-route="${route}"] tr.endpoint`).evaluateAll((trs) =>
    trs.map((tr) => ({ id: tr.getAttribute('data-endpoint'), health: (tr.querySelector('.badge')?.textContent || '').trim() })));
  const routes = await exportCsv(page, 'routes', outDir);
  const endpoints = await exportCsv(page, 'endpoints', outDir);
  const tokens = await exportCsv(page, 'tokens', outDir);
  const budgets = await exportCsv(page, 'budgets', outDir);
  const metrics = await adminGet(base, adminToken, 'metrics');
  const listed = (await adminGet(base, adminToken, 'tokens')).tokens;
  const rm = metrics.routes?.[route];
  if (!rm) throw new Error(`GET /_gateway/metrics has no route ${route}`);

  const rrows = routes.objects.filter((r) => r.route === route);
  if (rrows.length !== 1) throw new Error(`routes CSV: ${rrows.length} rows for ${route}`);
  const r = rrows[0];
  expectEq(`routes CSV ${route} requests_total`, r.requests_total, expected);
  for (const k of ['prompt_tokens', 'completion_tokens', 'bytes_in', 'bytes_out']) expectEq(`routes CSV ${route} ${k}`, r[k], rm[k] ?? 0);
  expectEq(`routes CSV ${route} status_2xx`, r.status_2xx, rm.by_status_class?.['2xx'] ?? 0);
  expectEq(`routes CSV ${route} endpoints`, r.endpoints, cardEndpoints.length);
  const def = ((await adminGet(base, adminToken, 'routes')).routes || []).find((x) => x.name === route);
  expectEq(`routes CSV ${route} models`, r.models, (def?.models || []).join('; '));
  expectEq(`routes CSV ${route} usage`, r.usage, def?.usage === 'always' ? 'always' : 'client');

  const erows = endpoints.objects.filter((e) => e.route === route);
  expectEq(`endpoints CSV: endpoints of ${route}`, erows.map((e) => e.endpoint).sort().join(' '), cardEndpoints.map((e) => e.id).sort().join(' '));
  for (const e of erows) {
    const em = rm.endpoints?.[e.endpoint] || {};
    expectEq(`endpoints CSV ${route}/${e.endpoint} requests`, e.requests, em.requests ?? 0);
    expectEq(`endpoints CSV ${route}/${e.endpoint} failures`, e.failures, em.failures ?? 0);
    expectEq(`endpoints CSV ${route}/${e.endpoint} health`, e.health, cardEndpoints.find((c) => c.id === e.endpoint).health);
  }
  // vLLM's load readings: the form always (they change every 10 s on a real gateway).
  for (const e of endpoints.objects) {
    const key = `${e.route}/${e.endpoint}`;
    for (const k of ['running', 'waiting']) if (!/^(\d+(\.\d+)?)?$/.test(e[k])) throw new Error(`endpoints CSV ${key} ${k}: ${JSON.stringify(e[k])}`);
    for (const k of ['kv_cache_usage', 'prefix_cache_hit_rate']) {
      if (e[k] !== '' && !(/^\d+(\.\d+)?(e-\d+)?$/.test(e[k]) && Number(e[k]) <= 1)) throw new Error(`endpoints CSV ${key} ${k}: ${JSON.stringify(e[k])} is not a ratio`);
    }
    if (e.load_read_at_utc !== '' && !/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(e.load_read_at_utc)) throw new Error(`endpoints CSV ${key} load_read_at_utc: ${JSON.stringify(e.load_read_at_utc)}`);
    if (e.load_read_at_utc === '' && (e.running || e.waiting || e.kv_cache_usage || e.prefix_cache_hit_rate)) throw new Error(`endpoints CSV ${key}: load values without a reading time`);
  }
  let load = 'load columns well-formed (values not checked: EXPECT_MOCK_LOAD not set)';
  if (process.env.EXPECT_MOCK_LOAD === '1') {
    for (const [key, want] of Object.entries(MOCK_LOAD)) {
      const [rname, id] = key.split('/');
      const e = endpoints.objects.find((x) => x.route === rname && x.endpoint === id);
      if (!e) throw new Error(`endpoints CSV: no row for ${key}`);
      for (const [k, v] of Object.entries(want.csv)) expectEq(`endpoints CSV ${key} ${k}`, e[k], v);
      const at = metrics.routes?.[rname]?.endpoints?.[id]?.load?.at;
      if (at != null) {
        // The mock dates its readings from its clock at each call; the page's copy is at most one refresh (10 s) older.
        const csvAt = Date.parse(e.load_read_at_utc.replace(' ', 'T') + 'Z') / 1000;
        if (!(Math.abs(csvAt - at) <= 15)) throw new Error(`endpoints CSV ${key} load_read_at_utc: ${JSON.stringify(e.load_read_at_utc)}, want about ${new Date(at * 1000).toISOString()}`);
      }
    }
    load = "the mock's load readings exported as numbers and ratios, none as empty fields";
  }

  // Every listed token once, then those known from the metrics only.
  const byId = new Map(tokens.objects.map((t) => [t.token_id, t]));
  if (byId.size !== tokens.objects.length) throw new Error('tokens CSV: a token id appears twice');
  for (const t of listed) if (!byId.has(t.id)) throw new Error(`tokens CSV: no row for listed token ${t.id}`);
  const revoked = byId.get(revokeId);
  expectEq(`tokens CSV ${revokeId} state`, revoked.state, 'revoked');
  expectEq(`tokens CSV ${revokeId} revoked`, revoked.revoked, 'true');
  if (!/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(revoked.revoked_at_utc)) throw new Error(`tokens CSV ${revokeId} revoked_at_utc: ${JSON.stringify(revoked.revoked_at_utc)}`);
  const callers = Object.entries(metrics.tokens || {}).filter(([, m]) => (m.routes?.[route] ?? 0) > 0);
  if (!callers.length) throw new Error(`GET /_gateway/metrics: no token called ${route}`);
  for (const [id, m] of callers) {
    const t = byId.get(id);
    if (!t) throw new Error(`tokens CSV: no row for ${id}, which called ${route}`);
    const l = listed.find((x) => x.id === id);
    expectEq(`tokens CSV ${id} requests`, t.requests, Math.max(l?.request_count ?? 0, m.requests ?? 0));
    expectEq(`tokens CSV ${id} prompt_tokens`, t.prompt_tokens, m.prompt_tokens ?? 0);
    expectEq(`tokens CSV ${id} completion_tokens`, t.completion_tokens, m.completion_tokens ?? 0);
    if (!t.requests_by_route.split('; ').includes(`${route}=${m.routes[route]}`)) throw new Error(`tokens CSV ${id} requests_by_route: ${JSON.stringify(t.requests_by_route)}, want ${route}=${m.routes[route]} in it`);
  }
  if (partner) {
    const mine = tokens.objects.filter((t) => t.partner === partner);
    if (!mine.length) throw new Error(`tokens CSV: no token of partner ${partner}`);
    expectEq(`tokens CSV: requests of partner ${partner}'s tokens`, mine.reduce((a, t) => a + Number(t.requests), 0), partnerExpected);
  }

  // Budgets: one row per listed budget; the limits as numbers, none as empty fields.
  const listedBudgets = (await adminGet(base, adminToken, 'budgets')).budgets;
  expectEq('budgets CSV rows', budgets.rows.length, listedBudgets.length);
  const unformula = (v) => v.replace(/^'(?=[=+\-@\t\r])/, '');
  for (const b of listedBudgets) {
    const key = `${b.kind}/${b.id}`;
    const row = budgets.objects.find((x) => x.kind === b.kind && unformula(x.id) === b.id);
    if (!row) throw new Error(`budgets CSV: no row for ${key}`);
    for (const [w, field] of WINDOWS) {
      expectEq(`budgets CSV ${key} ${field}`, row[field], b[field] ?? '');
      if (!/^\d+$/.test(row[`used_${w}`])) throw new Error(`budgets CSV ${key} used_${w}: ${JSON.stringify(row[`used_${w}`])}`);
    }
    const spent = WINDOWS.filter(([w, field]) => row[field] !== '' && Number(row[`used_${w}`]) >= Number(row[field])).map(([w]) => w).join('; ');
    expectEq(`budgets CSV ${key} spent`, row.spent, spent);
    expectEq(`budgets CSV ${key} managed_by`, row.managed_by, b.managed_by || '');
  }
  let budgetsCsv = `${budgets.rows.length} budgets`;
  if (process.env.EXPECT_MOCK_BUDGETS === '1') {
    const ini = budgets.objects.find((x) => x.kind === 'contracts' && x.id.endsWith('INI-2026'));
    expectEq('budgets CSV: the contract id a spreadsheet would run', ini?.id, `'+INI-2026`);
    expectEq('budgets CSV +INI-2026', JSON.stringify([ini.tokens_per_day, ini.used_day, ini.used_month, ini.spent]), JSON.stringify(['50000', '50000', '52000', 'day']));
    const alice = budgets.objects.find((x) => x.kind === 'tokens');
    expectEq('budgets CSV token budget', JSON.stringify([alice.tokens_per_minute, alice.used_minute, alice.tokens_per_month, alice.spent]), JSON.stringify(['20000', '20480', '', 'minute']));
    budgetsCsv += ", the mock's limits, use and spent windows, its formula-like contract id quoted";
  }

  // The mock's partner typed formulas; the export must hand them back as text.
  // The real gateway's run has no such token (the contract case does not issue one).
  let hostile = 'skipped (EXPECT_HOSTILE_TOKEN not set)';
  const hostileId = process.env.EXPECT_HOSTILE_TOKEN;
  if (hostileId) {
    const t = byId.get(hostileId);
    if (!t) throw new Error(`tokens CSV: no row for EXPECT_HOSTILE_TOKEN ${hostileId}`);
    expectEq(`tokens CSV ${hostileId} description`, t.description, `'=HYPERLINK("x")`);
    expectEq(`tokens CSV ${hostileId} contract_id`, t.contract_id, `'@INI-7, rev "b"`);
    expectEq(`tokens CSV ${hostileId} owner`, t.owner, 'initech ops\r\n-second line');
    expectEq(`tokens CSV ${hostileId} groups`, t.groups, `'+sales; partners`);
    expectEq(`tokens CSV ${hostileId} created_by`, t.created_by, `'-partner-portal`);
    // As written: quoted (neutralised text also where RFC 4180 alone would not quote), quotes doubled.
    const at = tokens.text.indexOf('\r\n' + hostileId + ',') + 2;
    const record = tokens.text.slice(at, tokens.text.indexOf('\r\n', tokens.text.indexOf('-second line', at)));
    for (const raw of [`,"'=HYPERLINK(""x"")",`, `,"'@INI-7, rev ""b""",`, `,"initech ops\r\n-second line","'+sales; partners",`]) {
      if (!record.includes(raw)) throw new Error(`tokens CSV: the record of ${hostileId} lacks ${JSON.stringify(raw)}: ${JSON.stringify(record)}`);
    }
    if (!record.endsWith(`,"'-partner-portal"`)) throw new Error(`tokens CSV: the record of ${hostileId} does not end with "'-partner-portal": ${JSON.stringify(record)}`);
    hostile = 'formulas quoted behind an apostrophe';
  }
  return { routes, endpoints, tokens, hostile, hostileId, load, budgetsCsv };
}

// The export buttons as the page shows them, and two of the files laid out as
// a spreadsheet would show them, in one picture.
async function exportScreenshot(browser, page, { endpoints, tokens, hostileId }, outDir) {
  // The top of a panel, in page coordinates (a full-page clip).
  const clipOf = async (locator, height) => {
    const b = await locator.evaluate((e) => { const r = e.getBoundingClientRect(); return { x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height }; });
    return page.screenshot({ fullPage: true, clip: { x: Math.max(b.x - 8, 0), y: Math.max(b.y - 8, 0), width: b.w + 16, height: Math.min(b.h + 16, height) } });
  };
  const routesPng = await clipOf(page.locator('section[aria-labelledby="routes-title"]'), 300);
  const tokensPng = await clipOf(page.locator('section[aria-labelledby="tokens-title"]'), 72);

  const tokenCols = ['token_id', 'subject', 'description', 'kind', 'partner', 'contract_id', 'state', 'requests', 'prompt_tokens', 'completion_tokens', 'last_seen_utc'];
  const shown = tokens.objects.slice(0, 12);
  const data = {
    images: [routesPng, tokensPng].map((b) => 'data:image/png;base64,' + b.toString('base64')),
    tables: [
      { title: endpoints.name, note: `all ${endpoints.rows.length} rows and ${endpoints.header.length} columns`, header: endpoints.header, rows: endpoints.rows, mark: [] },
      { title: tokens.name, note: `${shown.length} of ${tokens.rows.length} rows, ${tokenCols.length} of ${tokens.header.length} columns`, header: tokenCols,
        rows: shown.map((t) => tokenCols.map((c) => t[c])), mark: shown.map((t) => t.token_id === hostileId) },
    ],
  };
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await ctx.newPage();
  await p.setContent('<!doctype html><html><head><meta charset="utf-8"><title>CSV export</title></head><body></body></html>');
  await p.evaluate((d) => {
    const el = (tag, attrs, ...kids) => {
      const e = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
      e.append(...kids);
      return e;
    };
    const style = el('style', {});
    style.textContent = `body{margin:0;padding:16px 22px;background:#f4f6f9;font:13px system-ui,sans-serif;color:#1b2430}
      h2{font-size:14px;margin:18px 0 6px} h2 span{font-weight:400;color:#5a6676;margin-left:8px}
      img{display:block;margin-bottom:8px;max-width:100%}
      table{border-collapse:collapse;background:#fff;font:12px ui-monospace,Menlo,Consolas,monospace}
      th,td{border:1px solid #d0d7e0;padding:2px 6px;white-space:nowrap;max-width:230px;overflow:hidden;text-overflow:ellipsis}
      th{background:#e9edf3;font-weight:600} td.num{text-align:right} td.n{color:#8a94a3;background:#eef1f5;text-align:right}
      tr.mark td{background:#fff4e0}`;
    document.head.append(style);
    document.body.append(el('h2', {}, 'Export buttons on the Routes and Tokens panels'), ...d.images.map((src) => el('img', { src })));
    for (const t of d.tables) {
      const head = el('tr', {}, el('th', {}, ''), ...t.header.map((x) => el('th', {}, x)));
      const rows = t.rows.map((r, i) => el('tr', t.mark[i] ? { class: 'mark' } : {}, el('td', { class: 'n' }, String(i + 2)), ...r.map((v) => el('td', /^\d+(\.\d+)?$/.test(v) ? { class: 'num', title: v } : { title: v }, v))));
      document.body.append(el('h2', {}, t.title, el('span', {}, t.note)), el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows)));
    }
  }, data);
  const shot = path.join(outDir, 'dashboard-export.png');
  await p.screenshot({ path: shot, fullPage: true });
  await ctx.close();
  return shot;
}

async function run(problems, setBrowser) {
  const base = env('GATEWAY_URL').replace(/\/+$/, '');
  const adminToken = env('ADMIN_TOKEN');
  const route = env('EXPECT_ROUTE');
  const expected = env('EXPECT_REQUESTS');
  const revokeId = env('REVOKE_TOKEN_ID');
  const outDir = env('OUT_DIR');
  if (!/^\d+$/.test(expected)) throw new Error(`EXPECT_REQUESTS must be an integer, got ${expected}`);
  if (!/^[A-Za-z0-9_-]+$/.test(route)) throw new Error(`EXPECT_ROUTE has unexpected characters: ${route}`);
  if (!/^[A-Za-z0-9_-]+$/.test(revokeId)) throw new Error(`REVOKE_TOKEN_ID has unexpected characters: ${revokeId}`);
  const partner = process.env.EXPECT_PARTNER || null;
  const partnerExpected = partner ? env('EXPECT_PARTNER_REQUESTS') : null;
  if (partner && !/^[a-z0-9-]{1,64}$/.test(partner)) throw new Error(`EXPECT_PARTNER is not a partner name: ${partner}`);
  if (partner && !/^\d+$/.test(partnerExpected)) throw new Error(`EXPECT_PARTNER_REQUESTS must be an integer, got ${partnerExpected}`);

  const before = (await listTokens(base, adminToken)).find((t) => t.id === revokeId);
  if (!before) throw new Error(`token ${revokeId} is not in GET /_gateway/tokens`);
  if (before.revoked_at != null) throw new Error(`token ${revokeId} is already revoked before the test`);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
  setBrowser(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    // Navigations away are not failures of the page.
    if (!req.failure()?.errorText?.includes('ERR_ABORTED')) problems.push(`request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`);
  });

  const response = await page.goto(`${base}/_gateway/dashboard`, { waitUntil: 'load' });
  if (!response) throw new Error('no response for /_gateway/dashboard');
  if (response.status() !== 200) throw new Error(`/_gateway/dashboard answered ${response.status()}`);
  const csp = (await response.allHeaders())['content-security-policy'];
  if (!csp || !csp.includes("script-src 'self'")) throw new Error(`/_gateway/dashboard: content-security-policy is ${JSON.stringify(csp)}, want one with script-src 'self'`);

  // The script ran (it is external, so the CSP allowed it) and shows the login form.
  await page.locator('body[data-app="ready"]').waitFor({ state: 'attached', timeout: 10_000 });
  await page.locator('#token').waitFor({ state: 'visible' });
  await page.fill('#token', adminToken);
  await page.click('#login');

  const cell = page.locator(`[data-route="${route}"] .requests-total`);
  await poll(`route ${route} showing ${expected} requests`, ROUTE_WAIT_MS, async () => {
    const text = (await cell.count()) ? ((await cell.first().textContent()) || '').trim() : null;
    const status = ((await page.locator('#status').textContent().catch(() => '')) || '').trim();
    if (await page.locator('#login-view').isVisible()) {
      const why = ((await page.locator('#login-error').textContent()) || '').trim();
      throw new Error(`the dashboard sent us back to the login form: ${why || '(no message)'}`);
    }
    return { ok: text === expected, detail: text == null ? `no card for the route; status: ${status}` : `card shows ${JSON.stringify(text)}; status: ${status}` };
  });

  // vLLM's load per endpoint, next to health and uptime.
  const loadShown = await checkLoadCells(page, route);
  const modelsShown = await checkRouteModels(page, base, adminToken, route);
  const budgetsShown = await checkBudgets(page, base, adminToken);

  // Principals: the recorded tokens grouped by who they stand for, and service
  // accounts. Any gateway that has issued a token (REVOKE_TOKEN_ID is one) lists one.
  await poll('#principals listing a principal', 10_000, async () => {
    const n = await page.locator('#principals [data-principal]').count();
    return { ok: n >= 1, detail: `${n} principals listed` };
  });

  if (partner) {
    const pcell = page.locator(`#partners [data-partner="${partner}"] .partner-requests`);
    await poll(`partner ${partner} showing ${partnerExpected} requests`, ROUTE_WAIT_MS, async () => {
      const text = (await pcell.count()) ? ((await pcell.first().textContent()) || '').trim() : null;
      return { ok: text === partnerExpected, detail: text == null ? 'no card for the partner' : `card shows ${JSON.stringify(text)}` };
    });
  }

  // Revoke through the page: the Revoke button, then the in-page confirmation.
  const row = page.locator(`.token-row[data-token-id="${revokeId}"]`);
  await row.waitFor({ state: 'visible' });
  await row.locator('button.revoke').click();
  await row.locator('button.revoke-confirm').click();
  await poll(`token ${revokeId} shown as revoked`, 10_000, async () => {
    const cls = (await row.getAttribute('class')) || '';
    return { ok: /\brevoked\b/.test(cls), detail: `row class is ${JSON.stringify(cls)}` };
  });
  await poll(`token ${revokeId} revoked in GET /_gateway/tokens`, 10_000, async () => {
    const t = (await listTokens(base, adminToken)).find((x) => x.id === revokeId);
    return { ok: !!t && t.revoked_at != null, detail: t ? `revoked_at is ${t.revoked_at}` : 'the token is no longer listed' };
  });

  await page.setViewportSize({ width: 1280, height: 900 });
  await mkdir(outDir, { recursive: true });
  const shot = path.join(outDir, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });

  const exported = await checkExports(page, { base, adminToken, route, expected, revokeId, partner, partnerExpected, outDir });
  const exportShot = await exportScreenshot(browser, page, exported, outDir);

  if (problems.length) throw new Error(`the page reported problems:\n  ${problems.join('\n  ')}`);
  return { shot, exportShot, hostile: exported.hostile, loadShown, loadCsv: exported.load, modelsShown, budgetsShown, budgetsCsv: exported.budgetsCsv };
}

let browser = null;
const problems = [];
let code = 0;
let timer;
try {
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the test took longer than ${TOTAL_TIMEOUT_MS / 1000} s`)), TOTAL_TIMEOUT_MS);
  });
  const { shot, exportShot, hostile, loadShown, loadCsv, modelsShown, budgetsShown, budgetsCsv } = await Promise.race([run(problems, (b) => { browser = b; }), timeout]);
  console.log(`dashboard ok: route shows its requests (${modelsShown}), principals listed${process.env.EXPECT_PARTNER ? ', partner shows its requests' : ''}, token revoked through the page, no console or CSP errors; load columns: ${loadShown}; budgets: ${budgetsShown}; screenshot ${shot}`);
  console.log(`CSV export ok: routes, endpoints, tokens and budgets files are RFC 4180 with the expected headers and numbers, no cell starts as a formula; hostile text: ${hostile}; load: ${loadCsv}; budgets: ${budgetsCsv}; screenshot ${exportShot}`);
} catch (e) {
  code = 1;
  console.error(`dashboard test FAILED: ${e && e.message ? e.message : e}`);
  if (problems.length && !(e && String(e.message).includes('reported problems'))) console.error(`also seen in the page:\n  ${problems.join('\n  ')}`);
} finally {
  clearTimeout(timer);
  // Closing must not hang the test either.
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5_000)]);
}
process.exit(code);
