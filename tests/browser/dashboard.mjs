// Browser test of the Model Endpoints dashboard (`GET /_gateway/dashboard`),
// driven by playwright-core with the system Chromium.
//
// Env: GATEWAY_URL, ADMIN_TOKEN, EXPECT_ROUTE, EXPECT_REQUESTS, REVOKE_TOKEN_ID,
// OUT_DIR (dashboard.png is written there); CHROMIUM (default /usr/bin/chromium);
// optional EXPECT_PARTNER with EXPECT_PARTNER_REQUESTS.
//
// It fails on any console error (Chromium reports Content-Security-Policy
// violations as console errors) or uncaught page error; checks the page's CSP
// header; signs in; waits for EXPECT_ROUTE's card to show EXPECT_REQUESTS; checks
// that the principals panel lists at least one principal and, when EXPECT_PARTNER
// is set, that the partner's card shows EXPECT_PARTNER_REQUESTS; revokes
// REVOKE_TOKEN_ID through the page and checks through the admin API that it is
// revoked; saves a full-page screenshot at 1280x900.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
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

  if (problems.length) throw new Error(`the page reported problems:\n  ${problems.join('\n  ')}`);
  return { shot };
}

let browser = null;
const problems = [];
let code = 0;
let timer;
try {
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the test took longer than ${TOTAL_TIMEOUT_MS / 1000} s`)), TOTAL_TIMEOUT_MS);
  });
  const { shot } = await Promise.race([run(problems, (b) => { browser = b; }), timeout]);
  console.log(`dashboard ok: route shows its requests, principals listed${process.env.EXPECT_PARTNER ? ', partner shows its requests' : ''}, token revoked through the page, no console or CSP errors; screenshot ${shot}`);
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
