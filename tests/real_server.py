"""A real ``hdrlift-serve`` process on loopback, for the suites that run outside the engine's own
environment (the plugin alone, Blender, OpenFX, Nuke, farm): ``with ServerProcess(...) as s:``.

The server runs in the Python that has the engine (``$HDRLIFT_SERVER_PYTHON``, default the
project's ``.venv/bin/python``; the current one when it has the engine). Start-up is an event,
not a sleep: the address comes from the server's own JSON ``started`` line on stderr.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

REPO = pathlib.Path(__file__).resolve().parents[1]


def engine_python() -> str | None:
    """A Python that can run the engine, or None."""
    env = os.environ.get("HDRLIFT_SERVER_PYTHON")
    if env:
        return env if pathlib.Path(env).exists() else None
    import importlib.util

    if importlib.util.find_spec("torch") is not None and importlib.util.find_spec("hdrlift.engine") is not None:
        return sys.executable
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else None


class ServerProcess:
    """``hdrlift-serve --host 127.0.0.1 --port 0 ARGS`` in a subprocess; ``.address``, ``.lines``
    (every stderr line, kept by a reader thread), ``.stop()`` (SIGTERM, then the exit code)."""

    def __init__(self, *args: str, python: str | None = None, env: dict | None = None):
        self.python = python or engine_python()
        if self.python is None:
            raise RuntimeError("no Python with the hdrlift engine (set HDRLIFT_SERVER_PYTHON)")
        self.args = [self.python, "-m", "hdrlift.engine.server", "--host", "127.0.0.1", "--port", "0", *args]
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.lines: list[str] = []
        self.address = ""
        self.port = 0
        self.started: dict = {}  # the server's "started" record (port, metrics_port, roots...)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ServerProcess":
        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, text=True, env=self.env)
        for line in self.proc.stderr:  # until the started line (or the process ends)
            self.lines.append(line)
            if line.startswith("{"):
                rec = json.loads(line)
                if rec.get("event") == "started":
                    self.started = rec
                    self.port = int(rec["port"])
                    self.address = f"127.0.0.1:{self.port}"
                    break
        if not self.address:
            self.proc.wait(30)
            raise RuntimeError(f"hdrlift-serve did not start (exit {self.proc.returncode}): {''.join(self.lines)[-2000:]}")
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory_kib(self) -> tuple[int, int]:
        """(resident now, resident at its peak) of the server process, KiB (Linux /proc)."""
        fields = dict(ln.split(":", 1) for ln in open(f"/proc/{self.proc.pid}/status") if ":" in ln)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def __exit__(self, *exc) -> None:
        self.stop()
