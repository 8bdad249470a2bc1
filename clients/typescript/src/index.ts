export { InferlineClient } from './client.js';
export { CompletionStream } from './stream.js';
export { Budget } from './budget.js';
export {
  AbortError,
  APIConnectionError,
  APIStatusError,
  AuthenticationError,
  BadRequestError,
  BudgetExceededError,
  ConnectTimeoutError,
  FirstTokenTimeoutError,
  IdleTimeoutError,
  InferlineError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  ServiceUnavailableError,
  StreamError,
  TimeoutError,
  TotalTimeoutError,
  makeStatusError,
  parseRetryAfter,
  parseRetryAfterHeaders,
} from './errors.js';
export type { ErrorBody, StreamErrorKind, TimeoutKind } from './errors.js';
export { backoffDelay, isRetryable } from './retry.js';
export type {
  ChatMessage,
  ChatParams,
  ClientOptions,
  Completion,
  PromptParams,
  RetryInfo,
  RetryOptions,
  Role,
  SamplingParams,
  StreamParams,
  Timeouts,
  Usage,
} from './types.js';
