"""Path jobs: files on storage the server shares, converted by the file loop.

:class:`JobManager` confines every path to the ``--root`` folders, runs jobs on its own threads
(``--job-workers``), keeps their records (and, with ``--state-dir``, persists them as JSON so
that unfinished jobs resume after a restart).
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import pathlib
import queue
import re
import stat
import threading
import time
import uuid
from typing import TYPE_CHECKING, Iterator

from hdrlift.engine.atomic import atomic_write_text
from hdrlift.engine.convert import OutputPattern, sequence_pattern
from hdrlift.engine.errors import HdrliftError
from hdrlift.engine.io.exr import check_compression
from hdrlift.engine.server.errors import SC, RpcFailure, failure_for
from hdrlift.plugin.v1 import hdrlift_pb2 as pb

if TYPE_CHECKING:
    from hdrlift.engine.server.service import HdrliftServer

log = logging.getLogger("hdrlift.server")


def shown(text: str, limit: int = 200) -> str:
    """A client's string in a message: quoted, cut when long (statuses never echo unbounded input)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


_TERMINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
_JOB_ID = re.compile(r"[0-9a-f]{32}")


class _JobCancelled(Exception):
    pass


class JobRecord:
    def __init__(self, spec: pb.JobSpec, source: str, output: str, job_id: str | None = None):
        self.id = job_id or uuid.uuid4().hex
        self.spec = spec
        self.source = source
        self.output = output
        self.state = pb.JOB_STATE_QUEUED
        self.done = 0
        self.total = -1
        self.fps = 0.0
        self.t0: float | None = None
        self.t1: float | None = None
        self.error = ""
        self.error_code = 0
        self.written = 0
        self.skipped = 0
        self.cancel = threading.Event()
        self.version = 0
        self.pattern = ""
        self.resume_on_start = False  # interrupted by a shutdown: run again when the server restarts
        self.persisted: tuple | None = None  # (state, resume_on_start) last written to --state-dir

    def proto(self) -> pb.Job:
        el = 0.0
        if self.t0 is not None:
            el = (self.t1 or time.monotonic()) - self.t0
        return pb.Job(id=self.id, state=self.state, spec=self.spec, done=self.done, total=self.total,
                      fps=self.fps, elapsed_seconds=el, error=self.error, error_code=self.error_code,
                      written=self.written, skipped=self.skipped, output_pattern=self.pattern)


class JobManager:
    """Runs path jobs one (``job_workers``) at a time; confines every path to the roots."""

    MAX_KEPT = 1000

    def __init__(self, server: "HdrliftServer", roots: tuple[str, ...], workers: int,
                 state_dir: str | None = None):
        self.server = server
        self.roots = tuple(os.path.realpath(r) for r in roots)
        self._jobs: collections.OrderedDict[str, JobRecord] = collections.OrderedDict()
        self._cond = threading.Condition()
        # daemon threads: a job stuck in a read (a slow network share) never keeps the process
        # alive past its shutdown (the server's --grace bounds the wait, then it exits)
        self._queue: queue.Queue = queue.Queue()
        self._workers = [threading.Thread(target=self._worker, name=f"job-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for th in self._workers:
            th.start()
        self.state_dir = pathlib.Path(state_dir) / "jobs" if state_dir else None

    def _worker(self) -> None:
        while True:
            rec = self._queue.get()
            if rec is None:
                return
            self._run(rec)

    # -- records on disk (--state-dir): one JSON file per job, written at each change of state
    def _persist(self, rec: JobRecord) -> None:
        key = (rec.state, rec.resume_on_start)
        if self.state_dir is None or rec.persisted == key:
            return
        data = {"format": 1, "id": rec.id, "spec": base64.b64encode(rec.spec.SerializeToString()).decode(),
                "source": rec.source, "output": rec.output, "state": pb.JobState.Name(rec.state),
                "resume_on_start": rec.resume_on_start, "done": rec.done, "total": rec.total,
                "written": rec.written, "skipped": rec.skipped, "error": rec.error, "error_code": rec.error_code,
                "pattern": rec.pattern}
        try:
            atomic_write_text(self.state_dir / f"{rec.id}.json", json.dumps(data) + "\n")
            rec.persisted = key
        except OSError as exc:
            log.warning("cannot record job %s in %s: %s", rec.id, self.state_dir, exc.strerror or exc)

    def _forget(self, rec: JobRecord) -> None:
        if self.state_dir is not None:
            try:
                (self.state_dir / f"{rec.id}.json").unlink()
            except OSError:
                pass

    def restore(self) -> tuple[int, int]:
        """Load the records of ``--state-dir``: finished jobs come back as they ended; jobs that
        were queued or running when the server stopped (shut down or killed) run again, with
        ``resume`` (frames already complete are kept) and without ``overwrite``. Their paths are
        confined to the current ``--root`` folders again. Unreadable files are skipped with a
        warning. Returns (records loaded, jobs resumed)."""
        if self.state_dir is None:
            return 0, 0
        found = []
        for f in sorted(self.state_dir.glob("*.json")):
            try:
                d = json.loads(f.read_text())
                if d.get("format") != 1 or not _JOB_ID.fullmatch(str(d.get("id"))) \
                        or f.stem != d["id"]:
                    raise ValueError("not a job record of this version")
                spec = pb.JobSpec.FromString(base64.b64decode(d["spec"], validate=True))
                state = pb.JobState.Value(d["state"])
                found.append((f.stat().st_mtime, d, spec, state))
            except Exception as exc:  # noqa: BLE001 - unreadable, not JSON, a damaged protobuf...
                log.warning("skipping job record %s: %s", f.name, exc)
        resumed = 0
        for _, d, spec, state in sorted(found, key=lambda t: t[0]):
            rec = JobRecord(spec, str(d["source"]), str(d["output"]), job_id=d["id"])
            rec.pattern = str(d.get("pattern", ""))
            for k in ("done", "total", "written", "skipped", "error_code"):
                setattr(rec, k, int(d.get(k, getattr(rec, k))))
            rec.error = str(d.get("error", ""))
            rec.state = state
            rec.persisted = (state, bool(d.get("resume_on_start")))
            unfinished = state not in _TERMINAL or bool(d.get("resume_on_start"))
            if unfinished:
                again = pb.JobSpec()
                again.CopyFrom(spec)
                again.resume, again.overwrite = True, False
                rec.spec = again
                rec.state, rec.error, rec.error_code, rec.resume_on_start = pb.JOB_STATE_QUEUED, "", 0, False
                try:
                    rec.source = self.confine(spec.source, "source")
                    rec.output = self.confine(spec.output, "output")
                except RpcFailure as exc:
                    rec.state, rec.error, rec.error_code = pb.JOB_STATE_FAILED, f"not resumed: {exc.message}", \
                        exc.code.value[0]
                    unfinished = False
            with self._cond:
                self._jobs[rec.id] = rec
                self._persist(rec)
            if unfinished:
                resumed += 1
                self._queue.put(rec)
        return len(found), resumed

    # -- paths
    def confine(self, path: str, what: str) -> str:
        if not self.roots:
            raise RpcFailure(SC.FAILED_PRECONDITION, "this server takes no path jobs (started without --root)")
        if not path:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"{what} path is empty")
        if "\x00" in path or len(path) > 4096:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"{what} path is not a valid path")
        parts = pathlib.PurePosixPath(path.replace("\\", "/")).parts
        if ".." in parts:
            raise RpcFailure(SC.INVALID_ARGUMENT, f"{what} path {shown(path)} contains '..'")
        if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
            raise RpcFailure(SC.INVALID_ARGUMENT, f"{what} path {shown(path)} has a name longer than 255 bytes")
        full = path if os.path.isabs(path) else os.path.join(self.roots[0], path)
        real = os.path.realpath(full)
        if not self._inside(real):
            raise RpcFailure(SC.PERMISSION_DENIED, f"{what} path {shown(path)} is outside the server's --root folders")
        return real

    def guard_write(self, path: pathlib.Path) -> None:
        """The file loop's ``confine``: the real path of a folder or file about to be made (and of
        a file just written) must lie inside a root, whatever links appeared since the job was
        submitted. PERMISSION_DENIED otherwise; the job fails and nothing is left outside."""
        real = os.path.realpath(path)
        if not self._inside(real):
            raise RpcFailure(SC.PERMISSION_DENIED, f"{shown(str(path))} resolves outside the server's --root "
                             "folders (a link changed after the job was submitted)")

    def _check_source(self, source: str) -> None:
        """A source is a regular file (a FIFO would block its reader; a device is no picture), or a
        sequence pattern whose files each resolve inside a root."""
        if os.path.lexists(source):
            try:
                st = os.stat(source)
            except OSError as exc:
                raise RpcFailure(SC.FAILED_PRECONDITION, f"source {shown(source)}: {exc.strerror or exc}") from None
            if not stat.S_ISREG(st.st_mode):
                raise RpcFailure(SC.FAILED_PRECONDITION, f"source {shown(source)} is not a regular file")
            return
        self._check_sequence_members(source)

    def _inside(self, real: str) -> bool:
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    def _check_sequence_members(self, source: str) -> None:
        """A sequence's files may be symlinks: each must resolve inside a root too."""
        from hdrlift.engine.io.images import parse_sequence_pattern

        if os.path.exists(source):
            return
        parsed = parse_sequence_pattern(source)
        if parsed is None:
            return
        folder, regex, _ = parsed
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for n in names:
            if regex.match(n) and not self._inside(os.path.realpath(os.path.join(folder, n))):
                raise RpcFailure(SC.PERMISSION_DENIED, f"sequence file {shown(n)} links outside the server's --root "
                                 "folders")

    # -- API
    def submit(self, spec: pb.JobSpec) -> JobRecord:
        source = self.confine(spec.source, "source")
        self._check_source(source)
        output = self.confine(spec.output, "output")
        if spec.compression:
            try:
                check_compression(spec.compression)
            except HdrliftError as exc:
                raise RpcFailure(SC.INVALID_ARGUMENT, str(exc)) from None
        for name in ("start", "end"):
            if spec.HasField(name) and getattr(spec, name) < 0:
                raise RpcFailure(SC.OUT_OF_RANGE, f"{name} frame {getattr(spec, name)} is negative")
        if spec.HasField("start") and spec.HasField("end") and spec.end < spec.start:
            raise RpcFailure(SC.OUT_OF_RANGE, f"frame range {spec.start}-{spec.end} is empty")
        if spec.every > 1_000_000:
            raise RpcFailure(SC.OUT_OF_RANGE, f"every {spec.every} is out of range")
        if spec.overwrite and spec.resume:
            raise RpcFailure(SC.INVALID_ARGUMENT, "resume and overwrite exclude each other")
        model = spec.model or self.server.config.model
        self.server.check_model(model)
        for name in (spec.input_space, spec.output_space):
            if name:
                self.server.resolve_space(name)
        if spec.single:
            if not output.lower().endswith(".exr"):
                raise RpcFailure(SC.INVALID_ARGUMENT, f"output {shown(spec.output)} must be an .exr file")
        else:
            try:
                folder = str(OutputPattern.for_source(source, output).folder)
            except HdrliftError as exc:
                raise RpcFailure(SC.INVALID_ARGUMENT, str(exc)) from None
            if not self._inside(os.path.realpath(folder)):
                raise RpcFailure(SC.PERMISSION_DENIED, "output folder is outside the server's --root folders")
        rec = JobRecord(spec, source, output)
        with self._cond:
            if self.server.draining:
                raise RpcFailure(SC.UNAVAILABLE, "server is shutting down")
            self._jobs[rec.id] = rec
            while len(self._jobs) > self.MAX_KEPT:
                oldest = next(iter(self._jobs.values()))
                if oldest.state not in _TERMINAL:
                    break
                self._jobs.popitem(last=False)
                self._forget(oldest)
            self._persist(rec)
        self._queue.put(rec)
        return rec

    def get(self, job_id: str) -> JobRecord:
        rec = None
        if _JOB_ID.fullmatch(job_id or ""):
            with self._cond:
                rec = self._jobs.get(job_id)
        if rec is None:
            raise RpcFailure(SC.NOT_FOUND, f"no job {shown(job_id, 64)}")
        return rec

    def cancel(self, job_id: str) -> JobRecord:
        rec = self.get(job_id)
        self._update(rec, lambda r: r.cancel.set())
        return rec

    def cancel_all(self, resume_on_start: bool = False) -> None:
        """Cancel every unfinished job; ``resume_on_start`` (a shutdown with ``--state-dir``)
        records them to run again when the server restarts."""
        with self._cond:
            recs = list(self._jobs.values())

        def stop(r):
            r.resume_on_start = resume_on_start and self.state_dir is not None
            r.cancel.set()
        for r in recs:
            if r.state not in _TERMINAL and not r.cancel.is_set():  # a user's cancel stays a cancel
                self._update(r, stop)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Cancel every job and wait for the running ones to stop, ``timeout`` seconds at most
        (None: as long as it takes). True when every job thread has ended."""
        self.cancel_all(resume_on_start=True)
        for _ in self._workers:
            self._queue.put(None)
        end = None if timeout is None else time.monotonic() + timeout
        for th in self._workers:
            th.join(None if end is None else max(0.0, end - time.monotonic()))
        return not any(th.is_alive() for th in self._workers)

    def watch(self, job_id: str, context) -> Iterator[pb.Job]:
        rec = self.get(job_id)
        seen = -1
        while True:
            with self._cond:
                while rec.version == seen and context.is_active():
                    self._cond.wait(0.25)
                seen = rec.version
                snap = rec.proto()
            if not context.is_active():
                return
            yield snap
            if snap.state in _TERMINAL:
                return

    def _update(self, rec: JobRecord, fn) -> None:
        with self._cond:
            fn(rec)
            rec.version += 1
            self._persist(rec)  # only when the state changed
            self._cond.notify_all()

    def _run(self, rec: JobRecord) -> None:
        if rec.cancel.is_set():
            self._update(rec, lambda r: setattr(r, "state", pb.JOB_STATE_CANCELLED))
            return
        spec = rec.spec

        def started(r):
            r.state = pb.JOB_STATE_RUNNING
            r.t0 = time.monotonic()
        self._update(rec, started)
        last = [0.0]

        def progress(done: int, total: int | None, elapsed: float) -> None:
            if rec.cancel.is_set():
                raise _JobCancelled()
            now = time.monotonic()
            def upd(r):
                r.done, r.total = done, (total if total is not None else -1)
                r.fps = done / elapsed if elapsed > 0 else 0.0
            if now - last[0] >= 0.1 or (total is not None and done >= total):
                last[0] = now
                self._update(rec, upd)
            else:
                upd(rec)

        try:
            pipe = self.server.job_pipeline(
                spec.model or self.server.config.model, spec.output_space or self.server.config.output_space,
                spec.input_space or None, half=not spec.float_output, compression=spec.compression or "zip",
                mask_layer=spec.mask_layer)
            if not spec.single:
                rec.pattern = sequence_pattern(rec.source, rec.output)
            else:
                rec.pattern = rec.output
            # the paths again, as they are now: a link may have changed since the job was submitted
            if self.confine(spec.source, "source") != rec.source:
                raise RpcFailure(SC.PERMISSION_DENIED, "the source path resolves elsewhere than when the job was "
                                 "submitted")
            self._check_source(rec.source)
            report = pipe.convert(rec.source, rec.output, start=spec.start if spec.HasField("start") else None,
                                  end=spec.end if spec.HasField("end") else None, every=spec.every or 1,
                                  resume=spec.resume, overwrite=spec.overwrite, progress=progress,
                                  single=spec.single, confine=self.guard_write)

            def finished(r):
                r.state = pb.JOB_STATE_SUCCEEDED
                r.t1 = time.monotonic()
                r.done = report.frames
                r.total = max(r.total, report.frames)
                r.written, r.skipped = len(report.written), len(report.skipped)
                r.fps = report.fps
            self._update(rec, finished)
            self.server.metrics.frames_done(spec.model or self.server.config.model, len(report.written))
        except _JobCancelled:
            def cancelled(r):
                r.state = pb.JOB_STATE_CANCELLED
                r.t1 = time.monotonic()
                if r.resume_on_start:
                    r.error = "interrupted by the server's shutdown; it resumes when the server restarts"
            self._update(rec, cancelled)
        except BaseException as exc:  # noqa: BLE001 - recorded on the job
            f = failure_for(exc)

            def failed(r):
                r.state = pb.JOB_STATE_FAILED
                r.t1 = time.monotonic()
                r.error, r.error_code = f.message, f.code.value[0]
            self._update(rec, failed)


