/**
 * The built package in a real browser (headless Chromium), unbundled: an import map points
 * `@inferline/client` at dist/ and `eventsource-parser` at node_modules. One local server serves
 * the page and scripts and plays the OpenAI API (same origin, so no CORS); the page reports its
 * results back with a POST. Skipped when no Chromium is installed (CHROME_BIN, or chromium /
 * chromium-browser / google-chrome on PATH); INFERLINE_SKIP_BROWSER=1 skips it too.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { chunk, fullStream, json, PACKAGE_ROOT, sseHeaders } from './helpers.js';

function findChromium(): string | null {
  if (process.env['INFERLINE_SKIP_BROWSER'] === '1') return null;
  const candidates = [process.env['CHROME_BIN'], 'chromium', 'chromium-browser', 'google-chrome'].filter(Boolean) as string[];
  for (const c of candidates) {
    const r = spawnSync('sh', ['-c', `command -v "${c}"`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

const PAGE = `<!doctype html><meta charset="utf-8">
<script type="importmap">{"imports": {
  "@inferline/client": "/pkg/dist/index.js",
  "eventsource-parser": "/pkg/node_modules/eventsource-parser/dist/index.js"
}}</script>
<script type="module">
import { InferlineClient, RateLimitError, StreamError, AbortError } from '@inferline/client';
const out = {};
const report = () => fetch('/report', { method: 'POST', body: JSON.stringify(out) });
try {
  const client = new InferlineClient({ baseURL: location.origin + '/v1', model: 'fake', retry: { initialDelayMs: 10 } });
  // 1. a 429 with Retry-After: 1, then a clean stream
  const t0 = performance.now();
  const s = client.stream({ messages: [{ role: 'user', content: 'hi' }] });
  const deltas = [];
  for await (const d of s) deltas.push(d);
  out.retry = { deltas, waitedMs: performance.now() - t0, attempts: s.attempts, backend: s.backend, model: s.model,
    finishReason: s.finishReason, usage: s.usage };
  // 2. break out of an endless stream
  let n = 0;
  const s2 = client.stream({ messages: [{ role: 'user', content: 'endless' }] });
  for await (const _ of s2) if (++n === 3) break;
  out.broke = { n, cancelled: s2.cancelled };
  // 3. a stream cut after its first token
  try {
    for await (const _ of client.stream({ messages: [{ role: 'user', content: 'cut' }] }));
    out.cut = 'no error';
  } catch (e) { out.cut = { name: e.name, kind: e.kind, partialText: e.partialText, isStreamError: e instanceof StreamError }; }
  // 4. an AbortSignal
  const ac = new AbortController();
  try {
    for await (const _ of client.stream({ messages: [{ role: 'user', content: 'endless' }], signal: ac.signal })) ac.abort();
  } catch (e) { out.aborted = e instanceof AbortError; }
  out.ok = true;
} catch (e) {
  out.error = String(e && e.stack || e);
}
await report();
</script>`;

test('the package works in a real browser (headless Chromium)', { timeout: 60_000 }, async (t) => {
  const chromium = findChromium();
  if (chromium === null) {
    t.skip('no Chromium found (set CHROME_BIN, or install chromium)');
    return;
  }
  let results: Record<string, unknown> | null = null;
  let closedEarly = 0;
  let n429 = 0;
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      void (async () => {
        const url = req.url ?? '/';
        if (url === '/') {
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end(PAGE);
        } else if (url.startsWith('/pkg/')) {
          const file = join(PACKAGE_ROOT, url.slice('/pkg/'.length));
          try {
            const body = await readFile(file);
            res.writeHead(200, { 'content-type': 'text/javascript' });
            res.end(body);
          } catch {
            res.writeHead(404).end();
          }
        } else if (url === '/report') {
          results = JSON.parse(raw) as Record<string, unknown>;
          res.writeHead(204).end();
        } else if (url === '/v1/chat/completions') {
          const body = JSON.parse(raw) as { messages: Array<{ content: string }> };
          const what = body.messages[0]?.content;
          if (what === 'hi' && n429++ === 0) return json(res, 429, { error: { message: 'slow down', type: 'rate_limit_error' } }, { 'retry-after': '1' });
          if (what === 'hi') {
            sseHeaders(res, { 'x-inferline-backend': 'b0', 'x-inferline-model': 'smollm2' });
            res.end(fullStream(['Hello', ' from', ' the', ' browser']));
          } else if (what === 'cut') {
            sseHeaders(res);
            res.write(chunk('partial'));
            await delay(50);
            res.socket?.destroy();
          } else {
            res.on('close', () => {
              if (!res.writableFinished) closedEarly += 1;
            });
            sseHeaders(res);
            await drip(res);
          }
        } else {
          res.writeHead(404).end();
        }
      })();
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  const browser = spawn(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
    `--user-data-dir=${join(PACKAGE_ROOT, 'build-test', '.chromium')}`, `http://127.0.0.1:${port}/`], { stdio: 'ignore' });
  try {
    const t0 = Date.now();
    while (results === null && Date.now() - t0 < 45_000 && browser.exitCode === null) await delay(50);
    assert.ok(results, `no report from the page (chromium exit ${browser.exitCode})`);
    const r = results as Record<string, any>;
    assert.equal(r['error'], undefined, String(r['error']));
    assert.deepEqual(r['retry'].deltas, ['Hello', ' from', ' the', ' browser']);
    assert.ok(r['retry'].waitedMs >= 990, `waited ${r['retry'].waitedMs} ms`);
    assert.deepEqual([r['retry'].attempts, r['retry'].backend, r['retry'].model, r['retry'].finishReason], [2, 'b0', 'smollm2', 'stop']);
    assert.deepEqual(r['broke'], { n: 3, cancelled: true });
    assert.deepEqual(r['cut'], { name: 'StreamError', kind: 'connection', partialText: 'partial', isStreamError: true });
    assert.equal(r['aborted'], true);
    const t1 = Date.now();
    while (closedEarly < 2 && Date.now() - t1 < 2000) await delay(20);
    assert.ok(closedEarly >= 2, 'break and abort closed their requests');
    t.diagnostic(`chromium: ${chromium}`);
  } finally {
    browser.kill('SIGKILL');
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
});

async function drip(res: ServerResponse): Promise<void> {
  for (let i = 0; i < 500 && !res.destroyed; i++) {
    res.write(chunk('x'));
    await delay(10);
  }
  res.end();
}
