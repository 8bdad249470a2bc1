import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  APIStatusError,
  AuthenticationError,
  BadRequestError,
  backoffDelay,
  Budget,
  InferlineClient,
  isRetryable,
  makeStatusError,
  NotFoundError,
  parseRetryAfter,
  RateLimitError,
  ServerError,
  ServiceUnavailableError,
  StreamError,
} from '@inferline/client';

describe('parseRetryAfter', () => {
  const now = Date.parse('Sat, 28 Nov 2026 04:00:00 GMT');
  test('delay-seconds', () => {
    assert.equal(parseRetryAfter('1', now), 1000);
    assert.equal(parseRetryAfter(' 2.5 ', now), 2500);
    assert.equal(parseRetryAfter('0', now), 0);
  });
  test('HTTP date', () => {
    assert.equal(parseRetryAfter('Sat, 28 Nov 2026 04:00:03 GMT', now), 3000);
    assert.equal(parseRetryAfter('Sat, 28 Nov 2026 03:59:00 GMT', now), 0, 'a past date means now');
  });
  test('absent or garbage', () => {
    assert.equal(parseRetryAfter(null, now), null);
    assert.equal(parseRetryAfter('', now), null);
    assert.equal(parseRetryAfter('soon', now), null);
    assert.equal(parseRetryAfter('-1', now), null);
  });
  test('retry-after-ms wins over Retry-After', () => {
    const e = makeStatusError(429, '', new Headers({ 'retry-after-ms': '250', 'retry-after': '9' }));
    assert.equal(e.retryAfterMs, 250);
  });
});

describe('backoff', () => {
  const retry = { maxRetries: 5, initialDelayMs: 100, maxDelayMs: 1000, maxRetryAfterMs: 60_000 };
  test('full jitter within the exponential ceiling', () => {
    assert.equal(backoffDelay(1, retry, () => 0), 0);
    assert.equal(backoffDelay(1, retry, () => 0.999999), 99);
    assert.equal(backoffDelay(3, retry, () => 0.999999), 399);
    assert.equal(backoffDelay(10, retry, () => 0.999999), 999, 'capped at maxDelayMs');
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(2, retry);
      assert.ok(d >= 0 && d < 200);
    }
  });
});

describe('status errors', () => {
  const table: Array<[number, abstract new (...a: never[]) => APIStatusError]> = [
    [400, BadRequestError],
    [413, BadRequestError],
    [422, BadRequestError],
    [401, AuthenticationError],
    [404, NotFoundError],
    [429, RateLimitError],
    [500, ServerError],
    [502, ServerError],
    [503, ServiceUnavailableError],
  ];
  for (const [status, cls] of table) {
    test(`${status} -> ${cls.name}`, () => {
      const body = { error: { message: 'm', type: 't', param: 'p', code: 'c' } };
      const e = makeStatusError(status, JSON.stringify(body), new Headers());
      assert.ok(e instanceof cls);
      assert.ok(e instanceof APIStatusError);
      assert.equal(e.name, cls.name);
      assert.deepEqual([e.status, e.type, e.code, e.param, e.error.message], [status, 't', 'c', 'p', 'm']);
      assert.deepEqual(e.body, body);
    });
  }
  test('503 is a ServerError too', () => {
    assert.ok(makeStatusError(503, '', null) instanceof ServerError);
  });
  test('other bodies: llama.cpp numeric code, vLLM flat, FastAPI detail, plain text', () => {
    const llama = makeStatusError(503, '{"error":{"message":"Loading model","type":"unavailable_error","code":503}}', null);
    assert.deepEqual([llama.type, llama.code, llama.error.message], ['unavailable_error', 503, 'Loading model']);
    const vllm = makeStatusError(400, '{"object":"error","message":"too long","type":"BadRequestError","code":400}', null);
    assert.deepEqual([vllm.type, vllm.error.message], ['BadRequestError', 'too long']);
    assert.equal(makeStatusError(422, '{"detail":"bad field"}', null).error.message, 'bad field');
    const text = makeStatusError(502, 'Bad Gateway', null);
    assert.equal(text.error.message, 'Bad Gateway');
    assert.equal(text.body, 'Bad Gateway');
    assert.equal(makeStatusError(500, '', null).error.message, 'HTTP 500');
  });
  test('which are retried', () => {
    for (const s of [408, 429, 500, 502, 503, 504]) assert.ok(isRetryable(makeStatusError(s, '', null)), String(s));
    for (const s of [400, 401, 403, 404, 413, 422, 501]) assert.ok(!isRetryable(makeStatusError(s, '', null)), String(s));
  });
  test('SSE error events: transient unless the request is bad', () => {
    const ev = (error: object): StreamError =>
      new StreamError('event', 'x', { error: { message: 'm', type: null, param: null, code: null, ...error } });
    assert.ok(ev({ type: 'server_error' }).transient);
    assert.ok(ev({ code: 503 }).transient);
    assert.ok(ev({}).transient);
    assert.ok(!ev({ type: 'invalid_request_error' }).transient);
    assert.ok(!new StreamError('protocol', 'x').transient);
    assert.ok(new StreamError('truncated', 'x').transient);
  });
});

describe('Budget', () => {
  test('tryConsume never overdraws; charge reconciles', () => {
    const b = new Budget(3);
    assert.ok(b.tryConsume());
    assert.ok(b.tryConsume(2));
    assert.ok(!b.tryConsume());
    assert.deepEqual([b.used, b.remaining, b.exhausted], [3, 0, true]);
    b.charge(-1);
    assert.deepEqual([b.used, b.remaining], [2, 1]);
    b.charge(5);
    assert.deepEqual([b.used, b.remaining], [7, 0]);
    b.reset();
    assert.equal(b.remaining, 3);
    assert.throws(() => new Budget(-1), RangeError);
  });
});

describe('client arguments', () => {
  const c = new InferlineClient({ baseURL: 'http://127.0.0.1:1/v1/', model: 'm' });
  test('baseURL is normalised and validated', () => {
    assert.equal(c.baseURL, 'http://127.0.0.1:1/v1');
    assert.throws(() => new InferlineClient({ baseURL: '127.0.0.1:8080' }), TypeError);
  });
  test('exactly one of messages or prompt; a model; a sane maxTokens', () => {
    assert.throws(() => c.stream({} as never), TypeError);
    assert.throws(() => c.stream({ prompt: 'a', messages: [] } as never), TypeError);
    const noModel = new InferlineClient({ baseURL: 'http://127.0.0.1:1/v1' });
    assert.throws(() => noModel.stream({ prompt: 'a' }), TypeError);
    assert.throws(() => c.stream({ prompt: 'a', maxTokens: 0 }), RangeError);
  });
});
