/**
 * Every error the client throws. All extend {@link InferlineError}, and all carry `partialText`:
 * the text already delivered to the caller when the failure happened ('' before the first token).
 *
 *     InferlineError
 *     ├── APIStatusError              the server answered with a non-2xx status (OpenAI error body)
 *     │   ├── BadRequestError         400, 413, 422
 *     │   ├── AuthenticationError     401
 *     │   ├── PermissionDeniedError   403
 *     │   ├── NotFoundError           404
 *     │   ├── RateLimitError          429
 *     │   └── ServerError             5xx
 *     │       └── ServiceUnavailableError 503
 *     ├── APIConnectionError          no HTTP answer (refused, reset, DNS, TLS)
 *     ├── TimeoutError
 *     │   ├── ConnectTimeoutError     no response headers within timeouts.connectMs
 *     │   ├── FirstTokenTimeoutError  no text within timeouts.firstTokenMs
 *     │   ├── IdleTimeoutError        no bytes for timeouts.idleMs between chunks
 *     │   └── TotalTimeoutError       the whole call took longer than timeouts.totalMs
 *     ├── StreamError                 an SSE error event, a stream cut off, or a malformed stream
 *     ├── BudgetExceededError         a token budget ran out
 *     └── AbortError                  the caller's AbortSignal fired
 */

/** The OpenAI error object: `{"error": {"message", "type", "param", "code"}}`. */
export interface ErrorBody {
  message: string;
  type: string | null;
  param: string | null;
  code: string | number | null;
}

export interface InferlineErrorOptions {
  partialText?: string;
  cause?: unknown;
}

export class InferlineError extends Error {
  /** Text delivered to the caller before the failure ('' when it failed before the first token). */
  partialText: string;
  /** Requests sent for this call, retries included (filled in by the client; 0 when none was sent). */
  attempts = 0;

  constructor(message: string, options: InferlineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.partialText = options.partialText ?? '';
  }
}

export interface APIStatusErrorOptions extends InferlineErrorOptions {
  headers?: Headers;
  retryAfterMs?: number | null;
}

/** A non-2xx HTTP answer. `error` is the OpenAI error object (synthesised when the body had none). */
export class APIStatusError extends InferlineError {
  readonly status: number;
  readonly error: ErrorBody;
  readonly type: string | null;
  readonly code: string | number | null;
  readonly param: string | null;
  /** The whole parsed body (JSON value, or the raw text when it was not JSON). */
  readonly body: unknown;
  readonly headers: Headers | null;
  /** From `Retry-After` (seconds or HTTP date) or `retry-after-ms`; null when absent. */
  readonly retryAfterMs: number | null;

  constructor(status: number, error: ErrorBody, body: unknown, options: APIStatusErrorOptions = {}) {
    super(`${status} ${error.message}`, options);
    this.status = status;
    this.error = error;
    this.type = error.type;
    this.code = error.code;
    this.param = error.param;
    this.body = body;
    this.headers = options.headers ?? null;
    this.retryAfterMs = options.retryAfterMs ?? null;
  }
}

export class BadRequestError extends APIStatusError {}
export class AuthenticationError extends APIStatusError {}
export class PermissionDeniedError extends APIStatusError {}
export class NotFoundError extends APIStatusError {}
export class RateLimitError extends APIStatusError {}
export class ServerError extends APIStatusError {}
export class ServiceUnavailableError extends ServerError {}

/** No HTTP answer at all: connection refused or reset, DNS or TLS failure. `cause` has the details. */
export class APIConnectionError extends InferlineError {}

export type TimeoutKind = 'connect' | 'first_token' | 'idle' | 'total';

export class TimeoutError extends InferlineError {
  readonly kind: TimeoutKind;
  readonly timeoutMs: number;

  constructor(kind: TimeoutKind, timeoutMs: number, options: InferlineErrorOptions = {}) {
    super(`${TIMEOUT_TEXT[kind]} (${timeoutMs} ms)`, options);
    this.kind = kind;
    this.timeoutMs = timeoutMs;
  }
}

const TIMEOUT_TEXT: Record<TimeoutKind, string> = {
  connect: 'no response headers in time',
  first_token: 'no first token in time',
  idle: 'the stream stalled between chunks',
  total: 'the call took longer than its total timeout',
};

export class ConnectTimeoutError extends TimeoutError {
  constructor(timeoutMs: number, options: InferlineErrorOptions = {}) {
    super('connect', timeoutMs, options);
  }
}
export class FirstTokenTimeoutError extends TimeoutError {
  constructor(timeoutMs: number, options: InferlineErrorOptions = {}) {
    super('first_token', timeoutMs, options);
  }
}
export class IdleTimeoutError extends TimeoutError {
  constructor(timeoutMs: number, options: InferlineErrorOptions = {}) {
    super('idle', timeoutMs, options);
  }
}
export class TotalTimeoutError extends TimeoutError {
  constructor(timeoutMs: number, options: InferlineErrorOptions = {}) {
    super('total', timeoutMs, options);
  }
}

/**
 * What went wrong in the stream:
 * - `event`: the server sent `data: {"error": ...}` (the gateway's way to fail after headers);
 * - `truncated`: the body ended without `data: [DONE]` (never treated as a clean end);
 * - `connection`: the connection broke while reading the body;
 * - `protocol`: the body was not a valid OpenAI event stream.
 */
export type StreamErrorKind = 'event' | 'truncated' | 'connection' | 'protocol';

export interface StreamErrorOptions extends InferlineErrorOptions {
  error?: ErrorBody | null;
}

export class StreamError extends InferlineError {
  readonly kind: StreamErrorKind;
  /** The OpenAI error object of an SSE error event (kind 'event'); null otherwise. */
  readonly error: ErrorBody | null;
  readonly type: string | null;
  readonly code: string | number | null;
  /**
   * Whether trying again could help: false only for an error event that says the request itself is
   * bad (and for protocol errors). Only matters before the first token: nothing is retried after it.
   */
  readonly transient: boolean;

  constructor(kind: StreamErrorKind, message: string, options: StreamErrorOptions = {}) {
    super(message, options);
    this.kind = kind;
    this.error = options.error ?? null;
    this.type = this.error?.type ?? null;
    this.code = this.error?.code ?? null;
    this.transient = kind === 'protocol' ? false : kind === 'event' ? isTransientEvent(this.error) : true;
  }
}

/** Error types (and numeric codes) meaning "the server is struggling", not "the request is wrong". */
const TRANSIENT_TYPES = new Set([
  'server_error',
  'service_unavailable',
  'unavailable_error',
  'upstream_error',
  'timeout',
  'rate_limit_error',
  'overloaded_error',
  'internal_error',
  'InternalServerError',
  'ServiceUnavailableError',
]);

function isTransientEvent(error: ErrorBody | null): boolean {
  if (error === null) return true;
  const status = typeof error.code === 'number' ? error.code : null;
  if (error.type === null && status === null) return true; // anonymous failure: most likely the engine died
  return (error.type !== null && TRANSIENT_TYPES.has(error.type)) || (status !== null && (status >= 500 || status === 429));
}

/** A token budget ran out: the stream was stopped there (and its request aborted). */
export class BudgetExceededError extends InferlineError {
  /** 'call' for a per-call limit, 'budget' for a shared {@link Budget}. */
  readonly scope: 'call' | 'budget';
  readonly limit: number;
  readonly used: number;

  constructor(scope: 'call' | 'budget', limit: number, used: number, options: InferlineErrorOptions = {}) {
    super(`token budget exhausted: ${used} of ${limit} tokens used`, options);
    this.scope = scope;
    this.limit = limit;
    this.used = used;
  }
}

/** The caller's AbortSignal fired. `cause` is the signal's reason. */
export class AbortError extends InferlineError {}

/** Build the typed error for a non-2xx answer from its status, body text and headers. */
export function makeStatusError(status: number, text: string, headers: Headers | null, nowMs = Date.now()): APIStatusError {
  let body: unknown = text;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  const error = errorBodyFrom(body, text, status);
  const retryAfterMs = headers ? parseRetryAfterHeaders(headers, nowMs) : null;
  const opts: APIStatusErrorOptions = { retryAfterMs };
  if (headers) opts.headers = headers;
  const Cls = statusErrorClass(status);
  return new Cls(status, error, body, opts);
}

export function statusErrorClass(status: number): typeof APIStatusError {
  switch (status) {
    case 400:
    case 413:
    case 422:
      return BadRequestError;
    case 401:
      return AuthenticationError;
    case 403:
      return PermissionDeniedError;
    case 404:
      return NotFoundError;
    case 429:
      return RateLimitError;
    case 503:
      return ServiceUnavailableError;
    default:
      return status >= 500 ? ServerError : APIStatusError;
  }
}

/**
 * The OpenAI error object out of a parsed body. Understands OpenAI/inferline `{error: {...}}`,
 * `{error: "text"}`, vLLM's flat `{object: "error", message, type, code}`, FastAPI's `{detail}` and plain text.
 */
export function errorBodyFrom(body: unknown, text: string, status?: number): ErrorBody {
  const fallback = text.trim() || (status === undefined ? 'unknown error' : `HTTP ${status}`);
  let err: Record<string, unknown> = {};
  if (isRecord(body)) {
    const inner = body['error'];
    if (isRecord(inner)) err = inner;
    else if (typeof inner === 'string') err = { message: inner };
    else err = body;
  }
  const message = typeof err['message'] === 'string' && err['message'] !== '' ? err['message']
    : typeof err['detail'] === 'string' ? err['detail'] : fallback;
  return {
    message: message.slice(0, MAX_MESSAGE_CHARS),
    type: typeof err['type'] === 'string' ? err['type'] : null,
    param: typeof err['param'] === 'string' ? err['param'] : null,
    code: typeof err['code'] === 'string' || typeof err['code'] === 'number' ? err['code'] : null,
  };
}

const MAX_MESSAGE_CHARS = 2000;

/**
 * `retry-after-ms` (milliseconds), else `Retry-After` as delay-seconds or an HTTP date.
 * Returns null when absent or unparseable; never negative.
 */
export function parseRetryAfterHeaders(headers: Headers, nowMs = Date.now()): number | null {
  const ms = headers.get('retry-after-ms');
  if (ms !== null && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Math.max(0, Number(ms));
  return parseRetryAfter(headers.get('retry-after'), nowMs);
}

/** Parse a `Retry-After` value: delay-seconds (`"1"`, `"2.5"`) or an HTTP date. Milliseconds, or null. */
export function parseRetryAfter(value: string | null | undefined, nowMs = Date.now()): number | null {
  if (value === null || value === undefined) return null;
  const v = value.trim();
  if (v === '') return null;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  if (!/[a-z]/i.test(v)) return null; // an HTTP date names its day and month; V8 would parse '-1' as a year
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - nowMs);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
