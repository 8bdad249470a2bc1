import type { Budget } from './budget.js';
import { DEFAULT_RETRY } from './retry.js';
import { CompletionStream, DEFAULT_TIMEOUTS, type StreamRequest } from './stream.js';
import type { ClientOptions, Completion, StreamParams } from './types.js';

/**
 * A client for inferline's OpenAI-compatible API (or any OpenAI-compatible server: vLLM, llama.cpp).
 *
 * ```ts
 * const client = new InferlineClient({ baseURL: 'http://127.0.0.1:8080/v1', model: 'smollm2' });
 * const s = client.stream({ messages: [{ role: 'user', content: 'Hi' }], maxTokens: 64 });
 * for await (const delta of s) process.stdout.write(delta);
 * console.log(s.finishReason, s.usage, s.ttftMs);
 * ```
 */
export class InferlineClient {
  readonly baseURL: string;
  readonly #options: ClientOptions;

  constructor(options: ClientOptions) {
    if (typeof options.baseURL !== 'string' || !/^https?:\/\//.test(options.baseURL)) {
      throw new TypeError(`InferlineClient: baseURL must be an http(s) URL, got ${String(options.baseURL)}`);
    }
    this.baseURL = options.baseURL.replace(/\/+$/, '');
    this.#options = options;
  }

  /** The client-wide budget (null when none). */
  get budget(): Budget | null {
    return this.#options.budget ?? null;
  }

  /**
   * Stream a chat (`messages`) or plain completion (`prompt`). Returns at once; the request is sent
   * when iteration starts. Iterate it for text deltas; read its fields after the end.
   */
  stream(params: StreamParams): CompletionStream {
    return new CompletionStream(this.#request(params));
  }

  /** Stream to the end and return the whole answer with the stream's metadata. */
  async complete(params: StreamParams): Promise<Completion> {
    const s = this.stream(params);
    const text = await s.finalText();
    return {
      text,
      finishReason: s.finishReason,
      usage: s.usage,
      backend: s.backend,
      model: s.model,
      id: s.id,
      ttftMs: s.ttftMs,
      tokensPerSecond: s.tokensPerSecond,
      durationMs: s.durationMs,
      attempts: s.attempts,
    };
  }

  #request(params: StreamParams): StreamRequest {
    const o = this.#options;
    const hasMessages = params.messages !== undefined;
    const hasPrompt = params.prompt !== undefined;
    if (hasMessages === hasPrompt) throw new TypeError('pass exactly one of messages or prompt');
    const model = params.model ?? o.model;
    if (!model) throw new TypeError('no model: pass model to the call or to the client');
    if (params.maxTokens !== undefined && !(Number.isInteger(params.maxTokens) && params.maxTokens > 0)) {
      throw new RangeError(`maxTokens must be a positive integer, got ${params.maxTokens}`);
    }
    const extra = params.extraBody ?? {};
    const extraStreamOptions = extra['stream_options'];
    const body: Record<string, unknown> = {
      model,
      ...(hasMessages ? { messages: params.messages } : { prompt: params.prompt }),
      ...definedOnly({
        temperature: params.temperature,
        top_p: params.topP,
        top_k: params.topK,
        min_p: params.minP,
        seed: params.seed,
        stop: params.stop,
        presence_penalty: params.presencePenalty,
        frequency_penalty: params.frequencyPenalty,
      }),
      ...extra,
      stream: true,
      stream_options: {
        ...(typeof extraStreamOptions === 'object' && extraStreamOptions !== null ? extraStreamOptions : {}),
        include_usage: true,
      },
    };
    delete body['max_tokens'];
    const maxFromExtra = extra['max_tokens'];
    const maxTokens = params.maxTokens ?? (typeof maxFromExtra === 'number' ? maxFromExtra : undefined);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      ...(o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {}),
      ...o.headers,
      ...params.headers,
    };
    const fetchImpl = o.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new TypeError('no fetch: pass options.fetch');
    return {
      url: `${this.baseURL}/${hasMessages ? 'chat/completions' : 'completions'}`,
      kind: hasMessages ? 'chat' : 'completion',
      body,
      headers,
      maxTokens,
      budget: params.budget === undefined ? (o.budget ?? null) : params.budget,
      signal: params.signal,
      timeouts: { ...DEFAULT_TIMEOUTS, ...definedOnly(o.timeouts ?? {}), ...definedOnly(params.timeouts ?? {}) },
      retry: { ...DEFAULT_RETRY, ...definedOnly(o.retry ?? {}), ...definedOnly(params.retry ?? {}) },
      onRetry: o.onRetry,
      // Called unbound: some fetch implementations (browsers) reject a `this` other than globalThis.
      fetch: (input, init) => fetchImpl(input, init),
    };
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
