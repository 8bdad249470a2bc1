/**
 * The client against a scripted local node:http server: retries, Retry-After, failures after the
 * first token, error mapping, timeouts, budgets, cancellation and backpressure, each made to happen.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import {
  AbortError,
  APIConnectionError,
  AuthenticationError,
  BadRequestError,
  Budget,
  BudgetExceededError,
  ConnectTimeoutError,
  type CompletionStream,
  IdleTimeoutError,
  InferlineClient,
  type InferlineError,
  NotFoundError,
  RateLimitError,
  type RetryInfo,
  ServerError,
  ServiceUnavailableError,
  StreamError,
  TotalTimeoutError,
} from '@inferline/client';

import { chunk, countingFetch, fakeServer, type FakeServer, fullStream, json, liveHeap, sseHeaders, until, usageChunk } from './helpers.js';

const servers: FakeServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function serve(handler: Parameters<typeof fakeServer>[0]): Promise<FakeServer> {
  const s = await fakeServer(handler);
  servers.push(s);
  return s;
}

function client(s: FakeServer | string, extra: Partial<ConstructorParameters<typeof InferlineClient>[0]> = {}): InferlineClient {
  return new InferlineClient({
    baseURL: typeof s === 'string' ? s : s.baseURL,
    model: 'fake',
    retry: { initialDelayMs: 20, maxDelayMs: 100 },
    ...extra,
  });
}

const msgs = [{ role: 'user' as const, content: 'hi' }];

async function collect(s: CompletionStream): Promise<string[]> {
  const out: string[] = [];
  for await (const d of s) out.push(d);
  return out;
}

/** Runs the stream to its end; returns the deltas seen and the error it threw. */
async function collectError<E extends Error>(s: CompletionStream, cls: abstract new (...a: never[]) => E): Promise<{ deltas: string[]; err: E }> {
  const deltas: string[] = [];
  try {
    for await (const d of s) deltas.push(d);
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    return { deltas, err };
  }
  assert.fail(`expected ${cls.name}, the stream ended cleanly`);
}

/** Write SSE chunks with a pause between them; stops quietly when the client goes away. */
async function drip(res: ServerResponse, parts: string[], gapMs: number): Promise<void> {
  for (const p of parts) {
    if (res.destroyed) return;
    res.write(p);
    await delay(gapMs);
  }
}

describe('retries', () => {
  test('429 Retry-After: 1, then 503, then success: waits as told, one clean stream', async () => {
    const words = ['Hello', ' there', ',', ' friend'];
    const s = await serve((_req, res, n) => {
      if (n === 1) return json(res, 429, { error: { message: 'slow down', type: 'rate_limit_error', param: null, code: 'rate_limited' } }, { 'retry-after': '1' });
      if (n === 2) return json(res, 503, { error: { message: 'no backend', type: 'service_unavailable', param: null, code: 'no_backend' } });
      sseHeaders(res);
      res.end(fullStream(words));
    });
    const retries: RetryInfo[] = [];
    const stream = client(s, { onRetry: (i) => retries.push(i) }).stream({ messages: msgs });
    const deltas = await collect(stream);
    assert.deepEqual(deltas, words, 'every delta exactly once');
    assert.equal(stream.attempts, 3);
    assert.equal(s.requests.length, 3);
    const [r1, r2] = s.requests;
    assert.ok(r2!.at - r1!.at >= 990, `waited ${r2!.at - r1!.at} ms after Retry-After: 1`);
    assert.deepEqual(retries.map((r) => [r.attempt, r.fromRetryAfter, r.error.constructor.name]), [
      [1, true, 'RateLimitError'],
      [2, false, 'ServiceUnavailableError'],
    ]);
    assert.equal(retries[0]!.delayMs, 1000);
    assert.equal(stream.finishReason, 'stop');
    assert.equal(stream.usage?.completion_tokens, words.length);
    assert.ok(stream.ttftMs !== null && stream.ttftMs >= 1000, 'ttft counts from the start of the call');
  });

  test('a Retry-After longer than maxRetryAfterMs is not waited for', async () => {
    const s = await serve((_req, res) => json(res, 429, { error: { message: 'later', type: 'rate_limit_error' } }, { 'retry-after': '3600' }));
    const t0 = performance.now();
    const { err } = await collectError(client(s).stream({ messages: msgs }), RateLimitError);
    assert.ok(performance.now() - t0 < 500);
    assert.equal(err.retryAfterMs, 3_600_000);
    assert.equal(err.status, 429);
    assert.equal(err.attempts, 1);
    assert.equal(s.requests.length, 1);
  });

  test('a failure after the first token is never retried: StreamError with the partial text', async () => {
    const s = await serve(async (_req, res) => {
      sseHeaders(res);
      res.write(chunk('Hello'));
      res.write(chunk(' world'));
      await delay(50);
      res.socket?.destroy();
    });
    const stream = client(s).stream({ messages: msgs });
    const { deltas, err } = await collectError(stream, StreamError);
    assert.deepEqual(deltas, ['Hello', ' world']);
    assert.equal(err.kind, 'connection');
    assert.equal(err.partialText, 'Hello world');
    assert.equal(s.requests.length, 1);
    assert.equal(stream.text, 'Hello world');
  });

  test('a stream that ends without [DONE] is an error, never a clean end', async () => {
    const s = await serve((_req, res) => {
      sseHeaders(res);
      res.end(chunk('Hello') + chunk(' world') + chunk(null, 'stop'));
    });
    const { deltas, err } = await collectError(client(s).stream({ messages: msgs }), StreamError);
    assert.equal(deltas.length, 2);
    assert.equal(err.kind, 'truncated');
    assert.equal(err.partialText, 'Hello world');
    assert.equal(s.requests.length, 1);
  });

  test('a truncated stream before the first token is retried', async () => {
    const s = await serve((_req, res, n) => {
      sseHeaders(res);
      if (n === 1) res.end(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: null } }] })}\n\n`);
      else res.end(fullStream(['ok']));
    });
    assert.deepEqual(await collect(client(s).stream({ messages: msgs })), ['ok']);
    assert.equal(s.requests.length, 2);
  });

  test('an SSE error event mid-stream: StreamError with the OpenAI error body and the partial text', async () => {
    const s = await serve((_req, res) => {
      sseHeaders(res);
      const err = { error: { message: 'engine died', type: 'upstream_error', param: null, code: 'stream_interrupted' } };
      res.end(chunk('Hel') + chunk('lo') + `data: ${JSON.stringify(err)}\n\n`);
    });
    const { err } = await collectError(client(s).stream({ messages: msgs }), StreamError);
    assert.equal(err.kind, 'event');
    assert.deepEqual([err.type, err.code, err.error?.message], ['upstream_error', 'stream_interrupted', 'engine died']);
    assert.equal(err.partialText, 'Hello');
    assert.equal(s.requests.length, 1);
  });

  test('an error event before the first token: retried when transient, not when the request is bad', async () => {
    const transient = await serve((_req, res, n) => {
      sseHeaders(res);
      if (n === 1) res.end(`data: ${JSON.stringify({ error: { message: 'busy', type: 'server_error', code: 500 } })}\n\n`);
      else res.end(fullStream(['ok']));
    });
    assert.deepEqual(await collect(client(transient).stream({ messages: msgs })), ['ok']);
    assert.equal(transient.requests.length, 2);

    const bad = await serve((_req, res) => {
      sseHeaders(res);
      res.end(`data: ${JSON.stringify({ error: { message: 'bad', type: 'invalid_request_error', code: 'x' } })}\n\n`);
    });
    const { err } = await collectError(client(bad).stream({ messages: msgs }), StreamError);
    assert.equal(err.transient, false);
    assert.equal(bad.requests.length, 1);
  });

  test('5xx is retried up to maxRetries, then thrown', async () => {
    const s = await serve((_req, res) => json(res, 500, { error: { message: 'boom', type: 'server_error', param: null, code: null } }));
    const { err } = await collectError(client(s).stream({ messages: msgs, retry: { maxRetries: 2 } }), ServerError);
    assert.equal(err.status, 500);
    assert.equal(err.attempts, 3);
    assert.equal(s.requests.length, 3);
  });

  test('connection refused: APIConnectionError after the retries', async () => {
    const s = await serve((_req, res) => json(res, 200, {}));
    const url = s.baseURL;
    await s.close();
    const { err } = await collectError(client(url).stream({ messages: msgs }), APIConnectionError);
    assert.equal(err.attempts, 3);
    assert.ok(err.cause !== undefined);
  });
});

describe('error bodies map to typed errors', () => {
  const cases: Array<[number, abstract new (...a: never[]) => InferlineError, Record<string, unknown>]> = [
    [400, BadRequestError, { message: 'max_tokens too big', type: 'invalid_request_error', param: 'max_tokens', code: 'context_length_exceeded' }],
    [401, AuthenticationError, { message: 'bad key', type: 'authentication_error', param: null, code: 'invalid_api_key' }],
    [404, NotFoundError, { message: 'no such model', type: 'invalid_request_error', param: 'model', code: 'model_not_found' }],
  ];
  for (const [status, cls, error] of cases) {
    test(`${status} -> ${cls.name}, not retried`, async () => {
      const s = await serve((_req, res) => json(res, status, { error }));
      const { err } = await collectError(client(s).stream({ messages: msgs }), cls);
      const e = err as unknown as { status: number; type: unknown; code: unknown; param: unknown; error: { message: string } };
      assert.deepEqual([e.status, e.type, e.code, e.param, e.error.message], [status, error['type'], error['code'], error['param'], error['message']]);
      assert.equal(s.requests.length, 1);
    });
  }
  test('503 with Retry-After, retries exhausted -> ServiceUnavailableError with retryAfterMs', async () => {
    const s = await serve((_req, res) => json(res, 503, { error: { message: 'draining', type: 'service_unavailable', code: 'shutting_down' } }, { 'retry-after': '0' }));
    const { err } = await collectError(client(s).stream({ messages: msgs, retry: { maxRetries: 1 } }), ServiceUnavailableError);
    assert.equal(err.retryAfterMs, 0);
    assert.equal(err.code, 'shutting_down');
    assert.equal(s.requests.length, 2);
  });
});

describe('timeouts', () => {
  test('no first token in time: retried, and the stalled request is closed', async () => {
    const s = await serve((_req, res, n) => {
      sseHeaders(res);
      if (n === 1) return; // headers, then nothing
      res.end(fullStream(['late', ' but', ' fine']));
    });
    const stream = client(s).stream({ messages: msgs, timeouts: { firstTokenMs: 200 } });
    assert.deepEqual(await collect(stream), ['late', ' but', ' fine']);
    assert.equal(stream.attempts, 2);
    assert.ok(await until(() => s.closedEarly === 1, 1000), 'the stalled request was aborted');
  });

  test('no headers in time: ConnectTimeoutError', async () => {
    const s = await serve(() => undefined); // never answers
    const { err } = await collectError(client(s).stream({ messages: msgs, timeouts: { connectMs: 150 }, retry: { maxRetries: 1 } }), ConnectTimeoutError);
    assert.equal(err.timeoutMs, 150);
    assert.equal(err.attempts, 2);
  });

  test('a stall between chunks: IdleTimeoutError with the partial text, not retried', async () => {
    const s = await serve((_req, res) => {
      sseHeaders(res);
      res.write(chunk('one'));
    });
    const { err } = await collectError(client(s).stream({ messages: msgs, timeouts: { idleMs: 200 } }), IdleTimeoutError);
    assert.equal(err.partialText, 'one');
    assert.equal(s.requests.length, 1);
    assert.ok(await until(() => s.closedEarly === 1, 1000));
  });

  test('a slow consumer never trips the idle timeout', async () => {
    const s = await serve((_req, res) => {
      sseHeaders(res);
      res.end(fullStream(['a', 'b', 'c']));
    });
    const stream = client(s).stream({ messages: msgs, timeouts: { idleMs: 100 } });
    const got: string[] = [];
    for await (const d of stream) {
      got.push(d);
      await delay(250);
    }
    assert.deepEqual(got, ['a', 'b', 'c']);
  });

  test('total timeout: TotalTimeoutError, never retried', async () => {
    const s = await serve(async (_req, res) => {
      sseHeaders(res);
      await drip(res, Array.from({ length: 100 }, () => chunk('x')), 20);
    });
    const t0 = performance.now();
    const { deltas, err } = await collectError(client(s).stream({ messages: msgs, timeouts: { totalMs: 300 } }), TotalTimeoutError);
    assert.ok(performance.now() - t0 < 1000);
    assert.ok(deltas.length > 0);
    assert.equal(err.partialText, deltas.join(''));
    assert.equal(s.requests.length, 1);
  });
});

describe('budgets', () => {
  /** A server that ignores max_tokens and streams `n` words slowly. */
  const runaway = (n: number) => async (_req: unknown, res: ServerResponse) => {
    sseHeaders(res);
    await drip(res, Array.from({ length: n }, (_, i) => chunk(` w${i}`)), 5);
    res.end(chunk(null, 'stop') + usageChunk(1, n) + 'data: [DONE]\n\n');
  };

  test('a shared budget stops the stream exactly at the budget and aborts the request', async () => {
    const s = await serve(runaway(200));
    const budget = new Budget(5);
    const stream = client(s, { budget }).stream({ messages: msgs, maxTokens: 100 });
    const { deltas, err } = await collectError(stream, BudgetExceededError);
    assert.equal(deltas.length, 5);
    assert.equal(err.partialText, deltas.join(''));
    assert.equal(err.scope, 'budget');
    assert.deepEqual([budget.used, budget.remaining], [5, 0]);
    assert.equal(s.requests[0]!.body['max_tokens'], 5, 'asks the server for no more than the budget');
    assert.ok(await until(() => s.closedEarly === 1, 1000), 'the request was aborted');
  });

  test('an empty budget fails before sending anything', async () => {
    const s = await serve(runaway(3));
    const budget = new Budget(0);
    await collectError(client(s, { budget }).stream({ messages: msgs }), BudgetExceededError);
    assert.equal(s.requests.length, 0);
  });

  test('a budget shared by concurrent streams: their deltas add up to it exactly', async () => {
    const s = await serve(runaway(200));
    const budget = new Budget(30);
    const c = client(s, { budget });
    const results = await Promise.all([0, 1, 2].map(() => collectError(c.stream({ messages: msgs }), BudgetExceededError)));
    assert.equal(results.reduce((n, r) => n + r.deltas.length, 0), 30);
    assert.equal(budget.used, 30);
    assert.ok(await until(() => s.closedEarly === 3, 1000));
  });

  test('the per-call maxTokens is enforced even on a server that ignores it', async () => {
    const s = await serve(runaway(50));
    const { deltas, err } = await collectError(client(s).stream({ messages: msgs, maxTokens: 3 }), BudgetExceededError);
    assert.equal(deltas.length, 3);
    assert.equal(err.scope, 'call');
    assert.equal(s.requests[0]!.body['max_tokens'], 3);
  });

  test('usage corrects the per-delta count; an answer that fits ends cleanly', async () => {
    const s = await serve((_req, res) => {
      sseHeaders(res);
      res.end(chunk('a') + chunk('b') + chunk(null, 'stop') + usageChunk(3, 4) + 'data: [DONE]\n\n');
    });
    const budget = new Budget(10);
    const stream = client(s, { budget }).stream({ messages: msgs });
    assert.deepEqual(await collect(stream), ['a', 'b']);
    assert.equal(budget.used, 4);
  });

  test('a server that honours the budget max_tokens ends with length: BudgetExceededError', async () => {
    const s = await serve((_req, res, _n, body) => {
      const max = body['max_tokens'] as number;
      sseHeaders(res);
      res.end(Array.from({ length: max }, () => chunk('t')).join('') + chunk(null, 'length') + usageChunk(3, max) + 'data: [DONE]\n\n');
    });
    const budget = new Budget(4);
    const { deltas, err } = await collectError(client(s, { budget }).stream({ messages: msgs }), BudgetExceededError);
    assert.equal(deltas.length, 4);
    assert.equal(err.partialText, 'tttt');
    assert.equal(budget.remaining, 0);
  });
});

describe('cancellation', () => {
  const endless = async (_req: unknown, res: ServerResponse): Promise<void> => {
    sseHeaders(res);
    await drip(res, Array.from({ length: 500 }, () => chunk('x')), 10);
  };

  test('break aborts the request at once', async () => {
    const s = await serve(endless);
    const stream = client(s).stream({ messages: msgs });
    let n = 0;
    for await (const _ of stream) if (++n === 3) break;
    assert.ok(stream.cancelled);
    assert.ok(stream.done);
    assert.ok(await until(() => s.closedEarly === 1, 500), 'the server saw the connection close');
  });

  test('cancel() while a next() is pending ends the loop quietly', async () => {
    const s = await serve(async (_req, res) => {
      sseHeaders(res);
      res.write(chunk('first'));
      // then silence
    });
    const stream = client(s).stream({ messages: msgs });
    const got: string[] = [];
    setTimeout(() => stream.cancel(), 150);
    for await (const d of stream) got.push(d);
    assert.deepEqual(got, ['first']);
    assert.ok(stream.cancelled);
    assert.ok(await until(() => s.closedEarly === 1, 500));
  });

  test('an AbortSignal: AbortError with the partial text, request aborted', async () => {
    const s = await serve(endless);
    const ac = new AbortController();
    const stream = client(s).stream({ messages: msgs, signal: ac.signal });
    const got: string[] = [];
    await assert.rejects(async () => {
      for await (const d of stream) {
        got.push(d);
        if (got.length === 2) setTimeout(() => ac.abort(new Error('user left')), 30);
      }
    }, (err: unknown) => err instanceof AbortError && err.partialText === got.join('') && (err.cause as Error).message === 'user left');
    assert.ok(await until(() => s.closedEarly === 1, 500));
  });

  test('an abort while the consumer holds a delta stops before the rest of that network read', async () => {
    const s = await serve((_req, res) => {
      sseHeaders(res);
      res.write(Array.from({ length: 10 }, (_, i) => chunk(`d${i}`)).join('')); // one write, ten deltas
    });
    const ac = new AbortController();
    const got: string[] = [];
    await assert.rejects(async () => {
      for await (const d of client(s).stream({ messages: msgs, signal: ac.signal })) {
        got.push(d);
        ac.abort();
      }
    }, AbortError);
    assert.deepEqual(got, ['d0']);
  });

  test('an already aborted signal sends nothing; an abort during backoff wakes at once', async () => {
    const s = await serve((_req, res) => json(res, 503, { error: { message: 'busy' } }, { 'retry-after': '30' }));
    await collectError(client(s).stream({ messages: msgs, signal: AbortSignal.abort() }), AbortError);
    assert.equal(s.requests.length, 0);
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(), 200);
    await collectError(client(s).stream({ messages: msgs, signal: ac.signal }), AbortError);
    assert.ok(performance.now() - t0 < 1000);
    assert.equal(s.requests.length, 1);
  });
});

describe('request and response', () => {
  test('body, headers, endpoints and x-inferline-* response headers', async () => {
    const s = await serve((req, res) => {
      sseHeaders(res, req.url === '/v1/chat/completions' ? { 'x-inferline-backend': 'engine-0', 'x-inferline-model': 'smollm2' } : {});
      if (req.url === '/v1/chat/completions') {
        res.end(fullStream(['x']));
        return;
      }
      const c = (text: string, finish: string | null): string => `data: ${JSON.stringify({ id: 'cmpl-1', choices: [{ index: 0, text, finish_reason: finish }] })}\n\n`;
      res.end(c('Once', null) + c(' upon', null) + c('', 'length') + usageChunk(2, 2) + 'data: [DONE]\n\n');
    });
    const c = client(s, { apiKey: 'sk-test' });
    const chat = c.stream({ messages: msgs, maxTokens: 7, temperature: 0, topP: 0.9, seed: 1, stop: ['\n'], extraBody: { top_k: 5 } });
    await collect(chat);
    assert.deepEqual([chat.backend, chat.model, chat.id], ['engine-0', 'smollm2', 'chatcmpl-x']);
    const r = s.requests[0]!;
    assert.equal(r.headers['authorization'], 'Bearer sk-test');
    assert.equal(r.headers['accept'], 'text/event-stream');
    assert.deepEqual(r.body, {
      model: 'fake',
      messages: msgs,
      temperature: 0,
      top_p: 0.9,
      seed: 1,
      stop: ['\n'],
      top_k: 5,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 7,
    });

    const done = await c.complete({ prompt: 'Once', model: 'other' });
    assert.equal(done.text, 'Once upon');
    assert.deepEqual([done.finishReason, done.backend, done.model, done.usage?.completion_tokens, done.attempts], ['length', null, null, 2, 1]);
    assert.equal(s.requests[1]!.body['prompt'], 'Once');
    assert.equal(s.requests[1]!.body['model'], 'other');
  });
});

describe('protocol', () => {
  test('a JSON answer to a streaming request is a protocol error, not retried', async () => {
    const s = await serve((_req, res) => json(res, 200, { choices: [{ message: { content: 'hi' } }] }));
    const { err } = await collectError(client(s).stream({ messages: msgs }), StreamError);
    assert.equal(err.kind, 'protocol');
    assert.equal(s.requests.length, 1);
  });

  test('malformed JSON in an event is a protocol error with the partial text', async () => {
    const s = await serve((_req, res) => {
      sseHeaders(res);
      res.end(chunk('ok') + 'data: {not json\n\n');
    });
    const { err } = await collectError(client(s).stream({ messages: msgs }), StreamError);
    assert.deepEqual([err.kind, err.partialText], ['protocol', 'ok']);
  });

  test('events split across network reads at any byte are reassembled (multi-byte UTF-8 too)', async () => {
    const words = ['héllo', ' wörld', ' 你好', ' 🙂'];
    const s = await serve(async (_req, res) => {
      sseHeaders(res);
      const bytes = Buffer.from(fullStream(words));
      for (let i = 0; i < bytes.length; i += 7) {
        res.write(bytes.subarray(i, i + 7));
        await delay(1);
      }
      res.end();
    });
    assert.deepEqual(await collect(client(s).stream({ messages: msgs })), words);
  });
});

describe('backpressure', () => {
  test('a slow consumer of a firehose: no read-ahead, flat memory, the server is held back', async (t) => {
    const payload = chunk('x'.repeat(4096));
    let written = 0;
    const s = await serve(async (_req, res) => {
      sseHeaders(res);
      const closed = once(res, 'close');
      while (!res.destroyed) {
        written += payload.length;
        if (!res.write(payload)) {
          const drained = new Promise<void>((ok) => res.once('drain', ok));
          await Promise.race([drained, closed]);
        }
      }
    });
    const { fetch, stats } = countingFetch();
    const stream = client(s, { fetch }).stream({ messages: msgs });
    let n = 0;
    let memAt50 = 0;
    let textAt50 = 0;
    for await (const d of stream) {
      n += 1;
      assert.equal(d.length, 4096);
      const before = stats.reads;
      // Pulled at most what was handed out plus one network read.
      assert.ok(stats.bytes <= n * payload.length + 256 * 1024, `pulled ${stats.bytes} B for ${n} deltas`);
      await delay(n % 50 === 0 ? 100 : 1);
      assert.equal(stats.reads, before, 'nothing is read while the consumer is busy');
      if (n === 50) {
        memAt50 = liveHeap();
        textAt50 = stream.text.length;
      }
      if (n === 400) break;
    }
    // The stream keeps the text it delivered (for partialText); beyond that, memory must not grow.
    const grown = liveHeap() - memAt50 - (stream.text.length - textAt50);
    t.diagnostic(
      `400 deltas of ${payload.length} B: client pulled ${stats.bytes} B in ${stats.reads} reads; ` +
        `server wrote ${written} B (the rest waits in socket buffers); heap +${grown} B beyond the text since delta 50`,
    );
    assert.ok(grown < 4 * 1024 * 1024, `the heap grew ${grown} B beyond the text`);
    assert.ok(written < 48 * 1024 * 1024, `the server could write ${written} B ahead`);
    assert.ok(await until(() => s.closedEarly === 1, 1000));
  });
});
