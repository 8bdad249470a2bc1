// Stream a chat answer, then print what the stream learned about the call.
//   node examples/chat.mjs                       (gateway on http://127.0.0.1:8080/v1)
//   INFERLINE_BASE_URL=http://127.0.0.1:8090/v1 node examples/chat.mjs
import { InferlineClient } from '@inferline/client';

const client = new InferlineClient({
  baseURL: process.env.INFERLINE_BASE_URL ?? 'http://127.0.0.1:8080/v1',
  apiKey: process.env.INFERLINE_API_KEY, // optional
  model: 'smollm2',
});

const stream = client.stream({
  messages: [{ role: 'user', content: 'Name three uses of a paperclip.' }],
  maxTokens: 24,
  temperature: 0.2,
});
for await (const delta of stream) process.stdout.write(delta);

console.log('\n---');
console.log({
  finishReason: stream.finishReason, // 'stop' | 'length'
  usage: stream.usage, // { prompt_tokens, completion_tokens, total_tokens }
  backend: stream.backend, // x-inferline-backend (null when the server sends none)
  model: stream.model, // x-inferline-model
  ttftMs: Math.round(stream.ttftMs ?? 0),
  tokensPerSecond: Number(stream.tokensPerSecond?.toFixed(1) ?? 0),
});
