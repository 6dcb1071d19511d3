"""``hdrlift-farm``: render-farm jobs for hdr-video conversions (docs/farm.md).

    hdrlift-farm openjd  INPUT OUTPUT --chunk 10 [--bundle DIR] [--server session|none|HOST:PORT,...]
    hdrlift-farm opencue INPUT OUTPUT --chunk 10 [-o job.xml] [--server none|HOST:PORT,...]

and the commands the generated jobs run on the workers (``task``, ``session-start``,
``session-stop``). Errors are one line, ``hdrlift-farm: error: ...``, exit status 2 for a job that
cannot be made (bad range, chunk size, paths, server), as hdr-video's for input/model problems.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from hdrlift.engine import __version__
from hdrlift.engine.errors import HdrliftError

PROG = "hdrlift-farm"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``hdrlift-farm: error: ...``, exit 2."""

    def error(self, message: str):  # noqa: D401
        print(f"{PROG}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _conversion_args(p: argparse.ArgumentParser, *, openjd: bool) -> None:
    p.add_argument("input", help="SDR video, or image sequence pattern (name.####.png)")
    p.add_argument("output", help="EXR pattern (dir/shot.####.exr) or folder (frames become FOLDER/<input>.####.exr)")
    p.add_argument("--frames", metavar="START-END", help="source frames to convert (default: all of the input)")
    p.add_argument("--chunk", type=int, default=10, metavar="N", help="frames per task (default 10)")
    p.add_argument("--model", help="reconstruction model (default hdrcnn-lite)")
    p.add_argument("--output-colorspace", metavar="NAME", help="colour space of the EXRs (default ACEScg)")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:N, mps")
    p.add_argument("--backend", default="auto", help="auto (default), torch, onnxruntime, tensorrt")
    p.add_argument("--keep-existing", action="store_true",
                   help="accept frames already in the output folder (the tasks' --resume keeps them): to complete "
                        "an earlier run; by default they are refused")
    if openjd:
        p.add_argument("--server", default="session", metavar="MODE",
                       help="session (default): one hdrlift-serve per worker session, the model loaded once "
                            "for all its tasks; none: each task loads the model; HOST:PORT[,HOST:PORT...]: "
                            "tasks use these running servers")
    else:
        p.add_argument("--server", default="none", metavar="MODE",
                       help="none (default): each task loads the model; HOST:PORT[,HOST:PORT...]: tasks "
                            "send frames to these running hdrlift-serve servers")


def build_parser() -> argparse.ArgumentParser:
    from hdrlift.engine.farm.worker import add_worker_commands

    ap = _Parser(prog=PROG, description="Render-farm jobs for hdr-video: OpenJD job bundles (AWS Deadline "
                 "Cloud, openjd run) and OpenCue jobs, one task per frame-range chunk. See docs/farm.md.")
    ap.add_argument("--version", action="version", version=f"hdrlift {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    o = sub.add_parser("openjd", help="write an OpenJD job bundle (template.yaml + parameter values)",
                       description="Write an Open Job Description 2023-09 job bundle for one conversion: "
                       "template.yaml, parameter_values.yaml (AWS Deadline Cloud) and openjd-params.json "
                       "(openjd run).")
    _conversion_args(o, openjd=True)
    o.add_argument("--bundle", metavar="DIR", help="bundle folder (default ./hdrlift-job-<input name>)")
    o.add_argument("--no-task-chunking", dest="chunking", action="store_false",
                   help="plain INT task parameter (one task per chunk start) for schedulers without the "
                        "TASK_CHUNKING extension")
    o.add_argument("--hdrlift-farm", metavar="CMD",
                   help="hdrlift-farm on the workers, if not on their PATH (e.g. /opt/hdrlift/bin/hdrlift-farm)")
    o.set_defaults(func=_openjd)

    c = sub.add_parser("opencue", help="write an OpenCue job (pyoutline, one layer per chunk)",
                       description="Build an OpenCue job with pyoutline, one Shell layer per frame-range "
                       "chunk, and write its job spec (XML), or launch it on Cuebot.")
    _conversion_args(c, openjd=False)
    c.add_argument("-o", "--spec", metavar="FILE", help="write the job spec XML here (default: stdout)")
    c.add_argument("--name", help="job name (default hdrlift_<input name>)")
    c.add_argument("--show", help="OpenCue show (default: $SHOW or pyoutline's config)")
    c.add_argument("--shot", help="OpenCue shot (default: $SHOT or pyoutline's config)")
    c.add_argument("--user", help="job owner (default: the current user)")
    c.add_argument("--service", help="OpenCue service of the layers (default: shell)")
    c.add_argument("--tags", help="host tags, e.g. 'gpu | linux'")
    c.add_argument("--cores", type=float, help="cores per frame")
    c.add_argument("--memory", help="memory per frame, e.g. 8g")
    c.add_argument("--gpus", type=int, help="GPUs per frame")
    c.add_argument("--pause", action="store_true", help="launch paused")
    c.add_argument("--priority", type=int, default=1)
    c.add_argument("--hdr-video", default="hdr-video", metavar="CMD", help="hdr-video on the render nodes")
    c.add_argument("--launch", action="store_true", help="submit to Cuebot instead of writing the spec")
    c.add_argument("--cuebot", metavar="HOST", help="Cuebot host for --launch (default: opencue's config)")
    c.set_defaults(func=_opencue)

    add_worker_commands(sub)
    return ap


def _plan(args: argparse.Namespace, *, session_allowed: bool):
    from hdrlift.engine.farm.spec import plan

    return plan(args.input, args.output, frames=args.frames, chunk=args.chunk, model=args.model,
                output_colorspace=args.output_colorspace, device=args.device, backend=args.backend,
                server=args.server, session_allowed=session_allowed, keep_existing=args.keep_existing)


def _openjd(args: argparse.Namespace) -> int:
    from hdrlift.engine.farm.openjd import write_bundle
    from hdrlift.engine.farm.spec import FarmError

    conv = _plan(args, session_allowed=True)
    bundle = args.bundle or f"hdrlift-job-{conv.input.stem or 'input'}"
    try:
        out = write_bundle(conv, bundle, chunking=args.chunking, hdrlift_farm=args.hdrlift_farm)
    except ValueError as exc:  # openjd-model refused the template or the values
        raise FarmError(f"OpenJD refuses the job: {exc}") from None
    kind = "CHUNK[INT] (TASK_CHUNKING)" if args.chunking else "plain INT (no extensions)"
    n = len(conv.chunks())
    print(f"{PROG}: wrote {out}: frames {conv.first}-{conv.last}, {n} task{'s' * (n != 1)} of up to "
          f"{conv.chunk} frames, {kind}, server {conv.server}")
    print(f"  run here:           openjd run {shlex.quote(str(out / 'template.yaml'))} "
          f"-p {shlex.quote('file://' + str(out / 'openjd-params.json'))}")
    print(f"  submit to Deadline: deadline bundle submit {shlex.quote(str(out))}")
    return 0


def _opencue(args: argparse.Namespace) -> int:
    from hdrlift.engine.farm import opencue

    conv = _plan(args, session_allowed=False)
    ol = opencue.build_outline(conv, name=args.name, show=args.show, shot=args.shot, user=args.user,
                               service=args.service, tags=args.tags, cores=args.cores, memory=args.memory,
                               gpus=args.gpus, hdr_video=args.hdr_video)
    spec = opencue.serialize(ol, pause=args.pause, priority=args.priority)
    if args.launch:
        jobs = opencue.launch(spec, args.cuebot)
        print(f"{PROG}: launched {', '.join(j.name() for j in jobs)}")
    elif args.spec:
        opencue.write_spec(spec, args.spec)
        print(f"{PROG}: wrote {args.spec}: {len(conv.chunks())} layers, frames {conv.first}-{conv.last}")
    else:
        sys.stdout.write(spec + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HdrliftError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line; HDRLIFT_DEBUG=1 shows the traceback
        if os.environ.get("HDRLIFT_DEBUG", "").strip() not in ("", "0"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"{PROG}: error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
