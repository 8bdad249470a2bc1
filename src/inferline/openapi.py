"""The OpenAPI 3.1 document of the gateway's own endpoints, built from protocol.py's models and the error body.

Served at GET /openapi.json. Request schemas come from the pydantic models the gateway validates with
(protocol.py), so the document cannot drift from what `parse` accepts; response schemas state what the
gateway guarantees (the OpenAI error body on every error, `object` and `choices` on a completion) and
leave the rest open, because engine-specific fields pass through.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from pydantic.json_schema import models_json_schema

from inferline.protocol import ChatCompletionRequest, CompletionRequest

__all__ = ["ERROR_STATUSES", "build_openapi", "openapi_json"]

_REF = "#/components/schemas/{model}"
# Every status an inference endpoint can answer with besides 200, and why (errors.py is the one table).
ERROR_STATUSES: dict[str, str] = {
    "400": "Invalid request (names the field, the limit and the value), or the prompt does not fit the context.",
    "401": "Missing or unknown API key.",
    "404": "Unknown model.",
    "413": "Request body over server.max_body_bytes.",
    "429": "A rate limit, budget or concurrency limit of the key, or the model's wait queue is full / timed out.",
    "500": "A gateway bug (the body carries a request id).",
    "502": "An engine answered badly (names the backend).",
    "503": "No engine can take the request, the limit store is down (fail_closed), or the gateway is draining.",
    "504": "The engine did not answer in time.",
}


_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _standard_bounds(node: Any) -> None:
    """pydantic writes a bound on a union (`Number | None`, ge=0) as a non-standard `ge` key beside the
    `anyOf`: move it onto each numeric branch as the JSON Schema keyword, so validators and fuzzers see it."""
    if isinstance(node, dict):
        branches = node.get("anyOf")
        for key, keyword in _BOUNDS.items():
            if key in node and isinstance(branches, list):
                value = node.pop(key)
                for branch in branches:
                    if isinstance(branch, dict) and branch.get("type") in ("integer", "number"):
                        branch[keyword] = value
                    elif isinstance(branch, dict) and "anyOf" in branch:
                        branch[key] = value
                        _standard_bounds(branch)
        for value in node.values():
            _standard_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _standard_bounds(value)


def _parse_rules(request: dict[str, Any], chat: bool) -> None:
    """The checks parse.py makes after the schema, stated in the document so clients (and fuzzers) know:
    token counts are >= 1, `stream_options` only with `stream: true`, a non-empty prompt, and (stricter
    than the parser, which accepts two equal values) at most one of max_tokens / max_completion_tokens."""
    props = request["properties"]
    for name in ("max_tokens", "max_completion_tokens"):
        for branch in props.get(name, {}).get("anyOf", []):
            if branch.get("type") == "integer":
                branch["minimum"] = 1
    if "prompt" in props:
        for branch in props["prompt"].get("anyOf", []):
            if branch.get("type") == "array":
                branch["minItems"] = 1
    request["allOf"] = [
        {
            "if": {"not": {"required": ["stream"], "properties": {"stream": {"const": True}}}},
            "then": {"properties": {"stream_options": {"type": "null"}}},
        }
    ]
    if chat:
        request["allOf"].append(
            {
                "not": {
                    "required": ["max_tokens", "max_completion_tokens"],
                    "properties": {"max_tokens": {"type": "integer"}, "max_completion_tokens": {"type": "integer"}},
                }
            }
        )


def _error_schema() -> dict[str, Any]:
    detail = {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        },
    }
    return {"type": "object", "required": ["error"], "properties": {"error": detail}}


def _completion_schema(obj: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": obj},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": ["object", "null"]},
        },
    }


def _model_card_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
            "max_model_len": {"type": "integer"},
        },
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(*statuses: str) -> dict[str, Any]:
    err = {"$ref": "#/components/schemas/ErrorResponse"}
    retry = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}
    out: dict[str, Any] = {}
    for status in statuses:
        out[status] = {"description": ERROR_STATUSES.get(status, "Error."), "content": _json(err)}
        if status in ("429", "503"):
            out[status]["headers"] = retry
    return out


def _inference(name: str, request: str, response: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": name,
            "summary": summary,
            "requestBody": {"required": True, "content": _json({"$ref": f"#/components/schemas/{request}"})},
            "responses": {
                "200": {
                    "description": "The answer: JSON, or with `stream: true` an OpenAI event stream ending in "
                    "`data: [DONE]` (an error after the first token is an error event and no [DONE]).",
                    "content": {
                        **_json({"$ref": f"#/components/schemas/{response}"}),
                        # One event: `data:` carries a chunk's JSON, an error body, or [DONE].
                        "text/event-stream": {
                            "schema": {
                                "type": "object",
                                "required": ["data"],
                                "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
                            }
                        },
                    },
                },
                **_errors("400", "401", "404", "413", "429", "500", "502", "503", "504"),
            },
        }
    }


def _get(name: str, summary: str, content: dict[str, Any], *extra: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": name,
            "summary": summary,
            "responses": {"200": {"description": summary, "content": content}, **_errors(*extra)},
        }
    }


def build_openapi(models: tuple[str, ...] = (), version: str = "0.1.0") -> dict[str, Any]:
    """The document as a dict (OpenAPI 3.1: JSON Schema 2020-12, so pydantic's schemas are used as they are).
    `models`: the model names this gateway serves, stated as the `model` field's enum (any other is a 404)."""
    _, defs = models_json_schema(
        [(ChatCompletionRequest, "validation"), (CompletionRequest, "validation")], ref_template=_REF
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    _standard_bounds(schemas)
    _parse_rules(schemas["ChatCompletionRequest"], chat=True)
    _parse_rules(schemas["CompletionRequest"], chat=False)
    if models:
        for name in ("ChatCompletionRequest", "CompletionRequest"):
            schemas[name]["properties"]["model"]["enum"] = list(models)
    schemas["ErrorResponse"] = _error_schema()
    schemas["ChatCompletion"] = _completion_schema("chat.completion")
    schemas["Completion"] = _completion_schema("text_completion")
    schemas["Model"] = _model_card_schema()
    status_obj = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    ready_obj = {
        "type": "object",
        "required": ["status", "models"],
        "properties": {"status": {"enum": ["ready", "not_ready", "draining"]}, "models": {"type": "object"}},
    }
    paths: dict[str, Any] = {
        "/v1/chat/completions": _inference(
            "createChatCompletion", "ChatCompletionRequest", "ChatCompletion", "OpenAI chat completion."
        ),
        "/v1/completions": _inference("createCompletion", "CompletionRequest", "Completion", "OpenAI completion."),
        "/v1/models": _get(
            "listModels",
            "The models this gateway serves.",
            _json(
                {
                    "type": "object",
                    "required": ["object", "data"],
                    "properties": {
                        "object": {"const": "list"},
                        "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
                    },
                }
            ),
        ),
        "/v1/models/{model}": {
            "get": {
                "operationId": "retrieveModel",
                "summary": "One model.",
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The model.", "content": _json({"$ref": "#/components/schemas/Model"})},
                    **_errors("404"),
                },
            }
        },
        "/health": _get("health", "Liveness: the process answers.", _json(status_obj)),
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: every model has a ready backend and the gateway is not draining.",
                "responses": {
                    "200": {"description": "Ready.", "content": _json(ready_obj)},
                    "503": {"description": "Not ready, or draining.", "content": _json(ready_obj)},
                },
            }
        },
        "/metrics": _get(
            "metrics", "Prometheus metrics (text exposition format).", {"text/plain": {"schema": {"type": "string"}}}
        ),
        "/backends": _get(
            "backends",
            "Each backend's health, load and circuit state.",
            _json({"type": "object", "required": ["backends"], "properties": {"backends": {"type": "array"}}}),
        ),
        "/queues": _get(
            "queues",
            "Each model's wait queue.",
            _json({"type": "object", "required": ["queues"], "properties": {"queues": {"type": "array"}}}),
        ),
        "/openapi.json": _get("openapi", "This document.", _json({"type": "object"})),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "inferline gateway",
            "version": version,
            "description": "OpenAI-compatible inference gateway. Errors use the OpenAI body "
            "`{error: {message, type, param, code}}`; 429 and 503 carry Retry-After.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@functools.cache
def openapi_json(models: tuple[str, ...] = ()) -> bytes:
    """The document, serialized once per process (per set of models)."""
    return orjson.dumps(build_openapi(models))
