"""Command-line entry points: ``hdr-video`` and ``hdr-image``.

Both drive :class:`hdrlift.engine.pipeline.Pipeline`; nothing here re-implements colour,
models or IO. Errors print one line, ``PROG: error: ...``, and exit non-zero (2 input,
3 output, 4 model, 5 colour, 6 server, 130 interrupted).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from hdrlift.engine import __version__
from hdrlift.engine.entrypoint import run_cli
from hdrlift.engine.errors import InputError
from hdrlift.plugin import read_token_file

EPILOG = """\
exit status: 0 done, 1 error, 2 bad input, 3 output cannot be written, 4 model, 5 colour,
6 server (--server: unreachable, refused, failed), 130 interrupted ({interrupted}).
Errors are one line; HDRLIFT_DEBUG=1 shows the traceback of an internal error.
"""
INTERRUPTED = {True: "finished frames are complete; rerun with --resume", False: "nothing half-written is left"}


def _frames(text: str) -> tuple[int, int | None]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)?\s*)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"frame range must be START-END, START- or N, got {text!r}")
    start = int(m.group(1))
    if start < 1:  # frames are numbered from 1, as in the EXR names
        raise argparse.ArgumentTypeError(f"frame numbers start at 1, got {text!r}")
    end = int(m.group(2)) if m.group(2) else (None if "-" in text else start)
    if end is not None and end < start:
        raise argparse.ArgumentTypeError(f"frame range {text!r} ends before it starts")
    return start, end


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def _parser(prog: str, video: bool) -> argparse.ArgumentParser:
    from hdrlift.engine.defaults import (DEFAULT_CONFIG, DEFAULT_MAX_PIXELS, DEFAULT_OUTPUT_SPACE, EXR_COMPRESSIONS,
                                         MAX_FRAME_PIXELS)
    from hdrlift.engine.models import DEFAULT_MODEL

    if video:
        desc = ("Reconstruct scene-linear HDR from an SDR video, image sequence or still, frame by frame, "
                "into an OpenEXR sequence named after the source frame numbers (name.####.exr).")
        usage = f"{prog} [options] INPUT OUTPUT_DIR_OR_PATTERN"
    else:
        desc = "Reconstruct a scene-linear HDR OpenEXR from one SDR image (PNG, JPEG, TIFF, DPX...)."
        usage = f"{prog} [options] INPUT OUTPUT.exr"
    ap = argparse.ArgumentParser(prog=prog, description=desc, usage=usage,
                                 epilog=EPILOG.format(interrupted=INTERRUPTED[video]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", help="input video (mp4, mov, mkv...), image sequence "
                    "(name.####.png or name.%%04d.png) or image" if video else "input image")
    ap.add_argument("output", nargs="?", help="output folder (frames become FOLDER/<name>.####.exr) or a pattern "
                    "with #### / %%04d" if video else "output .exr file")
    g = ap.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help=f"reconstruction model (default {DEFAULT_MODEL}); see --list-models")
    g.add_argument("--weights", metavar="FILE", help="use these .safetensors weights for the network")
    g.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1...")
    g.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                   help="inference back end (default auto: TensorRT on CUDA when installed, else the faster of "
                        "torch and onnxruntime, measured once and cached); the choice is reported")
    g.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="inference precision (default fp32)")
    g.add_argument("--device-colour", action=argparse.BooleanOptionalAction, default=None,
                   help="decode, colour in, the model and colour out on the --device, frames uploaded as integer "
                        "code values and downloaded as half floats (default: on for CUDA with the torch and "
                        "tensorrt back ends, off otherwise; docs/backends.md)")
    g.add_argument("--compile", action="store_true", help="torch back end: torch.compile the network (the first "
                   "frames of each size are slow while it compiles; needs a C++ compiler on the CPU)")
    g.add_argument("--max-pixels", type=_positive, metavar="N", help="frames above N pixels run in overlapping, "
                   f"blended tiles (default on the CPU {DEFAULT_MAX_PIXELS:,} = 1080p; on CUDA half the free GPU "
                   "memory over the model's measured memory per pixel)")
    if video:
        g.add_argument("--batch", type=_positive, metavar="N", help="frames per back-end call while N frames fit "
                       "--max-pixels together (default 4 on CUDA, 1 on the CPU)")
        g.add_argument("--encode-workers", type=_positive, default=2, metavar="N",
                       help="threads converting to the output space and writing EXRs (default 2)")
    g.add_argument("--list-models", action="store_true", help="list models and whether weights are shipped (with "
                   "--server: the server's models and whether they run there), then exit")
    c = ap.add_argument_group("colour (OpenColorIO)")
    c.add_argument("--ocio-config", metavar="CONFIG", help=f"OCIO config path or ocio:// URI (default $OCIO, else {DEFAULT_CONFIG})")
    c.add_argument("--input-colorspace", metavar="NAME", help="colour space of the input code values "
                   "(default: from the stream's colour tags; sRGB for images)")
    c.add_argument("--output-colorspace", metavar="NAME", default=DEFAULT_OUTPUT_SPACE,
                   help=f"scene-linear output space (default {DEFAULT_OUTPUT_SPACE}; e.g. lin_rec709, ACES2065-1, lin_rec2020)")
    c.add_argument("--list-colorspaces", action="store_true", help="list the config's colour spaces, then exit")
    if video:
        t = ap.add_argument_group("stream colour tags (override what the file says)")
        t.add_argument("--primaries", help="bt709, bt470bg, smpte170m, bt2020...")
        t.add_argument("--transfer", help="bt709, iec61966-2-1 (sRGB), gamma22...")
        t.add_argument("--matrix", help="bt709, smpte170m, bt470bg, bt2020nc...")
        t.add_argument("--range", choices=("tv", "pc"), help="tv (limited) or pc (full)")
        v = ap.add_argument_group("video pictures")
        v.add_argument("--no-autorotate", action="store_true", help="convert frames as coded, ignoring the "
                       "stream's display matrix (default: upright, as players show them)")
        v.add_argument("--deinterlace", action="store_true", help="deinterlace interlaced video first (FFmpeg's "
                       "yadif, one frame per frame); without it interlaced frames convert as progressive, with "
                       "a warning")
    o = ap.add_argument_group("output (OpenEXR)")
    o.add_argument("--float", action="store_true", help="write 32-bit float (default half float)")
    o.add_argument("--compression", default="zip", choices=EXR_COMPRESSIONS, help="EXR compression (default zip)")
    o.add_argument("--mask-layer", action="store_true", help="add a 'mask.Y' layer: which pixels were expanded")
    o.add_argument("--overwrite", action="store_true", help="replace existing output files")
    o.add_argument("--preview", metavar="PNG", help="also write a side-by-side PNG: input | reconstruction 3 stops darker")
    if video:
        o.add_argument("--resume", action="store_true", help="skip frames whose EXR is already complete (refused "
                       "when they were made with another model, weights or colour space)")
        d = ap.add_argument_group("delivery: an HDR10 or HLG master instead of EXRs (docs/delivery.md)")
        d.add_argument("--deliver", choices=("hdr10", "hlg"), help="write OUTPUT (.mp4, .mov) as a 10-bit HEVC "
                       "master: BT.2020, PQ (HDR10, with mastering display and MaxCLL/MaxFALL measured from the "
                       "frames) or HLG; SDR white at 203 cd/m2 (BT.2408), BT.2390 roll-off to --peak-nits; "
                       "frame rate, timestamps and audio kept")
        d.add_argument("--peak-nits", type=float, default=1000.0, metavar="CD/M2", help="the master's peak "
                       "(default 1000; PQ 400-10000, HLG 400-2000)")
        d.add_argument("--crf", type=float, default=16.0, help="x265 quality (default 16: a master)")
        d.add_argument("--preset", default="medium", help="x265 preset (default medium)")
        d.add_argument("--mastering-display", choices=("p3-d65", "bt2020"), default="p3-d65",
                       help="the mastering display the HDR10 metadata names (default p3-d65)")
        f = ap.add_argument_group("frames")
        f.add_argument("--frames", type=_frames, metavar="START-END", help="only these source frame numbers (inclusive)")
        f.add_argument("--every", type=_positive, default=1, metavar="N", help="every Nth frame of the range")
    else:
        f = ap.add_argument_group("frames")
        f.add_argument("--frame", type=_positive, metavar="N", help="the frame to convert when the input is a video "
                       "or an image sequence (one EXR holds one frame)")
    f.add_argument("--max-frame-pixels", type=_positive, default=MAX_FRAME_PIXELS, metavar="N",
                   help=f"refuse frames above N pixels before decoding them (default {MAX_FRAME_PIXELS:,} = "
                        "8192 x 8192; memory is about 60 bytes a pixel)")
    r = ap.add_argument_group("remote (hdrlift-serve): decode and write EXRs here, reconstruct on servers")
    r.add_argument("--server", metavar="HOST:PORT[,HOST:PORT...]",
                   help="send frames to these hdrlift-serve servers (gRPC round-robin, one stream per address; "
                        "a server that shuts down hands its frames to the others) instead of running the model "
                        "here; --model and the colour/output/frame options apply as for a local run")
    r.add_argument("--token-file", metavar="FILE", help="bearer token for the servers: the file's first line that "
                   "is neither empty nor a # comment (default $HDRLIFT_TOKEN; never on the command line)")
    r.add_argument("--tls", action="store_true", help="use TLS, trusting the system's root certificates")
    r.add_argument("--tls-ca", metavar="PEM", help="use TLS, trusting this CA (server certificate check)")
    r.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS (with --tls-key)")
    r.add_argument("--tls-key", metavar="PEM", help="client key for mutual TLS")
    r.add_argument("--tls-server-name", metavar="NAME", help="name the server certificate must carry, when it "
                   "differs from the address (e.g. connecting by IP)")
    r.add_argument("--server-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long the first call may take (connection, token and model check) before giving "
                        "up (default 30); frames themselves have no deadline")
    r.add_argument("--retries", type=int, default=4, metavar="N",
                   help="retries when a server is unavailable or busy, with back-off (default 4; 0: fail at once)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--version", action="version", version=f"hdrlift {__version__}")
    return ap


def _list_models() -> str:
    from hdrlift.engine.models import DEFAULT_MODEL, available

    rows = []
    for info in available():
        state = "ready" if info.runnable else "no weights shipped"
        default = " (default)" if info.name == DEFAULT_MODEL else ""
        rows.append(f"{info.name:<20} {info.kind:<9} {state:<19} {info.summary}{default}")
    return "\n".join(rows)


# Local-only options and their defaults: with --server the servers' own settings apply.
_LOCAL_ONLY = {"weights": None, "device": "cpu", "backend": "auto", "precision": "fp32", "preview": None,
               "device_colour": None, "compile": False}


def _connection(args: argparse.Namespace) -> dict:
    """``--server`` connection options (token, TLS, retries) as keyword arguments of the client."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert and --tls-key go together (mutual TLS)")
    for flag in ("tls_ca", "tls_cert", "tls_key"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            raise InputError(f"--{flag.replace('_', '-')} {path}: no such file")
    if args.retries < 0:
        raise InputError(f"--retries must be >= 0, got {args.retries}")
    if args.server_timeout is not None and args.server_timeout <= 0:
        raise InputError(f"--server-timeout must be positive, got {args.server_timeout}")
    token = read_token_file(args.token_file) if args.token_file else None
    return dict(token=token, tls=bool(args.tls or args.tls_ca or args.tls_cert), ca_file=args.tls_ca,
                cert_file=args.tls_cert, key_file=args.tls_key, server_name=args.tls_server_name,
                retries=args.retries)


def _list_remote_models(args: argparse.Namespace) -> str:
    from hdrlift.plugin.client import Client, clean_text

    with Client(args.server, **_connection(args)) as c:
        reply = c.list_models(args.server_timeout)
    rows = []
    for m in reply.models:
        state = "runs there" if m.runnable else "not runnable there"
        default = " (default)" if m.is_default else ""
        name, kind, summary = (clean_text(v, 200) for v in (m.name, m.kind, m.summary))  # a server's words
        rows.append(f"{name:<20} {kind:<9} {state:<19} {summary}{default}")
    return "\n".join(rows)


def _run_remote(prog: str, args: argparse.Namespace, video: bool) -> int:
    """``--server``: the file loop with the frames reconstructed on the servers
    (:func:`hdrlift.engine.remote.convert_remote`)."""
    from hdrlift.engine.convert import default_progress
    from hdrlift.engine.remote import convert_remote

    for name, default in _LOCAL_ONLY.items():
        if getattr(args, name) != default:
            raise InputError(f"--{name} applies to local runs; with --server the servers' settings are used")
    conn = _connection(args)
    start, end = _frame_range(args, video)
    reader_options = _reader_options(args) if video else None
    report = convert_remote(
        args.input, _output(args, video), args.server, model=args.model, input_space=args.input_colorspace,
        output_space=args.output_colorspace, start=start, end=end, every=args.every if video else 1,
        resume=args.resume if video else False, overwrite=args.overwrite, half=not args.float,
        compression=args.compression, mask_layer=args.mask_layer, single=not video,
        progress=None if args.quiet else default_progress(), reader_options=reader_options,
        ocio_config=args.ocio_config, connect_timeout=args.server_timeout, max_frame_pixels=args.max_frame_pixels,
        warn=_warner(prog), **conn)
    if not args.quiet:
        _summary(prog, report)
    return 0


def _output(args: argparse.Namespace, video: bool):
    """Where the frames go: the OUTPUT path (EXRs), or with ``--deliver`` an HDR master's sink."""
    if not (video and args.deliver):
        return args.output
    clash = [f for f, v in (("--resume", args.resume), ("--mask-layer", args.mask_layer), ("--float", args.float),
                            ("--compression", args.compression != "zip")) if v]
    if clash:
        raise InputError(f"{', '.join(clash)}: EXR options; --deliver writes one HEVC master")
    from hdrlift.engine.delivery import MasterSink

    whole = not args.frames and args.every == 1
    if not whole:
        _warner("hdr-video")("a frame range or --every: the master has no audio (it would be out of step)")
    return MasterSink(args.output, transfer="pq" if args.deliver == "hdr10" else "hlg", overwrite=args.overwrite,
                      audio=whole, peak_nits=args.peak_nits, crf=args.crf, preset=args.preset,
                      mastering_display=args.mastering_display)


def _frame_range(args: argparse.Namespace, video: bool) -> tuple[int | None, int | None]:
    if not video:
        return (args.frame, args.frame) if args.frame else (None, None)
    return args.frames if args.frames else (None, None)


def _reader_options(args: argparse.Namespace) -> dict:
    """The reader options the user gave: stream colour-tag overrides (--primaries, --transfer,
    --matrix, --range), --no-autorotate, --deinterlace."""
    opts = {k: getattr(args, k) for k in ("primaries", "transfer", "matrix", "range") if getattr(args, k)}
    if args.no_autorotate:
        opts["autorotate"] = False
    if args.deinterlace:
        opts["deinterlace"] = True
    return opts


def _warner(prog: str):
    def warn(message: str) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)
    return warn


def _summary(prog: str, report) -> None:
    """The one line printed after a run (local or --server): frames, time, rate, colour spaces."""
    skipped = f", {len(report.skipped)} already complete" if report.skipped else ""
    what = f"{len(report.written)} EXR written"
    if report.written and report.written[0].suffix.lower() in (".mp4", ".mov", ".m4v"):
        what = f"master {report.written[0]} written ({report.frames} frames)"
    print(f"{prog}: {what}{skipped} in {report.seconds:.1f}s "
          f"({report.fps:.2f} frames/s), {report.input_space} -> {report.output_space}, "
          f"model {report.model} on {report.where}", file=sys.stderr)


def _run(prog: str, argv: list[str] | None, video: bool) -> int:
    ap = _parser(prog, video)
    args = ap.parse_args(argv)
    return run_cli(prog, lambda: _body(ap, args, prog, video), interrupted=f"\n{prog}: interrupted; {INTERRUPTED[video]}")


def _body(ap: argparse.ArgumentParser, args: argparse.Namespace, prog: str, video: bool) -> int:
    if args.list_models:
        print(_list_remote_models(args) if args.server else _list_models())
        return 0
    if args.list_colorspaces:
        from hdrlift.engine.colour import ColourManager

        print(ColourManager(args.ocio_config).list_text())
        return 0
    if not args.input or not args.output:
        ap.error("INPUT and OUTPUT are required")
    if args.server:
        return _run_remote(prog, args, video)
    from hdrlift.engine.convert import default_progress
    from hdrlift.engine.pipeline import Pipeline, PipelineOptions

    opts = PipelineOptions(model=args.model, weights=args.weights, device=args.device,
                           ocio_config=args.ocio_config, input_space=args.input_colorspace,
                           output_space=args.output_colorspace, half=not args.float,
                           compression=args.compression, mask_layer=args.mask_layer,
                           backend=args.backend, precision=args.precision, max_pixels=args.max_pixels,
                           max_frame_pixels=args.max_frame_pixels, device_colour=args.device_colour,
                           compile=args.compile,
                           **({"batch": args.batch, "encode_workers": args.encode_workers} if video else {}))
    pipe = Pipeline(opts)
    progress = None if args.quiet else default_progress()
    if video:
        start, end = _frame_range(args, video)
        report = pipe.convert(args.input, _output(args, video), start=start, end=end, every=args.every,
                              resume=args.resume, overwrite=args.overwrite, progress=progress,
                              preview=args.preview, reader_options=_reader_options(args), warn=_warner(prog))
    else:
        start, end = _frame_range(args, video)
        report = pipe.convert(args.input, args.output, start=start, end=end, overwrite=args.overwrite,
                              progress=progress, preview=args.preview, single=True, warn=_warner(prog))
    if not args.quiet:
        _summary(prog, report)
    return 0


def video_main(argv: list[str] | None = None) -> int:
    return _run("hdr-video", argv, video=True)


def image_main(argv: list[str] | None = None) -> int:
    return _run("hdr-image", argv, video=False)


if __name__ == "__main__":
    raise SystemExit(video_main())
