"""The gateway's side of the embedded engine's child process: start it, watch it, restart it, stop it.

- start: spawn `engine_child` (same Python, same import path), wait for its one report line: the port it
  listens on once the model is loaded, or one line saying why it cannot start (EngineStartError).
- watch: the child's exit is noticed at once (a task awaits it). A child that dies while serving is
  restarted after a back-off (1 s, doubling to 30 s; reset once it has served for a minute): the embedded
  engine is usually its model's only backend, and a crash (OOM kill, a llama.cpp abort) is usually not
  permanent. Until it is back the backend is unhealthy (/ready 503), new requests wait in the gateway's
  queue or fail fast with 503, and requests that were streaming from it end with an error event: their
  connections closed with the process. A restart that fails is retried with the same back-off and logged
  in one line each time, so an operator sees why.
- stop: after the gateway's drain, close the lifeline (the child exits at end-of-file), SIGKILL after 10 s.
  If the gateway itself dies, SIGKILL included, the kernel closes the lifeline and the child exits too.

The child runs in its own session: Ctrl-C in a terminal must not stop it before the gateway's drain, and
the kernel's autogroup scheduler then gives it its own CPU share, as a separately started engine gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

import orjson

from inferline.backends.base import EngineStartError
from inferline.config import EmbeddedEngineConfig

log = logging.getLogger("inferline.engine")

START_TIMEOUT_S = 600.0  # loading a large GGUF from a slow disk
STOP_TIMEOUT_S = 10.0
RESTART_BACKOFF_S = (1.0, 30.0)  # first delay, cap (doubling in between)
STABLE_AFTER_S = 60.0  # a child that served this long resets the back-off


class EngineSupervisor:
    """One engine child process: started on `start()`, restarted when it dies, stopped on `close()`."""

    def __init__(self, name: str, cfg: EmbeddedEngineConfig, alias: str, on_ready: Callable[[int], None]) -> None:
        self.name = name
        self._spec = orjson.dumps({"engine": cfg.model_dump(mode="json"), "alias": alias}).decode()
        self._on_ready = on_ready
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closing = False
        self.state = "not started"
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def start(self) -> None:
        """Start the child and wait until it serves; EngineStartError (one line) when it cannot."""
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise(), name=f"engine:{self.name}")

    async def _spawn(self) -> None:
        self.state = "starting"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "inferline.backends.engine_child",
            str(os.getpid()),
            self._spec,
            stdin=asyncio.subprocess.PIPE,  # the lifeline: never written, closed to stop the child
            stdout=asyncio.subprocess.PIPE,  # one report line
            stderr=None,  # llama.cpp's own messages go to the gateway's stderr
            start_new_session=True,
        )
        self._proc = proc
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            await self._kill(proc)
            self.state = "failed"
            raise EngineStartError(f"embedded engine {self.name} did not load within {START_TIMEOUT_S:.0f}s") from None
        try:
            report = orjson.loads(line) if line else {}
        except orjson.JSONDecodeError:
            report = {"error": f"unexpected report {line[:200]!r}"}
        if not report.get("ready"):
            code = await self._kill(proc)
            self.state = "failed"
            why = report.get("error") or f"the engine process exited ({_describe(code)}) before it was ready"
            raise EngineStartError(f"embedded engine {self.name} could not start: {why}")
        self.state = "running"
        self._on_ready(int(report["port"]))

    async def _supervise(self) -> None:
        """Wait for the child to exit; unless we are closing, restart it with a back-off."""
        delay = RESTART_BACKOFF_S[0]
        while True:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = await proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()  # our end of a dead child's lifeline
            if self._closing:
                return
            self.state = "restarting"
            if time.monotonic() - started >= STABLE_AFTER_S:
                delay = RESTART_BACKOFF_S[0]
            log.error(
                "embedded engine %s (pid %d) died (%s): requests streaming from it end with an error; "
                "restarting it in %.0fs",
                self.name,
                proc.pid,
                _describe(code),
                delay,
            )
            while not self._closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_BACKOFF_S[1])
                if self._closing:
                    return
                try:
                    await self._spawn()
                except (EngineStartError, OSError) as exc:
                    self.state = "restarting"
                    log.error("%s; trying again in %.0fs", exc, delay)
                    continue
                self.restarts += 1
                log.info("embedded engine %s restarted (pid %s, restart #%d)", self.name, self.pid, self.restarts)
                break

    async def close(self) -> None:
        """Stop the child (after the gateway's drain): close its lifeline, SIGKILL if it lingers."""
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        proc, self._proc = self._proc, None
        self.state = "stopped"
        if proc is not None and proc.returncode is None:
            await self._kill(proc, graceful=True)

    async def _kill(self, proc: asyncio.subprocess.Process, graceful: bool = False) -> int:
        if graceful and proc.stdin is not None:
            proc.stdin.close()  # end-of-file on the lifeline: the child exits
            try:
                return await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("embedded engine %s did not exit within %.0fs: killing it", self.name, STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        return await proc.wait()


def _describe(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
