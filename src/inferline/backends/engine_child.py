"""The embedded engine's child process: load the model, serve llama.cpp on loopback, die with the gateway.

Run by `EngineSupervisor` as `python -m inferline.backends.engine_child` with the engine config as JSON in
argv. It speaks to the gateway through two pipes:

- stdout: exactly one JSON line, `{"ready": true, "port": N}` once llama.cpp listens with the model loaded,
  or `{"ready": false, "error": "one line"}` when it cannot start; nothing else is ever written there.
- stdin: the lifeline. The gateway never writes to it; end-of-file means the gateway closed it (a
  graceful stop) or died (the kernel closes a dead process's pipes, SIGKILL included), and the engine
  exits at once. On Linux PR_SET_PDEATHSIG(SIGKILL) backs this up.

SIGINT, SIGTERM and SIGHUP are ignored: a Ctrl-C in a terminal, `kill -TERM -PGID` or systemd's
control-group stop reach the whole group, and the engine must outlive the gateway's drain, which still
relays the last tokens from it. The gateway stops it after the drain by closing the lifeline.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

# Only the standard library above: the death signal must be armed before the slow imports (pydantic,
# xllamacpp), or a gateway that dies meanwhile would leave this process loading a model for nobody.

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the gateway dies, even if the lifeline thread is starved."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the gateway died before prctl took effect
        os._exit(1)


def _max_fd() -> int:
    try:
        return max(256, os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 65536


def _watch_lifeline() -> None:
    """Exit when stdin reaches end-of-file: the gateway stopped us or is gone."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os._exit(0)  # skips llama.cpp's destructors: the kernel frees the model's memory at once


def _report(obj: dict[str, object], out: int) -> None:
    import orjson

    os.write(out, orjson.dumps(obj) + b"\n")


def main(argv: list[str]) -> int:
    parent_pid = int(argv[1])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    # Descriptors the gateway left inheritable (its listening socket is, for uvicorn's workers; uvloop's
    # spawn does not close them): holding them would keep the gateway's port bound after it exits.
    os.closerange(3, _max_fd())
    # The report pipe is fd 1; everything else anyone prints (llama.cpp, Python) goes to the gateway's stderr.
    out = os.dup(1)
    os.dup2(2, 1)
    threading.Thread(target=_watch_lifeline, name="lifeline", daemon=True).start()
    import orjson

    from inferline.config import EmbeddedEngineConfig

    spec = orjson.loads(argv[2])
    try:
        from inferline.backends.llamacpp import start_llamacpp_server

        cfg = EmbeddedEngineConfig.model_validate(spec["engine"])
        _server, port = start_llamacpp_server(cfg, spec["alias"])
    except Exception as exc:  # every failure becomes one line for the gateway's log
        _report({"ready": False, "error": _one_line(exc)}, out)
        return 1
    _report({"ready": True, "port": port}, out)
    os.close(out)
    threading.Event().wait()  # serve until the lifeline ends the process
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
