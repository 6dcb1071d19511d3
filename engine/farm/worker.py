"""What runs on the farm worker: a chunk's ``hdr-video`` and the session's ``hdrlift-serve``.

* ``hdrlift-farm task``: one task. It works out the chunk's frames (``--frames A-B`` from a
  CHUNK[INT] value, or ``--first``/``--size``/``--last`` from the plain-INT fallback), the server
  (``session``: the address the step environment exported in ``HDRLIFT_FARM_SERVER``) and runs
  ``hdr-video ... --frames A-B --resume`` in its place (``exec`` on POSIX), so the scheduler's
  signals reach hdr-video itself.
* ``hdrlift-farm session-start`` / ``session-stop``: the step environment. Start runs a
  supervisor in a session of its own, which starts ``hdrlift-serve --host 127.0.0.1 --port 0``
  with the job's model preloaded and logs to ``STATE.log``; start waits for the server's
  ``started`` line, then prints ``openjd_env: HDRLIFT_FARM_SERVER=127.0.0.1:PORT`` for the tasks.
  Stop asks the supervisor to stop the server (SIGTERM, the server drains), kills what is left
  after the grace period, and prints the server's log into the job log.
  The supervisor also stops the server when ``STATE`` (in the session's working directory)
  disappears, which is what a worker agent does to a finished session, so a worker that never ran
  the environment's exit action does not keep a model in memory for ever.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

from hdrlift.engine.farm.spec import NONE, SESSION, FarmError, check_server, hdr_video_args, parse_frames

SERVER_ENV = "HDRLIFT_FARM_SERVER"


# -- helpers ------------------------------------------------------------------------------------

def _console_script(name: str, module: str) -> list[str]:
    """The console script installed beside this Python (the same hdrlift), else ``python -m``."""
    bindir = pathlib.Path(sys.executable).parent
    for candidate in (bindir / name, bindir / f"{name}.exe"):
        if candidate.is_file():
            return [str(candidate)]
    return [sys.executable, "-m", module]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # Windows: no such process
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _ours(pid: int) -> bool:
    """Whether ``pid`` still runs hdrlift (not a recycled pid): its command line names hdrlift
    where /proc tells; elsewhere, whether it is alive."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"hdrlift" in f.read()
    except OSError:
        return alive(pid)


def _wait_gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _write_json(path: pathlib.Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def started_port(log: pathlib.Path) -> int | None:
    """The port of hdrlift-serve's ``{"event": "started", "port": N}`` line, once it is logged."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if '"started"' not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "started" and isinstance(rec.get("port"), int):
            return rec["port"]
    return None


def _tail(path: pathlib.Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- task ---------------------------------------------------------------------------------------

def task(args: argparse.Namespace) -> int:
    if args.frames is not None:
        if args.first is not None:
            raise FarmError("give --frames A-B or --first/--size/--last, not both")
        first, last = parse_frames(args.frames)
    else:
        if args.first is None or args.size is None or args.last is None:
            raise FarmError("give --frames A-B, or --first, --size and --last")
        if args.size < 1:
            raise FarmError(f"--size must be at least 1, got {args.size}")
        first, last = args.first, min(args.first + args.size - 1, args.last)
        if last < first:
            raise FarmError(f"chunk start {args.first} is past the last frame {args.last}")
        parse_frames(f"{first}-{last}")
    if not re.search(r"#+|%0?\d*d", pathlib.Path(args.output).name):
        raise FarmError(f"output pattern {args.output!r} has no frame number field (#### or %04d)")
    server = check_server(args.server)
    if server == SESSION:
        server = os.environ.get(SERVER_ENV, "")
        if not server:
            raise FarmError(f"--server session, but {SERVER_ENV} is not set: the step environment that "
                            "starts the session's hdrlift-serve did not run")
    elif server == NONE:
        server = ""
    frames = f"{first}-{last}"
    cmd = _console_script("hdr-video", "hdrlift.engine.cli") + hdr_video_args(
        args.input, args.output, frames=frames, model=args.model, output_colorspace=args.output_colorspace,
        device=args.device, backend=args.backend, server=server or None)
    print(f"hdrlift-farm: frames {frames}: {shlex.join(cmd)}", flush=True)
    if os.name == "posix":
        os.execv(cmd[0], cmd)  # the task's process becomes hdr-video: signals and exit status are its own
    return subprocess.call(cmd)


# -- session server -----------------------------------------------------------------------------

def session_start(args: argparse.Namespace) -> int:
    server = check_server(args.server)
    if server != SESSION:
        where = "load the model themselves" if server == NONE else f"use {server}"
        print(f"hdrlift-farm: no session server: tasks {where}", flush=True)
        return 0
    if os.name != "posix":
        raise FarmError("a session server needs a POSIX worker (Linux, macOS); on Windows workers give the "
                        "job --server HOST:PORT or none")
    state = pathlib.Path(args.state).absolute()
    log = state.with_name(state.name + ".log")
    state.parent.mkdir(parents=True, exist_ok=True)
    serve = _console_script("hdrlift-serve", "hdrlift.engine.server") + [
        "--host", "127.0.0.1", "--port", "0", "--model", args.model, "--preload", args.model,
        "--device", args.device, "--backend", args.backend, "--grace", str(args.grace)]
    with open(log, "ab") as log_fh:
        sup = subprocess.Popen(
            [sys.executable, "-m", "hdrlift.engine.farm", "supervise", "--state", str(state),
             "--grace", str(args.grace), "--", *serve],
            stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh, start_new_session=True, close_fds=True)
    print(f"hdrlift-farm: starting {shlex.join(serve)} (supervisor pid {sup.pid}, log {log})", flush=True)
    deadline = time.monotonic() + args.timeout
    port = None
    while port is None:
        port = started_port(log)
        if port is not None:
            break
        if sup.poll() is not None or time.monotonic() > deadline:
            why = (f"exited with status {sup.returncode}" if sup.returncode is not None
                   else f"did not start within {args.timeout:g} s")
            _stop_supervisor(sup.pid, _read_json(state), args.grace)
            state.unlink(missing_ok=True)
            sys.stdout.write(_tail(log) + "\n")
            raise FarmError(f"hdrlift-serve {why} (log above)")
        time.sleep(0.05)
    rec = _read_json(state) or {}
    address = f"127.0.0.1:{port}"
    print(f"hdrlift-farm: hdrlift-serve pid {rec.get('server')} listening on {address}, model {args.model} loaded",
          flush=True)
    print(f"openjd_env: {SERVER_ENV}={address}", flush=True)
    return 0


def _stop_supervisor(sup_pid: int | None, rec: dict | None, grace: float) -> bool:
    server = (rec or {}).get("server")
    pids = [p for p in (sup_pid, server) if isinstance(p, int) and _ours(p)]
    # the supervisor stops the server; if the supervisor is gone, the server is asked directly
    target = sup_pid if sup_pid in pids and alive(sup_pid) else server
    if target in pids and alive(target):
        try:
            os.kill(target, signal.SIGTERM)
        except OSError:
            pass
    if _wait_gone(pids, grace + 10):
        return True
    for p in pids:  # a stuck server or supervisor: kill it
        try:
            os.kill(p, getattr(signal, "SIGKILL", signal.SIGTERM))
        except OSError:
            pass
    return _wait_gone(pids, 10)


def session_stop(args: argparse.Namespace) -> int:
    state = pathlib.Path(args.state).absolute()
    log = state.with_name(state.name + ".log")
    rec = _read_json(state)
    if rec is None:
        print("hdrlift-farm: no session server to stop", flush=True)
        return 0
    clean = _stop_supervisor(rec.get("supervisor"), rec, args.grace)
    state.unlink(missing_ok=True)
    print(f"hdrlift-farm: hdrlift-serve pid {rec.get('server')} {'stopped' if clean else 'could not be stopped'}; "
          "its log:", flush=True)
    sys.stdout.write(_tail(log) + "\n")
    return 0 if clean else 1


def supervise(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT or until the state file is removed, then stop it."""
    state = pathlib.Path(args.state)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise FarmError("supervise: no server command")
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    _write_json(state, {"supervisor": os.getpid(), "server": server.pid})
    while True:
        try:
            return server.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if stop or not state.exists():
            break
    server.send_signal(signal.SIGTERM)  # hdrlift-serve drains for --grace seconds
    try:
        return server.wait(timeout=args.grace + 5)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


# -- arguments ----------------------------------------------------------------------------------

def add_worker_commands(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("task", help="(on the worker) run one chunk: hdr-video --frames A-B --resume",
                       description="Run one chunk of a farm job: hdr-video INPUT OUTPUT --frames A-B --resume.")
    t.add_argument("--frames", help="the chunk, A-B or N (a CHUNK[INT] value)")
    t.add_argument("--first", type=int, help="plain-INT fallback: the chunk's first frame")
    t.add_argument("--size", type=int, help="plain-INT fallback: the chunk size")
    t.add_argument("--last", type=int, help="plain-INT fallback: the job's last frame")
    t.add_argument("--input", required=True)
    t.add_argument("--output", required=True, help="output pattern, e.g. /shots/sh010/hdr/sh010.####.exr")
    t.add_argument("--model", required=True)
    t.add_argument("--output-colorspace", required=True)
    t.add_argument("--device", default="cpu")
    t.add_argument("--backend", default="auto")
    t.add_argument("--server", default=NONE, help="session, none or HOST:PORT[,...]")
    t.set_defaults(func=task)

    s = sub.add_parser("session-start", help="(on the worker) start the worker session's hdrlift-serve")
    s.add_argument("--server", default=SESSION)
    s.add_argument("--state", required=True, help="state file in the session's working directory")
    s.add_argument("--model", required=True)
    s.add_argument("--device", default="cpu")
    s.add_argument("--backend", default="auto")
    s.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server (default 600)")
    s.add_argument("--grace", type=float, default=10.0, help="seconds the server may drain at the end")
    s.set_defaults(func=session_start)

    e = sub.add_parser("session-stop", help="(on the worker) stop the worker session's hdrlift-serve")
    e.add_argument("--state", required=True)
    e.add_argument("--grace", type=float, default=10.0)
    e.set_defaults(func=session_stop)

    v = sub.add_parser("supervise")  # internal: session-start runs it; no help, so not listed
    v.add_argument("--state", required=True)
    v.add_argument("--grace", type=float, default=10.0)
    v.add_argument("command", nargs=argparse.REMAINDER)
    v.set_defaults(func=supervise)

