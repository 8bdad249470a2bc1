"""The ASGI app in-process (no server, no engine): CORS preflight, routes, methods, draining."""

from __future__ import annotations

import httpx

from inferline.config import InferlineConfig
from inferline.gateway.app import build_app

CONFIG = {
    "server": {"cors_origins": ["https://app.example"]},
    "models": [{"name": "m", "backends": [{"name": "b", "kind": "vllm", "url": "http://127.0.0.1:9"}]}],
}


def _client() -> tuple[object, httpx.AsyncClient]:
    gateway, app = build_app(InferlineConfig.model_validate(CONFIG))
    return gateway, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_cors_preflight_allows_the_configured_origin_only() -> None:
    _, client = _client()
    async with client:
        ok = await client.options(
            "/v1/chat/completions",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        bad = await client.options(
            "/v1/chat/completions",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        assert bad.status_code == 400
        r = await client.get("/health", headers={"origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-inferline-backend" in r.headers["access-control-expose-headers"]


async def test_unknown_route_and_wrong_method() -> None:
    _, client = _client()
    async with client:
        r = await client.get("/v2/chat")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await client.delete("/v1/models")
        assert r.status_code == 405 and r.headers["allow"] == "GET"


async def test_draining_gateway_refuses_new_requests_and_is_not_ready() -> None:
    gateway, client = _client()
    async with client:
        gateway.begin_drain()  # type: ignore[attr-defined]
        r = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
        assert (await client.get("/ready")).json()["status"] == "draining"
