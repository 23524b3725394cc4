/**
 * postWebhook against a real HTTP server on 127.0.0.1: success, retry after a 500, timeout,
 * a refused connection — never a throw.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postWebhook } from '../../../broker/alerts/webhook.js';

interface Hit {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

let server: Server;
let base: string;
const hits: Hit[] = [];
/** How the next requests are answered, in order; then 200. */
const script: Array<(res: ServerResponse) => void> = [];

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const next = script.shift();
      if (next) next(res);
      else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('postWebhook', () => {
  test('posts the body as JSON with the given headers', async () => {
    hits.length = 0;
    const r = await postWebhook(`${base}/hook`, { rule: 'gaps', n: 1 }, { headers: { authorization: 'Bearer s3cret' } });
    assert.deepEqual(r, { ok: true, status: 200, attempts: 1 });
    assert.equal(hits.length, 1);
    assert.equal(hits[0]!.method, 'POST');
    assert.equal(hits[0]!.url, '/hook');
    assert.equal(hits[0]!.headers['content-type'], 'application/json');
    assert.equal(hits[0]!.headers.authorization, 'Bearer s3cret');
    assert.deepEqual(JSON.parse(hits[0]!.body), { rule: 'gaps', n: 1 });
  });

  test('a 500 is retried after the backoff, then succeeds', async () => {
    hits.length = 0;
    script.push((res) => res.writeHead(500).end('boom'), (res) => res.writeHead(503).end());
    const t0 = Date.now();
    const r = await postWebhook(`${base}/retry`, { x: 1 }, { retries: 3, backoffMs: 50 });
    assert.deepEqual(r, { ok: true, status: 200, attempts: 3 });
    assert.equal(hits.length, 3);
    assert.ok(Date.now() - t0 >= 50 + 100 - 5, 'waited 50 ms, then 100 ms');
    for (const h of hits) assert.equal(h.body, '{"x":1}');
  });

  test('retries are bounded: always 500 → ok:false after 1 + retries attempts', async () => {
    hits.length = 0;
    for (let k = 0; k < 3; k++) script.push((res) => res.writeHead(500).end());
    const r = await postWebhook(`${base}/down`, {}, { retries: 2, backoffMs: 10 });
    assert.equal(r.ok, false);
    assert.equal(r.status, 500);
    assert.equal(r.attempts, 3);
    assert.match(r.error!, /HTTP 500/);
    assert.equal(hits.length, 3);
  });

  test('a 4xx other than 408/429 is final: no retry', async () => {
    hits.length = 0;
    script.push((res) => res.writeHead(404).end());
    const r = await postWebhook(`${base}/nope`, {}, { retries: 3, backoffMs: 10 });
    assert.equal(r.ok, false);
    assert.equal(r.status, 404);
    assert.equal(r.attempts, 1);
  });

  test('a receiver that never answers: each attempt times out; ok:false', async () => {
    hits.length = 0;
    script.push(() => {}, () => {}); // never respond
    const t0 = Date.now();
    const r = await postWebhook(`${base}/slow`, {}, { timeoutMs: 200, retries: 1, backoffMs: 10 });
    const took = Date.now() - t0;
    assert.equal(r.ok, false);
    assert.equal(r.attempts, 2);
    assert.match(r.error!, /timeout after 200 ms/);
    assert.ok(took >= 400 && took < 5000, String(took));
  });

  test('an unreachable port: ok:false with the reason, no throw', async () => {
    // A port that was just free: listen, note it, close.
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    const r = await postWebhook(`http://127.0.0.1:${port}/`, { a: 1 }, { retries: 2, backoffMs: 10, timeoutMs: 1000 });
    assert.equal(r.ok, false);
    assert.equal(r.attempts, 3);
    assert.equal(r.status, undefined);
    assert.match(r.error!, /ECONNREFUSED|fetch failed/);
  });

  test('not an http(s) URL, or not a URL: ok:false, no attempt', async () => {
    assert.deepEqual(await postWebhook('ftp://127.0.0.1/x', {}), { ok: false, error: 'not an http(s) URL: ftp:', attempts: 0 });
    const r = await postWebhook('not a url', {});
    assert.equal(r.ok, false);
    assert.equal(r.attempts, 0);
  });

  test('an abort signal ends the retries at once', async () => {
    for (let k = 0; k < 5; k++) script.push((res) => res.writeHead(500).end());
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 100);
    const r = await postWebhook(`${base}/abort`, {}, { retries: 4, backoffMs: 10_000, signal: ac.signal });
    assert.equal(r.ok, false);
    assert.equal(r.error, 'aborted');
    assert.ok(Date.now() - t0 < 3000);
    script.length = 0;
  });
});
