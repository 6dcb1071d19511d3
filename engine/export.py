"""``hdrlift-export``: write a model's ONNX (fp32 / fp16), TorchScript (Nuke) or TensorRT plan.

    hdrlift-export --model NAME --format onnx|onnx-fp16|torchscript|nuke|trt --out PATH [--weights FILE]

``nuke``: TorchScript for Nuke's Inference node (linear working-space in, HDR + mask out; docs/nuke.md),
with ``--working-space``, ``--input-transfer`` and ``--channels``.

The graphs come from :mod:`hdrlift.engine.backends.exporters`, the plans from
:func:`hdrlift.engine.backends.trt_backend.build_plan`.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

from hdrlift.engine.backends.exporters import (
    DEFAULT_OPSET,
    NUKE_TRANSFERS,
    NUKE_WORKING_SPACES,
    export_nuke,
    export_onnx,
    export_torchscript,
)
from hdrlift.engine.entrypoint import run_cli
from hdrlift.engine.errors import InputError, ModelError, OutputError
from hdrlift.engine.models.loading import load_model

FORMATS = ("onnx", "onnx-fp16", "torchscript", "nuke", "trt")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hdrlift-export",
        description="Export a reconstruction model to ONNX, TorchScript, TorchScript for Nuke's Inference node "
                    "or a TensorRT plan.",
        epilog="exit status: 0 done, 2 bad arguments, 3 output cannot be written, 4 model / TensorRT error.")
    ap.add_argument("--model", required=True, help="registered model name (see hdr-video --list-models)")
    ap.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    ap.add_argument("--out", required=True, help="output file")
    ap.add_argument("--weights", help="weights (.safetensors) instead of the shipped ones")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    ap.add_argument("--fp16", action="store_true", help="trt: build a strongly typed fp16 plan")
    ap.add_argument("--working-space", choices=sorted(NUKE_WORKING_SPACES),
                    help="nuke: Nuke's scene-linear working space, the file's input and output (default lin_rec709)")
    ap.add_argument("--input-transfer", choices=NUKE_TRANSFERS,
                    help="nuke: how the plate was linearised: srgb (sRGB, gamma 2.2 or 2.4 curves; default) or "
                         "camera-rec709 (Nuke's rec709, the BT.709 camera curve)")
    ap.add_argument("--channels", type=int, choices=(3, 4),
                    help="nuke: 4 = HDR RGB + mask (default), 3 = HDR RGB")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli("hdrlift-export", lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder; give a file name")
    if out.exists() and not args.overwrite:
        raise OutputError(f"{out} exists; pass --overwrite to replace it")
    if args.opset < 13:
        raise ModelError(f"--opset must be 13 or later, got {args.opset}")
    nuke_options = {"working_space": args.working_space, "input_transfer": args.input_transfer,
                    "channels": args.channels}
    if args.format != "nuke" and any(v is not None for v in nuke_options.values()):
        raise InputError("--working-space, --input-transfer and --channels go with --format nuke")
    if args.format == "trt":
        from hdrlift.engine.backends.trt_backend import import_tensorrt

        import_tensorrt()  # fail before the export work if TensorRT is missing
    model = load_model(args.model, device="cpu", weights=args.weights)
    if args.format in ("onnx", "onnx-fp16"):
        export_onnx(model, out, opset=args.opset, fp16=args.format == "onnx-fp16")
    elif args.format == "torchscript":
        export_torchscript(model, out)
    elif args.format == "nuke":
        export_nuke(model, out, **{k: v for k, v in nuke_options.items() if v is not None})
    else:
        from hdrlift.engine.backends.trt_backend import build_plan

        with tempfile.TemporaryDirectory(dir=str(out.parent) if out.parent.is_dir() else None) as tmp:
            onnx_path = export_onnx(model, pathlib.Path(tmp) / "model.onnx", opset=args.opset, fp16=args.fp16)
            build_plan(onnx_path, out, fp16=args.fp16)
    print(f"wrote {out} ({args.format}, model {args.model})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
