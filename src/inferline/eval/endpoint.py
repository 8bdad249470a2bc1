"""endpoint: one OpenAI-compatible endpoint under test. Spec parsing, reachability, chat, continuation log-probs.

How a continuation's log-probabilities are obtained (the `logprobs` mode of an endpoint):
- echo (vLLM, OpenAI legacy): POST /v1/completions with the context + continuation, `echo: true`, `logprobs: 1`;
  the prompt tokens come back with their log-probabilities and text offsets.
- grammar (llama.cpp, which ignores `echo`): tokenize context and context + continuation with the engine's
  /tokenize, send the context as token ids and force the continuation's ids with a token-level grammar
  (`root ::= <[id]> <[id]>`) plus `logprobs`: llama.cpp reports each forced token's log-probability under
  the model (before the grammar). A string grammar would not do: greedy sampling under it picks short,
  non-canonical tokens and the log-probability collapses.
- auto (default): echo if the answer carries prompt log-probabilities, else grammar if a /tokenize answers,
  else none (multiple-choice and perplexity items are then not scored for that endpoint, and the report says so).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
import orjson

from inferline.backends.prom_text import sum_by_name


class EndpointError(RuntimeError):
    """An endpoint that is down, misconfigured or answering errors; the message names it."""


class LogprobMode(StrEnum):
    AUTO = "auto"
    ECHO = "echo"
    GRAMMAR = "grammar"
    NONE = "none"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_OPTIONS = ("model", "metrics", "tokenize", "logprobs", "key_env")


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    name: str
    base_url: str  # ends with /v1
    model: str | None = None
    metrics_url: str | None = None
    tokenize_url: str | None = None
    logprobs: LogprobMode = LogprobMode.AUTO
    key_env: str | None = None

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")


def parse_endpoint(text: str) -> EndpointSpec:
    """NAME=URL[,model=M][,metrics=URL][,tokenize=URL][,logprobs=auto|echo|grammar|none][,key_env=VAR]."""
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise ValueError(f"--endpoint {text!r}: expected NAME=URL[,model=M,...]")
    if not _NAME.match(name):
        raise ValueError(f"--endpoint {text!r}: NAME must be letters, digits, '.', '_' or '-' (max 64)")
    url, *opts = rest.split(",")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--endpoint {name}: URL must start with http:// or https://; got {url!r}")
    url = url.rstrip("/")
    if not url.endswith("/v1"):
        url += "/v1"
    values: dict[str, str] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or key not in _OPTIONS or not value:
            raise ValueError(
                f"--endpoint {name}: bad option {opt!r} (known: {', '.join(k + '=...' for k in _OPTIONS)})"
            )
        values[key] = value
    try:
        mode = LogprobMode(values.get("logprobs", "auto"))
    except ValueError:
        raise ValueError(
            f"--endpoint {name}: logprobs must be one of {', '.join(m.value for m in LogprobMode)}"
        ) from None
    return EndpointSpec(
        name=name,
        base_url=url,
        model=values.get("model"),
        metrics_url=values.get("metrics"),
        tokenize_url=values.get("tokenize"),
        logprobs=mode,
        key_env=values.get("key_env"),
    )


@dataclass(slots=True)
class ChatResult:
    text: str
    ttft_s: float | None
    e2e_s: float
    completion_tokens: int
    finish_reason: str | None


@dataclass(slots=True)
class ContinuationLogprobs:
    logprobs: list[float]  # one per continuation token


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message") if isinstance(err, dict) else None
        return str(msg or err)[:300]
    except ValueError:
        if "html" in resp.headers.get("content-type", "") or resp.text.lstrip()[:1] == "<":
            return "an HTML page, not an OpenAI-compatible API (is the base URL right? it usually ends in /v1)"
        return " ".join(resp.text.split())[:200]  # one line


class Endpoint:
    """A connected endpoint: resolved model, logprob mode, and the requests the runner needs."""

    def __init__(self, spec: EndpointSpec, client: httpx.AsyncClient, api_key: str | None) -> None:
        self.spec = spec
        self.name = spec.name
        self.model = spec.model or ""
        self.mode = spec.logprobs
        self.mode_note = ""
        self._client = client
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    def _fail(self, what: str, exc: BaseException | None = None, resp: httpx.Response | None = None) -> EndpointError:
        if resp is not None:
            return EndpointError(
                f"endpoint {self.name} ({self.spec.base_url}): {what}: HTTP {resp.status_code}: {_error_text(resp)}"
            )
        reason = type(exc).__name__ if exc is not None else "error"
        detail = str(exc) if exc is not None and str(exc) else reason
        return EndpointError(f"endpoint {self.name} ({self.spec.base_url}): {what}: {detail}")

    async def _post(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        try:
            resp = await self._client.post(
                self.spec.base_url + path,
                content=orjson.dumps(body),
                headers={**self._headers, "content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise self._fail(what, exc) from None
        if resp.status_code != 200:
            raise self._fail(what, resp=resp)
        data: dict[str, Any] = resp.json()
        return data

    async def connect(self) -> None:
        """Check the endpoint answers /v1/models and serves the model (or pick its first); choose the logprob mode."""
        try:
            resp = await self._client.get(self.spec.base_url + "/models", headers=self._headers)
        except httpx.HTTPError as exc:
            raise self._fail("unreachable", exc) from None
        if resp.status_code != 200:
            raise self._fail("GET /v1/models failed", resp=resp)
        try:
            ids = [m["id"] for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise self._fail("GET /v1/models did not return an OpenAI model list") from None
        if not self.model:
            if not ids:
                raise self._fail("serves no model")
            self.model = ids[0]
        elif self.model not in ids:
            raise self._fail(f"model {self.model!r} is not served (it serves: {', '.join(ids) or 'none'})")
        if self.mode is LogprobMode.AUTO:
            await self._detect_mode()

    async def _detect_mode(self) -> None:
        try:
            got = await self._echo("The sky is", " blue")
            if got.logprobs:
                self.mode = LogprobMode.ECHO
                return
        except EndpointError:
            pass
        try:
            await self._tokenize("The sky is blue")
        except EndpointError as exc:
            self.mode = LogprobMode.NONE
            self.mode_note = (
                "no prompt log-probabilities: `echo` is not honoured and no /tokenize answered "
                f"({exc}); give tokenize=URL (a llama.cpp engine with the same tokenizer) to score choices"
            )
            return
        self.mode = LogprobMode.GRAMMAR

    async def chat(self, prompt: str, system: str | None, max_tokens: int) -> ChatResult:
        """One streamed chat completion at temperature 0: the reply, TTFT, and completion tokens."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "seed": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        parts: list[str] = []
        ttft: float | None = None
        chunks = 0
        usage_tokens: int | None = None
        finish: str | None = None
        t0 = time.perf_counter()
        try:
            async with self._client.stream(
                "POST",
                self.spec.base_url + "/chat/completions",
                content=orjson.dumps(body),
                headers={**self._headers, "content-type": "application/json"},
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise self._fail("chat completion failed", resp=resp)
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = orjson.loads(data)
                    if "error" in event:
                        raise self._fail(f"stream ended with an error event: {str(event['error'])[:200]}")
                    if event.get("usage"):
                        usage_tokens = event["usage"].get("completion_tokens", usage_tokens)
                    for choice in event.get("choices") or []:
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            if ttft is None:
                                ttft = time.perf_counter() - t0
                            parts.append(content)
                            chunks += 1
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except httpx.HTTPError as exc:
            raise self._fail("chat completion failed", exc) from None
        except orjson.JSONDecodeError as exc:
            raise self._fail(f"malformed stream chunk ({exc})") from None
        return ChatResult(
            text="".join(parts),
            ttft_s=ttft,
            e2e_s=time.perf_counter() - t0,
            completion_tokens=usage_tokens if usage_tokens is not None else chunks,
            finish_reason=finish,
        )

    async def continuation(self, context: str, continuation: str) -> ContinuationLogprobs:
        """Log-probability of each token of `continuation` after `context`, by this endpoint's mode."""
        if self.mode is LogprobMode.ECHO:
            got = await self._echo(context, continuation)
            if not got.logprobs:
                raise self._fail("echo returned no prompt log-probabilities (try logprobs=grammar or none)")
            return got
        if self.mode is LogprobMode.GRAMMAR:
            return await self._grammar(context, continuation)
        raise self._fail("log-probabilities are not available (logprobs=none)")

    async def _echo(self, context: str, continuation: str) -> ContinuationLogprobs:
        full = context + continuation
        body = {"model": self.model, "prompt": full, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0}
        data = await self._post("/completions", body, "echo completion failed")
        lp = (data.get("choices") or [{}])[0].get("logprobs") or {}
        offsets, values, tokens = lp.get("text_offset"), lp.get("token_logprobs"), lp.get("tokens")
        if not offsets or not values or not tokens or len(offsets) != len(values):
            return ContinuationLogprobs([])
        start, end = len(context), len(full)
        out: list[float] = []
        for i, off in enumerate(offsets):
            tok_end = offsets[i + 1] if i + 1 < len(offsets) else off + len(tokens[i])
            if off >= end:
                break  # the generated token after the echoed prompt
            if tok_end > start:  # a token that ends inside the continuation counts (boundary tokens included)
                if values[i] is None:
                    return ContinuationLogprobs([])
                out.append(float(values[i]))
        # The prompt was echoed only if its offsets cover the continuation.
        if not out or offsets[0] != 0:
            return ContinuationLogprobs([])
        return ContinuationLogprobs(out)

    def _tokenize_url(self) -> str:
        return self.spec.tokenize_url or self.spec.root + "/tokenize"

    async def _tokenize(self, text: str) -> list[int]:
        try:
            resp = await self._client.post(
                self._tokenize_url(), json={"content": text, "add_special": False}, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise self._fail(f"tokenize at {self._tokenize_url()} failed", exc) from None
        if resp.status_code != 200:
            raise self._fail(f"tokenize at {self._tokenize_url()} failed", resp=resp)
        try:
            tokens = resp.json()["tokens"]
            return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]
        except (ValueError, KeyError, TypeError):
            raise self._fail(f"tokenize at {self._tokenize_url()} did not return token ids") from None

    async def _grammar(self, context: str, continuation: str) -> ContinuationLogprobs:
        ctx_ids = await self._tokenize(context)
        full_ids = await self._tokenize(context + continuation)
        k = 0
        while k < min(len(ctx_ids), len(full_ids)) and ctx_ids[k] == full_ids[k]:
            k += 1
        k = max(1, k)  # the engine needs a prompt; a boundary merge moves the merged token into the forced part
        forced = full_ids[k:]
        if not forced:
            raise self._fail(f"continuation {continuation!r} has no tokens of its own")
        body = {
            "model": self.model,
            "prompt": full_ids[:k],
            "max_tokens": len(forced),
            "temperature": 0,
            "logprobs": 1,
            "grammar": "root ::= " + " ".join(f"<[{t}]>" for t in forced),
        }
        data = await self._post("/completions", body, "grammar-forced completion failed")
        content = ((data.get("choices") or [{}])[0].get("logprobs") or {}).get("content") or []
        got_ids = [c.get("id") for c in content[: len(forced)]]
        if got_ids != forced:
            raise self._fail(
                "the engine did not follow the token grammar (got other tokens than forced); use logprobs=none"
            )
        return ContinuationLogprobs([float(c["logprob"]) for c in content[: len(forced)]])

    async def memory_bytes(self) -> tuple[float | None, str]:
        """RSS from the endpoint's Prometheus page (process_resident_memory_bytes), and where it came from."""
        url = self.spec.metrics_url or self.spec.root + "/metrics"
        try:
            resp = await self._client.get(url, headers=self._headers)
        except httpx.HTTPError:
            return None, f"not exposed ({url} unreachable)"
        if resp.status_code != 200:
            return None, f"not exposed ({url}: HTTP {resp.status_code})"
        found = sum_by_name(resp.text, frozenset({"process_resident_memory_bytes"}))
        if "process_resident_memory_bytes" not in found:
            return None, f"not exposed ({url} has no process_resident_memory_bytes)"
        return found["process_resident_memory_bytes"], f"process_resident_memory_bytes of {url}"
