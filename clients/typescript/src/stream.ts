import { createParser, type ParseError } from 'eventsource-parser';

import type { Budget } from './budget.js';
import {
  AbortError,
  APIConnectionError,
  BudgetExceededError,
  ConnectTimeoutError,
  errorBodyFrom,
  FirstTokenTimeoutError,
  IdleTimeoutError,
  InferlineError,
  makeStatusError,
  StreamError,
  type TimeoutKind,
  TotalTimeoutError,
} from './errors.js';
import { isRetryable, type ResolvedRetry, retryDelay, sleep } from './retry.js';
import type { RetryInfo, Timeouts, Usage } from './types.js';

export type ResolvedTimeouts = Required<Timeouts>;

export const DEFAULT_TIMEOUTS: ResolvedTimeouts = {
  connectMs: 30_000,
  firstTokenMs: 60_000,
  idleMs: 30_000,
  totalMs: 0,
};

/** Largest SSE event the parser buffers (characters); a bigger one is a protocol error, not an OOM. */
const MAX_EVENT_CHARS = 8 * 1024 * 1024;

/** Everything one call needs; built by the client. */
export interface StreamRequest {
  url: string;
  kind: 'chat' | 'completion';
  /** The JSON body without max_tokens (set per attempt from maxTokens and the budget). */
  body: Record<string, unknown>;
  headers: Record<string, string>;
  maxTokens: number | undefined;
  budget: Budget | null;
  signal: AbortSignal | undefined;
  timeouts: ResolvedTimeouts;
  retry: ResolvedRetry;
  onRetry: ((info: RetryInfo) => void) | undefined;
  fetch: typeof fetch;
}

type AbortCause =
  | { kind: 'cancel' }
  | { kind: 'signal' }
  | { kind: 'timeout'; timeout: TimeoutKind }
  | { kind: 'budget' };

/** Internal: the stream was cancelled by the caller (cancel() or return()): end quietly. */
class Cancelled {}

const now = (): number => performance.now();

/**
 * One streamed completion: an `AsyncIterable<string>` of text deltas.
 *
 * Nothing is sent until iteration starts. Each `next()` pulls from the response body only when
 * no parsed delta is left (at most the deltas of one network read are held), so a slow consumer
 * slows the reading and never makes the client buffer the answer. `break` (or `return()`),
 * `cancel()` and the caller's AbortSignal abort the request at once, which makes the server stop
 * generating. After the end, `usage`, `finishReason`, `backend`, `model`, `ttftMs` and
 * `tokensPerSecond` describe the call.
 */
export class CompletionStream implements AsyncIterableIterator<string> {
  /** `stop`, `length`, ... from the last choice chunk; null until seen. */
  finishReason: string | null = null;
  /** The server's usage (sent last, because the client always asks `stream_options.include_usage`). */
  usage: Usage | null = null;
  /** `x-inferline-backend` response header: the backend that served the call (null when absent). */
  backend: string | null = null;
  /** `x-inferline-model` response header: the model that served the call (null when absent). */
  model: string | null = null;
  /** The completion id from the chunks. */
  id: string | null = null;
  /** Milliseconds from the start of the call (retries included) to the first text delta. */
  ttftMs: number | null = null;
  /** Decode speed seen by the caller: (tokens - 1) / time from first to last delta; null under 2 tokens. */
  tokensPerSecond: number | null = null;
  /** Milliseconds from the start of iteration to the end of the stream. */
  durationMs: number | null = null;
  /** Requests sent (1 + retries). */
  attempts = 0;
  /** Text deltas delivered. */
  deltas = 0;
  /** Body bytes read from the network for the last attempt. */
  bytesReceived = 0;
  /** All text delivered so far. */
  text = '';

  readonly #req: StreamRequest;
  readonly #gen: AsyncGenerator<string, undefined, undefined>;
  readonly #life = new AbortController();
  #lifeCause: AbortCause | null = null;
  #attemptCtl: AbortController | null = null;
  #t0 = 0;
  #firstAt = 0;
  #lastAt = 0;
  #charged = 0;
  #clampedByBudget = false;
  #started = false;
  #done = false;

  constructor(req: StreamRequest) {
    this.#req = req;
    this.#gen = this.#run();
  }

  /** True once the stream has ended: finished, failed or cancelled. */
  get done(): boolean {
    return this.#done;
  }

  /** True when cancel() or return() (a `break`) ended the stream. */
  get cancelled(): boolean {
    return this.#lifeCause?.kind === 'cancel';
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<string, undefined>> {
    this.#started = true;
    return this.#gen.next();
  }

  /** Called by `break` in `for await`: aborts the request at once, then ends the stream. */
  async return(): Promise<IteratorResult<string, undefined>> {
    this.#abortLife({ kind: 'cancel' });
    await this.#gen.return(undefined);
    return { done: true, value: undefined };
  }

  async throw(err?: unknown): Promise<IteratorResult<string, undefined>> {
    this.#abortLife({ kind: 'cancel' });
    await this.#gen.return(undefined);
    throw err;
  }

  /**
   * Stop now: abort the request (the server stops generating) and end the iteration without an
   * error. Safe to call at any time, from anywhere, any number of times.
   */
  cancel(): void {
    if (this.#done) return;
    this.#abortLife({ kind: 'cancel' });
    if (!this.#started) this.#done = true;
    this.#gen.return(undefined).catch(() => undefined);
  }

  /** Reads the whole stream and returns its text (the stream's fields are filled in afterwards). */
  async finalText(): Promise<string> {
    for await (const _ of this) {
      // text accumulates in this.text
    }
    return this.text;
  }

  #abortLife(cause: AbortCause): void {
    if (this.#lifeCause !== null || this.#done) return;
    this.#lifeCause = cause;
    this.#life.abort();
    this.#attemptCtl?.abort();
  }

  /** The error for an abort cause. */
  #causeError(cause: AbortCause): InferlineError | Cancelled {
    const t = this.#req.timeouts;
    switch (cause.kind) {
      case 'cancel':
        return new Cancelled();
      case 'signal':
        return new AbortError('the request was aborted by its AbortSignal', { cause: this.#req.signal?.reason });
      case 'budget':
        return new BudgetExceededError('budget', this.#req.budget?.total ?? 0, this.#req.budget?.used ?? 0);
      case 'timeout':
        switch (cause.timeout) {
          case 'connect':
            return new ConnectTimeoutError(t.connectMs);
          case 'first_token':
            return new FirstTokenTimeoutError(t.firstTokenMs);
          case 'idle':
            return new IdleTimeoutError(t.idleMs);
          case 'total':
            return new TotalTimeoutError(t.totalMs);
        }
    }
  }

  async *#run(): AsyncGenerator<string, undefined, undefined> {
    const req = this.#req;
    this.#t0 = now();
    const signal = req.signal;
    const onAbort = (): void => this.#abortLife({ kind: 'signal' });
    let totalTimer: ReturnType<typeof setTimeout> | undefined;
    try {
      if (this.#lifeCause !== null) return; // cancelled before the first next()
      if (signal) {
        if (signal.aborted) this.#abortLife({ kind: 'signal' });
        else signal.addEventListener('abort', onAbort, { once: true });
      }
      if (req.timeouts.totalMs > 0) {
        totalTimer = setTimeout(
          () => this.#abortLife({ kind: 'timeout', timeout: 'total' }),
          req.timeouts.totalMs,
        );
      }
      for (let attempt = 1; ; attempt++) {
        if (this.#lifeCause !== null) throw this.#causeError(this.#lifeCause);
        this.attempts = attempt;
        let err: InferlineError | Cancelled;
        try {
          yield* this.#attempt();
          return;
        } catch (raw) {
          if (!(raw instanceof InferlineError || raw instanceof Cancelled)) throw raw;
          err = raw;
        }
        if (err instanceof Cancelled) return;
        // Never retry once text was delivered, nor after the caller's abort or the total deadline.
        if (this.deltas > 0 || this.#lifeCause !== null || attempt > req.retry.maxRetries || !isRetryable(err)) {
          throw err;
        }
        const wait = retryDelay(err, attempt, req.retry);
        if (wait === null) throw err;
        if (req.timeouts.totalMs > 0 && now() - this.#t0 + wait.delayMs >= req.timeouts.totalMs) throw err;
        req.onRetry?.({ attempt, delayMs: wait.delayMs, fromRetryAfter: wait.fromRetryAfter, error: err });
        try {
          await sleep(wait.delayMs, this.#life.signal);
        } catch {
          // aborted while waiting: the loop head throws (or ends quietly for cancel)
        }
      }
    } catch (err) {
      if (err instanceof Cancelled) return;
      if (err instanceof InferlineError) {
        err.partialText = this.text;
        err.attempts = this.attempts;
      }
      throw err;
    } finally {
      clearTimeout(totalTimer);
      signal?.removeEventListener('abort', onAbort);
      this.#finish();
    }
  }

  #finish(): void {
    this.#done = true;
    this.durationMs = now() - this.#t0;
    const tokens = this.usage?.completion_tokens ?? this.deltas;
    const span = this.#lastAt - this.#firstAt;
    this.tokensPerSecond = tokens > 1 && span > 0 ? ((tokens - 1) * 1000) / span : null;
  }

  /** The body for one attempt: max_tokens is the per-call limit, lowered to what the budget has left. */
  #attemptBody(): Record<string, unknown> {
    const { budget, maxTokens } = this.#req;
    let max = maxTokens;
    this.#clampedByBudget = false;
    if (budget) {
      const left = budget.remaining;
      if (left <= 0) throw new BudgetExceededError('budget', budget.total, budget.used);
      if (max === undefined || left < max) {
        max = left;
        this.#clampedByBudget = true;
      }
    }
    return max === undefined ? this.#req.body : { ...this.#req.body, max_tokens: max };
  }

  async *#attempt(): AsyncGenerator<string, undefined, undefined> {
    const req = this.#req;
    const { connectMs, firstTokenMs, idleMs } = req.timeouts;
    const body = JSON.stringify(this.#attemptBody());
    const ctl = new AbortController();
    this.#attemptCtl = ctl;
    let cause: AbortCause | null = null;
    const abortAs = (c: AbortCause): void => {
      cause ??= c;
      ctl.abort();
    };
    /** When an operation failed because this attempt was aborted: the error for why. */
    const abortedError = (): InferlineError | Cancelled | null => {
      const c = this.#lifeCause ?? cause;
      return ctl.signal.aborted && c !== null ? this.#causeError(c) : null;
    };
    let connectTimer: ReturnType<typeof setTimeout> | undefined;
    let firstTimer: ReturnType<typeof setTimeout> | undefined;
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    if (connectMs > 0) connectTimer = setTimeout(() => abortAs({ kind: 'timeout', timeout: 'connect' }), connectMs);
    if (firstTokenMs > 0) {
      firstTimer = setTimeout(() => abortAs({ kind: 'timeout', timeout: 'first_token' }), firstTokenMs);
    }
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    let finished = false;
    this.bytesReceived = 0;
    try {
      let res: Response;
      try {
        res = await req.fetch(req.url, { method: 'POST', headers: req.headers, body, signal: ctl.signal });
      } catch (err) {
        throw abortedError() ?? new APIConnectionError(`connection failed: ${describe(err)}`, { cause: err });
      }
      clearTimeout(connectTimer);
      this.backend = res.headers.get('x-inferline-backend');
      this.model = res.headers.get('x-inferline-model');
      if (!res.ok) {
        let text = '';
        try {
          text = await res.text();
        } catch (err) {
          throw abortedError() ?? new APIConnectionError(`connection lost reading an error: ${describe(err)}`, { cause: err });
        }
        throw makeStatusError(res.status, text, res.headers);
      }
      const type = res.headers.get('content-type') ?? '';
      if (type.includes('application/json')) {
        await res.body?.cancel().catch(() => undefined);
        throw new StreamError('protocol', `expected an event stream, got ${type} (does the server support stream: true?)`);
      }
      if (res.body === null) throw new StreamError('protocol', 'the response has no body');
      reader = res.body.getReader();

      // At most the events of one network read wait here; the next read happens only when they
      // have all been handed to the consumer (who asked for them with next()).
      const events: string[] = [];
      let parseError: ParseError | null = null;
      const parser = createParser({
        onEvent: (ev) => {
          events.push(ev.data);
        },
        onError: (e) => {
          if (e.type === 'max-buffer-size-exceeded') parseError = e;
        },
        maxBufferSize: MAX_EVENT_CHARS,
      });
      const decoder = new TextDecoder();
      let eof = false;
      for (;;) {
        for (let i = 0; i < events.length; i++) {
          const data = events[i] as string;
          if (data.trim() === '[DONE]') {
            finished = true;
            this.#afterDone();
            return;
          }
          const text = this.#handleEvent(data);
          if (text === '') continue;
          this.#admit(abortAs);
          const t = now();
          if (this.deltas === 0) {
            clearTimeout(firstTimer);
            this.ttftMs = t - this.#t0;
            this.#firstAt = t;
          }
          this.#lastAt = t;
          this.deltas += 1;
          this.text += text;
          yield text;
          // The caller's signal or the total deadline may have fired while the consumer held this
          // delta: stop before handing out more of what was already parsed.
          if (this.#lifeCause !== null) throw this.#causeError(this.#lifeCause);
        }
        events.length = 0;
        if (eof) throw new StreamError('truncated', 'the stream ended without data: [DONE]');
        if (this.deltas > 0 && idleMs > 0) {
          idleTimer = setTimeout(() => abortAs({ kind: 'timeout', timeout: 'idle' }), idleMs);
        }
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          throw abortedError() ?? new StreamError('connection', `connection lost mid-stream: ${describe(err)}`, { cause: err });
        } finally {
          clearTimeout(idleTimer);
        }
        if (chunk.done) {
          eof = true;
          parser.feed(decoder.decode());
          parser.reset({ consume: true });
        } else {
          this.bytesReceived += chunk.value.byteLength;
          parser.feed(decoder.decode(chunk.value, { stream: true }));
        }
        if (parseError !== null) {
          throw new StreamError('protocol', `an SSE event exceeded ${MAX_EVENT_CHARS} characters`, { cause: parseError });
        }
      }
    } finally {
      clearTimeout(connectTimer);
      clearTimeout(firstTimer);
      clearTimeout(idleTimer);
      // Any way out but [DONE] (break, cancel, error, budget) aborts the request right now.
      if (!finished) ctl.abort();
      if (reader !== null) reader.cancel().catch(() => undefined);
      if (this.#attemptCtl === ctl) this.#attemptCtl = null;
    }
  }

  /** Charge one delta to the per-call limit and the budget; past either, abort and throw. */
  #admit(abortAs: (c: AbortCause) => void): void {
    const { maxTokens, budget } = this.#req;
    if (maxTokens !== undefined && this.deltas >= maxTokens) {
      abortAs({ kind: 'budget' });
      throw new BudgetExceededError('call', maxTokens, this.deltas);
    }
    if (budget) {
      if (!budget.tryConsume(1)) {
        abortAs({ kind: 'budget' });
        throw new BudgetExceededError('budget', budget.total, budget.used);
      }
      this.#charged += 1;
    }
  }

  /** After [DONE]: a stream cut by the budget's max_tokens is a budget error, not a clean end. */
  #afterDone(): void {
    const { budget } = this.#req;
    if (budget && this.#clampedByBudget && this.finishReason === 'length') {
      throw new BudgetExceededError('budget', budget.total, budget.used);
    }
  }

  /** One `data:` payload: records id, usage and finish reason; returns its text ('' for none). */
  #handleEvent(data: string): string {
    let obj: unknown;
    try {
      obj = JSON.parse(data);
    } catch {
      throw new StreamError('protocol', `malformed event: ${data.slice(0, 200)}`);
    }
    if (!isRecord(obj)) throw new StreamError('protocol', `unexpected event: ${data.slice(0, 200)}`);
    if (obj['error'] !== undefined && obj['error'] !== null) {
      const error = errorBodyFrom(obj, data);
      throw new StreamError('event', `the server reported an error mid-stream: ${error.message}`, { error });
    }
    if (typeof obj['id'] === 'string') this.id = obj['id'];
    const usage = obj['usage'];
    if (isRecord(usage) && typeof usage['completion_tokens'] === 'number') {
      this.usage = usage as Usage;
      const { budget } = this.#req;
      if (budget) {
        // Reconcile the per-delta estimate with the server's count.
        budget.charge(usage['completion_tokens'] - this.#charged);
        this.#charged = usage['completion_tokens'];
      }
    }
    const choices = obj['choices'];
    if (!Array.isArray(choices)) return '';
    const choice: unknown = choices.find((c) => isRecord(c) && (c['index'] ?? 0) === 0);
    if (!isRecord(choice)) return '';
    if (typeof choice['finish_reason'] === 'string') this.finishReason = choice['finish_reason'];
    if (this.#req.kind === 'chat') {
      const delta = choice['delta'];
      return isRecord(delta) && typeof delta['content'] === 'string' ? delta['content'] : '';
    }
    return typeof choice['text'] === 'string' ? choice['text'] : '';
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}
