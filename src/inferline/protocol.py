"""OpenAI wire models for the requests the gateway validates (fields it acts on; the rest pass through)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Number = StrictInt | StrictFloat
Stop = StrictStr | Annotated[list[StrictStr], Field(max_length=16)] | None


class _Wire(BaseModel):
    # extra="allow": tools, response_format, logprobs, vLLM's extra sampling fields... pass through.
    model_config = ConfigDict(extra="allow", strict=True)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: StrictBool | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: StrictStr | list[dict[str, Any]] | None = None


class _Sampling(_Wire):
    model: StrictStr = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = None
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, gt=0, le=1)
    seed: StrictInt | None = None
    stop: Stop = None
    n: StrictInt | None = Field(None, ge=1, le=16)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = None


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] = Field(min_length=1)
