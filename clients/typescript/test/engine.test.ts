/**
 * The client against a real engine: `inferline engine --parallel 4` (llama.cpp serving SmolLM2),
 * started here, or whatever INFERLINE_TEST_URL points at (e.g. `inferline serve`). The model is
 * small and its text is not checked: only structure, counts, finish reasons and the engine's slots.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { AbortError, Budget, BudgetExceededError, type CompletionStream, InferlineClient } from '@inferline/client';

import { countingFetch, MODEL, slots, type Target, startTarget, waitSlotsIdle } from './helpers.js';

let target: Target;
let client: InferlineClient;
/** Whether the server has llama.cpp's GET /slots (a gateway may not). */
let hasSlots = false;

const story = [{ role: 'user' as const, content: 'Write a long story about a dragon who learns to cook.' }];
/** A plain-completion prompt: no chat template, so the model rarely stops early. */
const opening = 'The history of the city begins in the year 1200, when';

before(async () => {
  target = await startTarget();
  client = new InferlineClient({
    baseURL: target.baseURL,
    model: MODEL,
    timeouts: { firstTokenMs: 30_000, idleMs: 15_000 },
  });
  hasSlots = (await slots(target.root)) !== null;
});

after(async () => {
  await target?.stop();
});

beforeEach(async () => {
  // Each test starts with an idle engine, whatever the one before left behind.
  if (hasSlots) await waitSlotsIdle(target.root, 10_000);
});

/**
 * Asserts every slot is idle within 1 s of the stream ending. llama.cpp notices a closed connection
 * when it next writes a token, so on a machine so loaded that one token takes longer than that, the
 * bound becomes three token times of the streams concerned (the diagnostic says which applied).
 */
async function assertSlotsFreed(t: TestContext, what: string, streams: CompletionStream[]): Promise<void> {
  if (!hasSlots) {
    t.diagnostic('no /slots on this server: slot checks skipped');
    return;
  }
  const tokenMs = Math.max(0, ...streams.map((s) => (s.tokensPerSecond ? 1000 / s.tokensPerSecond : 0)));
  const limit = Math.max(1000, 3 * tokenMs);
  const ms = await waitSlotsIdle(target.root, limit);
  t.diagnostic(`${what}: slots idle after ${ms.toFixed(0)} ms (limit ${limit.toFixed(0)} ms; ${tokenMs.toFixed(0)} ms/token)`);
  if (ms > limit) {
    const later = await waitSlotsIdle(target.root, 10_000);
    t.diagnostic(`${what}: slots idle ${later.toFixed(0)} ms after that`);
  }
  assert.ok(ms <= limit, `${what}: a slot was still processing ${limit.toFixed(0)} ms later`);
}

async function assertBusy(): Promise<void> {
  if (!hasSlots) return;
  const s = await slots(target.root);
  assert.ok(s?.some((x) => x.is_processing), 'the engine is generating for this stream');
}

describe('against a real engine', { timeout: 180_000 }, () => {
  test('a chat stream completes with usage and a finish reason', async (t) => {
    const s = client.stream({ messages: story, maxTokens: 8, temperature: 0 });
    const deltas: string[] = [];
    for await (const d of s) {
      assert.equal(typeof d, 'string');
      assert.ok(d.length > 0);
      deltas.push(d);
    }
    assert.ok(deltas.length >= 1 && deltas.length <= 8, `${deltas.length} deltas`);
    assert.ok(s.finishReason === 'stop' || s.finishReason === 'length', String(s.finishReason));
    assert.ok(s.usage, 'usage arrives (stream_options.include_usage)');
    const u = s.usage;
    assert.ok(u.prompt_tokens > 0);
    assert.ok(u.completion_tokens >= deltas.length && u.completion_tokens <= 8);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    if (s.finishReason === 'length') assert.equal(u.completion_tokens, 8);
    assert.equal(s.text, deltas.join(''));
    assert.ok(s.ttftMs !== null && s.ttftMs > 0);
    assert.ok(s.durationMs !== null && s.durationMs >= s.ttftMs);
    if (u.completion_tokens >= 2) assert.ok(s.tokensPerSecond !== null && s.tokensPerSecond > 0);
    assert.equal(s.attempts, 1);
    assert.ok(s.id?.length);
    // The engine sends no x-inferline-* headers; the gateway does.
    for (const h of [s.backend, s.model]) assert.ok(h === null || typeof h === 'string');
    if (!process.env['INFERLINE_TEST_URL']) assert.deepEqual([s.backend, s.model], [null, null]);
    t.diagnostic(`ttft ${s.ttftMs.toFixed(0)} ms, ${s.tokensPerSecond?.toFixed(1)} tok/s, finish ${s.finishReason}`);
  });

  test('complete() on /completions returns the whole answer', async () => {
    const c = await client.complete({ prompt: opening, maxTokens: 6, temperature: 0 });
    assert.equal(typeof c.text, 'string');
    assert.ok(c.finishReason === 'stop' || c.finishReason === 'length');
    assert.ok(c.usage && c.usage.completion_tokens >= 1 && c.usage.completion_tokens <= 6);
    assert.equal(c.attempts, 1);
  });

  test('breaking out of for await frees the engine slot within 1 s', async (t) => {
    const s = client.stream({ messages: story, maxTokens: 400 });
    let n = 0;
    for await (const _ of s) {
      if (++n === 1) await assertBusy();
      if (n === 2) break;
    }
    assert.equal(n, 2);
    assert.ok(s.cancelled);
    await assertSlotsFreed(t, 'break', [s]);
  });

  test('a slow consumer does not make the client read ahead', async (t) => {
    const { fetch, stats } = countingFetch();
    const c = new InferlineClient({ baseURL: target.baseURL, model: MODEL, fetch });
    const s = c.stream({ prompt: opening, maxTokens: 12, temperature: 0 });
    let n = 0;
    for await (const _ of s) {
      n += 1;
      const reads = stats.reads;
      await delay(150); // meanwhile the engine keeps generating into the socket
      assert.equal(stats.reads, reads, 'no read while the consumer sleeps');
    }
    assert.ok(n >= 1);
    assert.ok(s.usage && s.finishReason !== null);
    t.diagnostic(`${n} deltas, ${stats.reads} reads, ${stats.bytes} B pulled`);
  });

  test('a budget smaller than the answer stops exactly at the budget and frees the slot', async (t) => {
    const budget = new Budget(5);
    const s = client.stream({ prompt: opening, maxTokens: 200, budget, temperature: 0 });
    const deltas: string[] = [];
    await assert.rejects(
      async () => {
        for await (const d of s) deltas.push(d);
      },
      (err: unknown) => err instanceof BudgetExceededError && err.partialText === deltas.join('') && err.scope === 'budget',
    );
    assert.ok(deltas.length >= 1 && deltas.length <= 5, `${deltas.length} deltas`);
    assert.equal(budget.used, 5);
    assert.equal(budget.remaining, 0);
    await assertSlotsFreed(t, 'budget', [s]);
    // The spent budget refuses the next call before it is sent.
    await assert.rejects(client.complete({ prompt: opening, budget }), BudgetExceededError);
  });

  test('a budget shared by two concurrent streams aborts them at its total and frees both slots', async (t) => {
    const budget = new Budget(12);
    const streams: CompletionStream[] = [];
    const run = async (): Promise<{ deltas: number; err: unknown }> => {
      const s = client.stream({ prompt: opening, maxTokens: 64, budget, temperature: 0.8, seed: 1 });
      streams.push(s);
      let deltas = 0;
      try {
        for await (const _ of s) deltas += 1;
      } catch (err) {
        return { deltas, err };
      }
      return { deltas, err: null };
    };
    const results = await Promise.all([run(), run()]);
    t.diagnostic(`deltas ${results.map((r) => r.deltas).join(' + ')}, errors ${results.map((r) => String(r.err)).join(' | ')}`);
    for (const r of results) assert.ok(r.err instanceof BudgetExceededError, String(r.err));
    assert.equal(results[0]!.deltas + results[1]!.deltas, 12);
    assert.equal(budget.remaining, 0);
    await assertSlotsFreed(t, 'shared budget', streams);
  });

  test('an AbortSignal cancels the stream and frees the slot', async (t) => {
    const ac = new AbortController();
    const s = client.stream({ messages: story, maxTokens: 400, signal: ac.signal });
    let n = 0;
    await assert.rejects(
      async () => {
        for await (const _ of s) if (++n === 2) ac.abort();
      },
      (err: unknown) => err instanceof AbortError && err.partialText === s.text,
    );
    assert.equal(n, 2);
    await assertSlotsFreed(t, 'abort signal', [s]);
  });

  test('cancel() from outside ends the stream quietly and frees the slot', async (t) => {
    const s = client.stream({ messages: story, maxTokens: 400 });
    let n = 0;
    for await (const _ of s) if (++n === 2) setTimeout(() => s.cancel(), 0);
    assert.ok(s.cancelled);
    await assertSlotsFreed(t, 'cancel()', [s]);
  });
});
