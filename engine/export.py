"""``hdrlift-export``: write a model's ONNX (fp32 / fp16), TorchScript (Nuke) or TensorRT plan.

    hdrlift-export --model NAME --format onnx|onnx-fp16|torchscript|trt --out PATH [--weights FILE]

The graphs come from :mod:`hdrlift.engine.backends.exporters`, the plans from
:func:`hdrlift.engine.backends.trt_backend.build_plan`.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

from hdrlift.engine.backends.exporters import DEFAULT_OPSET, export_onnx, export_torchscript
from hdrlift.engine.entrypoint import run_cli
from hdrlift.engine.errors import ModelError, OutputError
from hdrlift.engine.models.loading import load_model

FORMATS = ("onnx", "onnx-fp16", "torchscript", "trt")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hdrlift-export",
        description="Export a reconstruction model to ONNX, TorchScript (Nuke) or a TensorRT plan.",
        epilog="exit status: 0 done, 2 bad arguments, 3 output cannot be written, 4 model / TensorRT error.")
    ap.add_argument("--model", required=True, help="registered model name (see hdr-video --list-models)")
    ap.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    ap.add_argument("--out", required=True, help="output file")
    ap.add_argument("--weights", help="weights (.safetensors) instead of the shipped ones")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    ap.add_argument("--fp16", action="store_true", help="trt: build a strongly typed fp16 plan")
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
    if args.format == "trt":
        from hdrlift.engine.backends.trt_backend import import_tensorrt

        import_tensorrt()  # fail before the export work if TensorRT is missing
    model = load_model(args.model, device="cpu", weights=args.weights)
    if args.format in ("onnx", "onnx-fp16"):
        export_onnx(model, out, opset=args.opset, fp16=args.format == "onnx-fp16")
    elif args.format == "torchscript":
        export_torchscript(model, out)
    else:
        from hdrlift.engine.backends.trt_backend import build_plan

        with tempfile.TemporaryDirectory(dir=str(out.parent) if out.parent.is_dir() else None) as tmp:
            onnx_path = export_onnx(model, pathlib.Path(tmp) / "model.onnx", opset=args.opset, fp16=args.fp16)
            build_plan(onnx_path, out, fp16=args.fp16)
    print(f"wrote {out} ({args.format}, model {args.model})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
