"""The step environment's session server outside openjd: it answers while the session lives,
stops when the worker removes the session's folder (its exit action never ran), and a server that
cannot start fails the environment with its log."""

from __future__ import annotations

import json
import re
import socket

import pytest
from farm_helpers import farm, process_gone, wait_for

pytestmark = pytest.mark.timeout(300)


def test_server_stops_when_the_session_folder_goes(tmp_path):
    session = tmp_path / "session"
    state = session / "hdrlift-serve.json"
    r = farm("session-start", "--state", state, "--model", "inverse-crf", "--backend", "torch", "--grace", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    env = [line for line in r.stdout.splitlines() if line.startswith("openjd_env: ")]
    assert len(env) == 1 and env[0].startswith("openjd_env: HDRLIFT_FARM_SERVER=127.0.0.1:")
    port = int(env[0].rsplit(":", 1)[1])
    pids = json.loads(state.read_text())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # the server listens
        state.unlink()  # what a worker agent's clean-up of a finished session amounts to
        wait_for(lambda: process_gone(pids["server"]) and process_gone(pids["supervisor"]), 60,
                 "the server to stop once its session's state file is gone", step=0.05)
        log = (session / "hdrlift-serve.json.log").read_text()
        assert '"event": "stopped"' in log
    finally:
        if not (process_gone(pids["server"]) and process_gone(pids["supervisor"])):
            state.write_text(json.dumps(pids))
            farm("session-stop", "--state", state, "--grace", "2")


def test_server_that_cannot_start_fails_the_environment(tmp_path):
    state = tmp_path / "hdrlift-serve.json"
    r = farm("session-start", "--state", state, "--model", "nope")
    assert r.returncode == 2
    assert "hdrlift-serve: error: unknown model 'nope'" in r.stdout  # the server's log, in the job log
    assert re.fullmatch(r"hdrlift-farm: error: hdrlift-serve exited with status [1-9]\d* \(log above\)\n", r.stderr)
    pids = json.loads(state.read_text()) if state.exists() else {}
    assert all(process_gone(p) for p in pids.values())


def test_session_stop_without_a_server_is_a_no_op(tmp_path):
    r = farm("session-stop", "--state", tmp_path / "hdrlift-serve.json")
    assert r.returncode == 0 and "no session server to stop" in r.stdout
