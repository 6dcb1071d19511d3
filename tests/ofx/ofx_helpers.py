"""Helpers of the OpenFX plug-in tests (tests/ofx): where the build is, the test host runner,
and a fake server for the cases a real one cannot make deterministic."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import threading
import time
from concurrent import futures

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = os.environ.get("HDRLIFT_OFX_BUILD")  # set by `make test-ofx`
BUILD_DIR = pathlib.Path(BUILD).resolve() if BUILD else REPO / "nodes" / "ofx" / "build"
BUNDLE = BUILD_DIR / "hdrlift.ofx.bundle"
BINARY = BUNDLE / "Contents" / "Linux-x86-64" / "hdrlift.ofx"
PRIVATE = BUNDLE / "Contents" / "Linux-x86-64" / "lib" / "libhdrlift_grpc.so"
HOST = BUILD_DIR / "ofxtesthost"
ABI_DUMP = BUILD_DIR / "ofx_abi_dump"


class Blackhole:
    """A fake hdrlift server that lists one model and never answers a frame: each frame call
    touches `trigger` (if set) when it arrives, then waits until the caller cancels it or its
    deadline passes (`ended` is set then)."""

    def __init__(self):
        import grpc

        from hdrlift.plugin.v1 import hdrlift_pb2 as pb
        from hdrlift.plugin.v1 import hdrlift_pb2_grpc as pb_grpc

        self.arrived = threading.Event()
        self.ended = threading.Event()
        self.trigger: pathlib.Path | None = None
        outer = self

        class Servicer(pb_grpc.HdrliftServicer):
            def ListModels(self, request, context):
                return pb.ListModelsReply(models=[pb.ModelDescription(name="blackhole", runnable=True)],
                                          default_model="blackhole")

            def _hold(self, context):
                done = threading.Event()
                context.add_callback(done.set)  # runs when the call ends: cancelled, deadline
                if outer.trigger is not None:
                    outer.trigger.touch()
                outer.arrived.set()
                done.wait(60)
                outer.ended.set()
                context.abort(grpc.StatusCode.CANCELLED, "the caller went away")

            def Reconstruct(self, request, context):
                self._hold(context)

            def ReconstructStream(self, request_iterator, context):
                next(request_iterator)
                self._hold(context)
                yield pb.StreamReply()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_HdrliftServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace=None)


# ---------------------------------------------------------------------------------------- host
class HostRun:
    """What one ofxtesthost run left: its JSON report, the outputs (top row first, float32,
    H x W x C) and how long it took."""

    def __init__(self, report: dict, outputs: list[np.ndarray | None], seconds: float, stderr: str):
        self.report, self.outputs, self.seconds, self.stderr = report, outputs, seconds, stderr

    @property
    def output(self) -> np.ndarray:
        return self.outputs[0]

    def messages(self, kind: str | None = None) -> list[dict]:
        return [m for m in self.report["messages"] if kind is None or m["kind"] == kind]

    def errors(self) -> list[str]:
        return [m["text"] for m in self.report["messages"] if m["kind"] in ("message", "persistent")
                and m["type"] == "OfxMessageError"]

    def render_status(self, instance: int = 0) -> list[int]:
        return self.report["instances"][instance]["render_status"]


DEPTHS = {"byte": np.uint8, "short": np.uint16, "float": np.float32}


def run_host(tmp_path: pathlib.Path, image: np.ndarray | None, *, depth: str = "float", premult: str = "premult",
             params: dict | None = None, edits: dict | None = None, tiles: tuple | None = None,
             parallel: bool = False, instances: int = 1, extra: list[str] | None = None, env: dict | None = None,
             timeout: float = 300) -> HostRun:
    """Run ofxtesthost on `image` (H x W x C, top row first, in `depth`'s sample type)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    lines = [f"bundle {BUNDLE}", f"report {tmp_path / 'report.json'}"]
    if image is not None:
        h, w, c = image.shape
        raw = tmp_path / "input.raw"
        np.ascontiguousarray(image, dtype=DEPTHS[depth]).tofile(raw)
        lines += [f"input {raw} {w} {h} {c} {depth} {premult}", f"output {tmp_path / 'output.raw'}"]
    for k, v in (params or {}).items():
        lines.append(f"param {k} {v}")
    for k, v in (edits or {}).items():
        lines.append(f"edit {k} {v}")
    if tiles:
        lines.append(f"tiles {tiles[0]} {tiles[1]}{' parallel' if parallel else ''}")
    if instances != 1:
        lines.append(f"instances {instances}")
    lines += extra or []
    job = tmp_path / "job.txt"
    job.write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    r = subprocess.run([str(HOST), str(job)], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    seconds = time.monotonic() - t0
    assert r.returncode == 0, f"ofxtesthost exited {r.returncode}: {r.stderr[-3000:]}"
    report = json.loads((tmp_path / "report.json").read_text())
    outputs = []
    if image is not None:
        h, w = image.shape[:2]
        for i, inst in enumerate(report["instances"]):
            path = tmp_path / ("output.raw" if instances == 1 else f"output.raw.{i}")
            ch = inst["out_channels"]
            outputs.append(np.fromfile(path, np.float32).reshape(h, w, ch) if path.exists() else None)
    return HostRun(report, outputs, seconds, r.stderr)
