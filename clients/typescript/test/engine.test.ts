/**
 * The client against a real engine: `inferline engine --parallel 4` (llama.cpp serving SmolLM2),
 * started here, or whatever INFERLINE_TEST_URL points at (e.g. `inferline serve`). The model is
 * small and its text is not checked: only structure, counts, finish reasons and the engine's slots.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, beforeEach, describe, test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { AbortError, Budget, BudgetExceededError, InferlineClient } from '@inferline/client';

import { countingFetch, MODEL, PACKAGE_ROOT, slots, type Target, startTarget, waitSlotsIdle, watchSlots } from './helpers.js';

let target: Target;
let client: InferlineClient;
/** Whether the server has llama.cpp's GET /slots (the gateway has not: slot checks are skipped there). */
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
 * Asserts the engine let go of the stream's slot: every slot idle within 1 s. llama.cpp notices a
 * closed connection when it next writes a token, so on a machine so loaded that a token takes longer
 * than that, the test accepts a slot that decoded at most 2 more tokens and then stopped (within
 * 10 s): the client closed at once and the server stopped at its next write.
 */
async function assertSlotsFreed(t: TestContext, what: string): Promise<void> {
  if (!hasSlots) {
    t.diagnostic('no /slots on this server: slot checks skipped');
    return;
  }
  const { ms, extraTokens } = await watchSlots(target.root, 10_000);
  t.diagnostic(`${what}: slots idle after ${ms.toFixed(0)} ms, ${extraTokens ?? '?'} more tokens decoded`);
  assert.ok(
    ms <= 1000 || (ms < Infinity && extraTokens !== null && extraTokens <= 2),
    `${what}: slots idle after ${ms} ms, ${extraTokens} tokens decoded after the client let go`,
  );
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
    await assertSlotsFreed(t, 'break');
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
    await assertSlotsFreed(t, 'budget');
    // The spent budget refuses the next call before it is sent.
    await assert.rejects(client.complete({ prompt: opening, budget }), BudgetExceededError);
  });

  test('a budget shared by two concurrent streams aborts them at its total and frees both slots', async (t) => {
    const budget = new Budget(12);
    const run = async (): Promise<{ deltas: number; err: unknown }> => {
      const s = client.stream({ prompt: opening, maxTokens: 64, budget, temperature: 0.8, seed: 1 });
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
    await assertSlotsFreed(t, 'shared budget');
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
    await assertSlotsFreed(t, 'abort signal');
  });

  test('cancel() from outside ends the stream quietly and frees the slot', async (t) => {
    const s = client.stream({ messages: story, maxTokens: 400 });
    let n = 0;
    for await (const _ of s) if (++n === 2) setTimeout(() => s.cancel(), 0);
    assert.ok(s.cancelled);
    await assertSlotsFreed(t, 'cancel()');
  });

  for (const example of ['chat.mjs', 'budget-and-cancel.mjs']) {
    test(`examples/${example} runs (the docs' examples)`, async () => {
      let stdout = '';
      try {
        ({ stdout } = await promisify(execFile)(process.execPath, [join(PACKAGE_ROOT, 'examples', example)], {
          cwd: PACKAGE_ROOT,
          env: { ...process.env, INFERLINE_BASE_URL: target.baseURL },
          timeout: 60_000,
        }));
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        assert.fail(`${example} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
      }
      assert.ok(stdout.length > 0);
      if (example === 'chat.mjs') assert.match(stdout, /finishReason: '(stop|length)'/);
      else assert.match(stdout, /budget: 24\/24 used \(true\)/);
    });
  }
});
