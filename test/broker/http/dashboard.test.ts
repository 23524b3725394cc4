/**
 * The dashboard page (broker/http/dashboard.html) in real headless Chromium (Debian `chromium` +
 * playwright-core, DESIGN §4), against a real broker and its HTTP API: sign in with a token, the
 * panels render, a message published over MQTT during the test shows up in the live feed, a device
 * added through the API shows up in the devices table, no console error, no request leaves the
 * broker's origin. A screenshot is kept as a test artifact: test-artifacts/dashboard.png.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync, readFileSync } from 'node:fs';
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { chromium, type Browser, type Page } from 'playwright-core';
import { tempDir } from '../../helpers/tmp.js';
import { startBroker, type RunningBroker } from '../../../broker/server.js';
import { startHttpApi, type HttpApi } from '../../../broker/http/server.js';
import { dashboardHtml, dashboardHtmlPaths } from '../../../broker/http/dashboard.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'];
const ARTIFACTS = fileURLToPath(new URL('../../../../test-artifacts/', import.meta.url));
const SHOT = join(ARTIFACTS, 'dashboard.png');

const sha256hex = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

describe('dashboard page', () => {
  test('dashboardHtml() returns one self-contained page (no external URL)', () => {
    const html = dashboardHtml();
    assert.ok(dashboardHtmlPaths().some((p) => existsSync(p)));
    assert.match(html, /^<!doctype html>/i);
    assert.equal(dashboardHtml(), html, 'read once, then cached');
    // No remote resources: no http(s) URL, no protocol-relative src/href, no @import.
    assert.doesNotMatch(html, /https?:\/\//i);
    assert.doesNotMatch(html, /\b(src|href)\s*=\s*["']?\/\//i);
    assert.doesNotMatch(html, /@import/i);
    // Data reaches the DOM as text only.
    assert.doesNotMatch(html, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });

  test('in headless Chromium: sign in, live feed shows a message published now, devices and verdicts render, screenshot', {
    skip: !existsSync(CHROMIUM) && `${CHROMIUM} not installed (Debian package chromium)`,
    timeout: 120_000,
  }, async (t) => {
    const dataDir = tempDir(t, 'witness-dashboard-');
    const broker: RunningBroker = await startBroker({ dataDir, listeners: [{ type: 'mqtt', host: '127.0.0.1', port: 0 }] });
    let http: HttpApi | undefined;
    let browser: Browser | undefined;
    const clients: mqtt.MqttClient[] = [];
    t.after(async () => {
      for (const c of clients) await c.endAsync(true).catch(() => {});
      await browser?.close().catch(() => {});
      await http?.close().catch(() => {});
      await broker.stop('test end').catch(() => {});
    });

    const token = randomBytes(32).toString('base64url');
    http = await startHttpApi({
      host: '127.0.0.1',
      port: 0,
      dataDir,
      broker,
      tokens: [{ name: 'dash-admin', role: 'admin', sha256: sha256hex(token) }],
      metricsWithoutToken: false,
      version: JSON.parse(readFileSync(fileURLToPath(new URL('../../../../package.json', import.meta.url)), 'utf8')).version,
      dashboardHtml,
    });
    const origin = new URL(http.url).origin;

    // A registered device (through the API, as an admin would), so the devices table has a row.
    const deviceId = `dash-dev-${randomBytes(3).toString('hex')}`;
    const jwk = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
    const added = await fetch(`${http.url}/api/v1/devices`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: deviceId, publicKey: jwk.x }),
    });
    assert.equal(added.status, 200, await added.text());

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
    const context = await browser.newContext({ viewport: { width: 1366, height: 860 } });
    const page: Page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    const foreign: string[] = [];
    const requests: string[] = [];
    page.on('request', (r) => {
      const url = r.url();
      requests.push(url);
      if (url.startsWith('data:') || url === 'about:blank') return;
      if (new URL(url).origin !== origin) foreign.push(url);
    });

    // The page is served without a token and asks for one.
    const resp = await page.goto(`${http.url}/`, { timeout: 15_000 });
    assert.equal(resp?.status(), 200);
    await page.locator('#token-input').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#app').isVisible(), false, 'no panel before sign-in');
    await page.fill('#token-input', token);
    await page.click('#login-submit');

    for (const panel of ['#p-feed', '#p-health', '#p-verdicts', '#p-devices', '#p-alerts']) {
      await page.locator(panel).waitFor({ state: 'visible' });
    }
    assert.equal(await page.evaluate(`sessionStorage.getItem('mqtt-witness.dashboard.token') !== null`), true, 'token kept for the tab');
    await page.waitForFunction(`document.getElementById('h-stream')?.textContent === 'live'`, null, { timeout: 15_000 });
    await page.waitForFunction(`document.getElementById('h-node')?.textContent === ${JSON.stringify(broker.nodeId)}`, null, { timeout: 15_000 });
    // An admin token: the operator-only parts are there, no "needs role" note.
    await page.locator('#verify-btn').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#alerts-note', { hasText: 'role' }).count(), 0);

    // Publish during the test, on a topic nobody else uses; the live feed must show it.
    const topic = `dash/${randomUUID()}`;
    const pub = await mqtt.connectAsync(broker.urls[0]!, { clientId: `dash-pub-${randomBytes(3).toString('hex')}`, reconnectPeriod: 0, connectTimeout: 5_000 });
    clients.push(pub);
    await pub.publishAsync(topic, JSON.stringify({ temp: 21.5 }), { qos: 1 });
    const row = page.locator('#feed-body tr', { hasText: topic }).first();
    await row.waitFor({ state: 'visible', timeout: 20_000 });
    const rowText = await row.innerText();
    assert.match(rowText, /publish/);
    assert.match(rowText, /missing/, 'verdict badge of an unsigned message');
    // A few more, from a second client, so the screenshot shows a feed with some life in it.
    const pub2 = await mqtt.connectAsync(broker.urls[0]!, { clientId: 'dash-sensor-2', reconnectPeriod: 0, connectTimeout: 5_000 });
    clients.push(pub2);
    for (let k = 0; k < 5; k++) await pub2.publishAsync(`plant/line-${k % 2}/temperature`, String(20 + k), { qos: 1 });
    await page.locator('#feed-body tr', { hasText: 'plant/line-1/temperature' }).first().waitFor({ state: 'visible', timeout: 20_000 });

    // The filter box narrows the feed to the matching rows.
    await page.fill('#feed-filter', topic);
    await page.waitForFunction(`[...document.querySelectorAll('#feed-body tr')].filter((r) => !r.hidden).length === 1`, null, { timeout: 5_000 });
    await page.fill('#feed-filter', '');
    await page.locator('#feed-filter').blur();

    // Devices: the registered device has a row. Verdicts: the publishes were counted.
    await page.locator('#devices-body tr', { hasText: deviceId }).waitFor({ state: 'visible', timeout: 15_000 });
    await page.waitForFunction(`/missing/.test(document.getElementById('verdict-bars')?.textContent ?? '')`, null, { timeout: 20_000 });
    const health = await page.locator('#health-body').innerText();
    assert.match(health, /Last checkpoint/);
    assert.match(await page.locator('#h-size').innerText(), /^\d[\d,]*$/);
    await page.waitForFunction(`/record/.test(document.getElementById('stats-chips')?.textContent ?? '')`, null, { timeout: 15_000 });

    // Every value went in as text: a topic with markup is shown literally, not parsed.
    const markupTopic = `dash/<img src=x onerror=alert(1)>/${randomBytes(3).toString('hex')}`;
    await pub.publishAsync(markupTopic, 'x', { qos: 1 });
    await page.locator('#feed-body td', { hasText: markupTopic }).first().waitFor({ state: 'visible', timeout: 20_000 });
    assert.equal(await page.locator('#feed-body img').count(), 0);

    // "Verify now" (operator) runs a verification of the whole ledger; the panel shows its result.
    await page.click('#verify-btn');
    await page.waitForFunction(`/^OK/.test(document.getElementById('l-verif')?.textContent ?? '')`, null, { timeout: 30_000 });
    await page.waitForFunction(`/the ledger verifies/.test(document.getElementById('verify-status')?.textContent ?? '')`, null, { timeout: 15_000 });

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.mouse.move(0, 0);
    await page.screenshot({ path: SHOT, timeout: 15_000 });
    const st = statSync(SHOT);
    assert.ok(st.size > 20_000, `screenshot ${SHOT} is ${st.size} bytes`);
    assert.deepEqual([...readFileSync(SHOT).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG file');

    // Sign out forgets the token and shows the prompt again.
    await page.click('#signout');
    await page.locator('#token-input').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(`sessionStorage.getItem('mqtt-witness.dashboard.token')`), null);

    assert.deepEqual(consoleErrors, [], 'no console errors');
    assert.deepEqual(foreign, [], 'no request leaves the broker origin');
    assert.ok(requests.some((u) => u.startsWith(`${origin}/api/v1/stream`)), 'the page used the live stream');
  });
});
