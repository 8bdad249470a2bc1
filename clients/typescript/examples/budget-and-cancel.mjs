// The three ways to stop a stream, timeouts and retries, and a token budget shared by calls.
//   INFERLINE_BASE_URL=http://127.0.0.1:8080/v1 node examples/budget-and-cancel.mjs
import { AbortError, Budget, BudgetExceededError, InferlineClient, InferlineError } from '@inferline/client';

const client = new InferlineClient({
  baseURL: process.env.INFERLINE_BASE_URL ?? 'http://127.0.0.1:8080/v1',
  model: 'smollm2',
  timeouts: { firstTokenMs: 20_000, idleMs: 10_000, totalMs: 60_000 },
  retry: { maxRetries: 3 },
  onRetry: ({ attempt, delayMs, error }) => console.error(`retry after attempt ${attempt} in ${delayMs} ms: ${error.message}`),
});
const prompt = 'The history of the city begins in the year 1200, when';

// 1. break: the request is aborted at once and the server stops generating.
const s1 = client.stream({ prompt, maxTokens: 200 });
let n = 0;
for await (const _ of s1) if (++n === 5) break;
console.log(`break after ${n} deltas; cancelled=${s1.cancelled}`);

// 2. An AbortSignal (a stop button, a request that went away): throws AbortError with the partial text.
const ac = new AbortController();
try {
  for await (const _ of client.stream({ prompt, maxTokens: 200, signal: ac.signal })) ac.abort();
} catch (err) {
  if (!(err instanceof AbortError)) throw err;
  console.log(`aborted with ${JSON.stringify(err.partialText)}`);
}

// 3. cancel() from anywhere (here a timer): the loop just ends.
const s3 = client.stream({ prompt, maxTokens: 200 });
setTimeout(() => s3.cancel(), 1000);
for await (const _ of s3);
console.log(`cancel(): cancelled=${s3.cancelled} after ${s3.deltas} deltas`);

// A budget shared by every call of a session (pass it to the client to cover all its calls).
// Each call asks for at most what is left; the call that runs out throws with what it had.
const session = new Budget(24);
try {
  for (;;) await client.complete({ prompt, maxTokens: 100, budget: session });
} catch (err) {
  if (!(err instanceof BudgetExceededError)) throw err;
  // Like every error of the client, it is an InferlineError carrying the text delivered before it.
  console.log(
    `budget: ${session.used}/${session.total} used (${err instanceof InferlineError}); ` +
      `the last answer ends ${JSON.stringify(err.partialText.slice(-30))}`,
  );
}
