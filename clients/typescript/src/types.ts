import type { Budget } from './budget.js';
import type { InferlineError } from './errors.js';

export type Role = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

export interface ChatMessage {
  role: Role | (string & {});
  /** A string, or OpenAI content parts passed through as they are. */
  content: string | ReadonlyArray<Record<string, unknown>> | null;
  name?: string;
  [extra: string]: unknown;
}

/** OpenAI `usage` as sent in the last chunk (`stream_options.include_usage`). */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  [extra: string]: unknown;
}

/** All in milliseconds; 0 or undefined turns a timeout off. */
export interface Timeouts {
  /** From sending the request to the response headers (each attempt). Default 30 000. */
  connectMs?: number;
  /** From sending the request to the first text delta (each attempt; queueing + prefill). Default 60 000. */
  firstTokenMs?: number;
  /** Longest wait for the next chunk once text flows (only time spent waiting on the network counts). Default 30 000. */
  idleMs?: number;
  /** Wall-clock limit for the whole call, retries and your own time between deltas included. Default off. */
  totalMs?: number;
}

export interface RetryOptions {
  /** Retries after the first attempt (so maxRetries + 1 requests at most). Default 2. */
  maxRetries?: number;
  /** Backoff base: attempt n waits a uniformly random time in [0, min(maxDelayMs, initialDelayMs * 2^n)]. Default 500. */
  initialDelayMs?: number;
  /** Backoff cap. Default 8 000. */
  maxDelayMs?: number;
  /** A `Retry-After` longer than this is not waited for: the error is thrown at once. Default 60 000. */
  maxRetryAfterMs?: number;
}

export interface RetryInfo {
  /** The attempt that failed (1-based). */
  attempt: number;
  /** How long the client waits before the next attempt. */
  delayMs: number;
  /** Whether delayMs came from the server's Retry-After. */
  fromRetryAfter: boolean;
  error: InferlineError;
}

export interface ClientOptions {
  /** e.g. `http://127.0.0.1:8080/v1` */
  baseURL: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string | null;
  /** Model used when a call names none. */
  model?: string;
  /** Extra headers for every request. */
  headers?: Record<string, string>;
  timeouts?: Timeouts;
  retry?: RetryOptions;
  /** A budget shared by every call of this client (a call may pass its own instead, or null for none). */
  budget?: Budget | null;
  /** Called before each retry (logging, metrics). */
  onRetry?: (info: RetryInfo) => void;
  /** fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface SamplingParams {
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  seed?: number;
  stop?: string | string[];
  presencePenalty?: number;
  frequencyPenalty?: number;
}

interface CommonParams extends SamplingParams {
  model?: string;
  /** Per-call limit: sent as `max_tokens`, and enforced on the deltas too. */
  maxTokens?: number;
  signal?: AbortSignal;
  /** Overrides the client's budget for this call; null: no budget for this call. */
  budget?: Budget | null;
  timeouts?: Timeouts;
  retry?: RetryOptions;
  headers?: Record<string, string>;
  /** Extra body fields, sent as they are (e.g. `{ logit_bias: {...} }`). */
  extraBody?: Record<string, unknown>;
}

/** A chat call (`POST /chat/completions`). */
export interface ChatParams extends CommonParams {
  messages: ChatMessage[];
  prompt?: never;
}

/** A plain completion (`POST /completions`). */
export interface PromptParams extends CommonParams {
  prompt: string;
  messages?: never;
}

export type StreamParams = ChatParams | PromptParams;

/** What {@link InferlineClient.complete} returns. */
export interface Completion {
  text: string;
  finishReason: string | null;
  usage: Usage | null;
  backend: string | null;
  model: string | null;
  id: string | null;
  ttftMs: number | null;
  tokensPerSecond: number | null;
  durationMs: number | null;
  attempts: number;
}
