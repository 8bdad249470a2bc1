import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** The package root (this file runs from build-test/). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const MODEL = process.env['INFERLINE_TEST_MODEL'] ?? 'smollm2';

export interface Target {
  /** OpenAI base URL, e.g. http://127.0.0.1:PORT/v1 */
  baseURL: string;
  /** Server root (for /health and /slots). */
  root: string;
  /** Stops what this helper started (nothing when INFERLINE_TEST_URL was given). */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((ok) => srv.close(() => ok()));
  return port;
}

/**
 * The server the engine tests talk to: INFERLINE_TEST_URL when set (nothing is started), else
 * `inferline engine --port PORT --parallel 4` from the repository's venv (../../.venv relative to
 * the package; INFERLINE_BIN overrides the executable), polled on /health until it answers 200.
 */
export async function startTarget(): Promise<Target> {
  const given = process.env['INFERLINE_TEST_URL'];
  if (given) {
    const baseURL = given.replace(/\/+$/, '');
    const root = baseURL.replace(/\/v1$/, '');
    await waitHealthy(root, 60_000, null, () => '');
    return { baseURL, root, stop: async () => undefined };
  }
  const bin = process.env['INFERLINE_BIN'] ?? resolve(PACKAGE_ROOT, '..', '..', '.venv', 'bin', 'inferline');
  if (!existsSync(bin)) {
    throw new Error(
      `${bin} not found: create the repository's venv first (make install at the repo root), ` +
        'or set INFERLINE_TEST_URL to a running server, or INFERLINE_BIN to the inferline executable',
    );
  }
  const port = await freePort();
  const child = spawn(bin, ['engine', '--port', String(port), '--parallel', '4'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  let log = '';
  const keep = (b: Buffer): void => {
    log = (log + b.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const root = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(root, 90_000, child, () => log);
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return {
    baseURL: `${root}/v1`,
    root,
    stop: async () => {
      process.off('exit', killOnExit);
      await stopChild(child);
    },
  };
}

async function waitHealthy(root: string, timeoutMs: number, child: ChildProcess | null, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) {
      throw new Error(`the engine exited with ${child.exitCode} before becoming healthy:\n${log()}`);
    }
    try {
      const res = await fetch(`${root}/health`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${root}/health not 200 after ${timeoutMs} ms:\n${log()}`);
    await delay(200);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

export interface Slot {
  id: number;
  is_processing: boolean;
  next_token?: Array<{ n_decoded?: number }>;
}

/** llama.cpp's GET /slots: null when the server has none (e.g. a gateway without it). */
export async function slots(root: string): Promise<Slot[] | null> {
  const res = await fetch(`${root}/slots`);
  if (res.status !== 200) {
    await res.arrayBuffer();
    return null;
  }
  const body: unknown = await res.json();
  return Array.isArray(body) ? (body as Slot[]) : null;
}

/**
 * Poll /slots until no slot is processing (or limitMs). Returns how long that took and how many
 * tokens the busiest slot still decoded after the first poll (null when /slots does not say).
 */
export async function watchSlots(root: string, limitMs: number): Promise<{ ms: number; extraTokens: number | null }> {
  const t0 = performance.now();
  const first = new Map<number, number>();
  let extra: number | null = null;
  for (;;) {
    const s = await slots(root);
    if (s === null) return { ms: 0, extraTokens: 0 };
    for (const slot of s) {
      const decoded = slot.next_token?.[0]?.n_decoded;
      if (!slot.is_processing || typeof decoded !== 'number') continue;
      if (!first.has(slot.id)) first.set(slot.id, decoded);
      extra = Math.max(extra ?? 0, decoded - (first.get(slot.id) ?? decoded));
    }
    if (s.every((x) => !x.is_processing)) return { ms: performance.now() - t0, extraTokens: extra ?? 0 };
    if (performance.now() - t0 > limitMs) return { ms: Infinity, extraTokens: extra };
    await delay(25);
  }
}

/** Poll /slots until no slot is processing; the milliseconds it took (Infinity past the limit). */
export async function waitSlotsIdle(root: string, limitMs: number): Promise<number> {
  return (await watchSlots(root, limitMs)).ms;
}

/**
 * A fetch that wraps the response body in a pull-only stream (highWaterMark 0) counting what the
 * client pulls: `reads` and `bytes` only grow when the client itself asks for the next chunk.
 */
export function countingFetch(): { fetch: typeof fetch; stats: { reads: number; bytes: number } } {
  const stats = { reads: 0, bytes: 0 };
  const wrapped: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    if (res.body === null) return res;
    const src = res.body.getReader();
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          const { done, value } = await src.read();
          if (done) {
            controller.close();
            return;
          }
          stats.reads += 1;
          stats.bytes += value.byteLength;
          controller.enqueue(value);
        },
        cancel(reason) {
          return src.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  return { fetch: wrapped, stats };
}

export type Handler = (req: IncomingMessage, res: ServerResponse, n: number, body: Record<string, unknown>) => unknown;

export interface FakeServer {
  baseURL: string;
  /** Requests received so far. */
  requests: Array<{ at: number; headers: IncomingMessage['headers']; body: Record<string, unknown> }>;
  /** Set when a client closed its connection before the response ended. */
  closedEarly: number;
  close(): Promise<void>;
}

/** A scripted local OpenAI-like server: `handler` gets each request with its 1-based number. */
export async function fakeServer(handler: Handler): Promise<FakeServer> {
  const state: FakeServer = {
    baseURL: '',
    requests: [],
    closedEarly: 0,
    close: async () => undefined,
  };
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        // not JSON
      }
      state.requests.push({ at: performance.now(), headers: req.headers, body });
      res.on('close', () => {
        if (!res.writableFinished) state.closedEarly += 1;
      });
      Promise.resolve(handler(req, res, state.requests.length, body)).catch((err: unknown) => {
        res.destroy(err instanceof Error ? err : new Error(String(err)));
      });
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  state.baseURL = `http://127.0.0.1:${port}/v1`;
  state.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  };
  return state;
}

export function sseHeaders(res: ServerResponse, extra: Record<string, string> = {}): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...extra });
  res.flushHeaders();
}

export function chunk(content: string | null, finish: string | null = null): string {
  const delta = content === null ? {} : { content };
  return `data: ${JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion.chunk', model: 'fake', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
}

export function usageChunk(prompt: number, completion: number): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } })}\n\n`;
}

/** A whole, well-formed stream of `words` ending with finish_reason stop, usage and [DONE]. */
export function fullStream(words: string[]): string {
  return words.map((w) => chunk(w)).join('') + chunk(null, 'stop') + usageChunk(5, words.length) + 'data: [DONE]\n\n';
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Wait until `cond()` or the limit; true when it held. */
export async function until(cond: () => boolean, limitMs: number): Promise<boolean> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > limitMs) return false;
    await delay(10);
  }
  return true;
}

/**
 * The JS heap in use after a full GC (gc exposed at run time through v8 flags). Array buffers are
 * left out: Node's own socket buffers come and go there whatever the client does.
 */
export function liveHeap(): number {
  const g = (globalThis as { gc?: () => void }).gc ?? exposeGc();
  g();
  return process.memoryUsage().heapUsed;
}

function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
