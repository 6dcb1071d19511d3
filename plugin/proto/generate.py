"""Regenerate the Python stubs in ``plugin/v1/`` from ``plugin/proto/hdrlift/v1/hdrlift.proto``.

    .venv/bin/python plugin/proto/generate.py

Runs ``grpc_tools.protoc`` into a temporary folder, rewrites the absolute import the gRPC stub
makes (``from hdrlift.v1 import hdrlift_pb2``) into a package-relative one, so the stubs import
as ``hdrlift.plugin.v1.hdrlift_pb2`` wherever hdrlift is installed, and replaces the files
atomically. ``--check`` only reports whether the committed stubs are current (exit 1 if not).
It compares what the contract generates, not which generator wrote it: the lines that only name
the grpcio-tools / protobuf release (``GRPC_GENERATED_VERSION``, ``Protobuf Python Version``, the
runtime version check's numbers) are left out of the comparison, so a newer grpcio-tools on a
fresh machine does not turn the check red while the stubs still match the ``.proto``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE
PROTO = "hdrlift/v1/hdrlift.proto"
OUT = HERE.parent / "v1"
STUBS = ("hdrlift_pb2.py", "hdrlift_pb2_grpc.py", "hdrlift_pb2.pyi")


def generate(tmp: pathlib.Path) -> dict[str, str]:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}",
           f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", PROTO]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"generate.py: error: protoc failed: {res.stderr.strip()}")
    files = {}
    for name in STUBS:
        text = (tmp / "hdrlift" / "v1" / name).read_text()
        text = re.sub(r"^from hdrlift\.v1 import (\w+) as", r"from . import \1 as", text, flags=re.M)
        files[name] = text
    return files


_VERSION_LINES = re.compile(
    r"^(GRPC_GENERATED_VERSION = .*|# Protobuf Python Version: .*|\s+\d+,\s*$|\s+'',\s*$)", re.M)


def _contract(text: str) -> str:
    """``text`` without the lines that only say which generator release wrote it."""
    return _VERSION_LINES.sub("", text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the stubs are out of date")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        files = generate(pathlib.Path(d))
    stale = [n for n, t in files.items()
             if not (OUT / n).is_file() or _contract((OUT / n).read_text()) != _contract(t)]
    if args.check:
        for n in stale:
            print(f"stale: {OUT / n}")
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=str(OUT))
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, OUT / name)
    init = OUT / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs of the hdrlift.v1 contract (plugin/proto/generate.py)."""\n')
    print(f"wrote {', '.join(str(OUT / n) for n in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
