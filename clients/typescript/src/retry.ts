import {
  APIConnectionError,
  APIStatusError,
  ConnectTimeoutError,
  FirstTokenTimeoutError,
  type InferlineError,
  StreamError,
} from './errors.js';
import type { RetryOptions } from './types.js';

export type ResolvedRetry = Required<RetryOptions>;

export const DEFAULT_RETRY: ResolvedRetry = {
  maxRetries: 2,
  initialDelayMs: 500,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 60_000,
};

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/**
 * Whether an error that happened BEFORE the first token may be retried. (After the first token
 * nothing is ever retried: the caller has text, and a second answer would not continue it.)
 */
export function isRetryable(err: unknown): boolean {
  if (err instanceof APIStatusError) return RETRYABLE_STATUS.has(err.status);
  if (err instanceof APIConnectionError) return true;
  if (err instanceof ConnectTimeoutError || err instanceof FirstTokenTimeoutError) return true;
  if (err instanceof StreamError) return err.transient;
  return false;
}

/**
 * Exponential backoff with full jitter: a uniformly random delay in [0, min(max, initial * 2^(attempt-1))].
 * `attempt` is the 1-based number of the attempt that failed.
 */
export function backoffDelay(attempt: number, retry: ResolvedRetry, random: () => number = Math.random): number {
  const ceiling = Math.min(retry.maxDelayMs, retry.initialDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/**
 * How long to wait before retrying after `err`: a 429's or 503's Retry-After when it has one (null
 * when that is longer than maxRetryAfterMs: do not retry), else backoff with full jitter.
 */
export function retryDelay(
  err: InferlineError,
  attempt: number,
  retry: ResolvedRetry,
): { delayMs: number; fromRetryAfter: boolean } | null {
  if (err instanceof APIStatusError && (err.status === 429 || err.status === 503) && err.retryAfterMs !== null) {
    if (err.retryAfterMs > retry.maxRetryAfterMs) return null;
    return { delayMs: err.retryAfterMs, fromRetryAfter: true };
  }
  return { delayMs: backoffDelay(attempt, retry), fromRetryAfter: false };
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
