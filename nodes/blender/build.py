"""Build the Blender extension zip: ``python nodes/blender/build.py [--out DIR] [--platform TAG ...]``.

The zip holds ``hdrlift_blender/`` (manifest, operator, bridge) and, in ``wheels/``, what the
shim imports that Blender does not ship: the hdrlift client (this repository as a wheel, installed
without its engine dependencies; the shim only imports ``hdrlift.plugin``), ``grpcio`` and
``protobuf``, for Blender's Python (3.11). Wheels come from the configured package index
(``pip download``); ``--platform`` adds other platforms' ``grpcio`` wheels (default: this machine's).
Install the result with Blender's Preferences > Get Extensions > Install from Disk, or
``blender --command extension install-file -r user_default hdrlift-<version>.zip``.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
SRC = HERE / "hdrlift_blender"
PY = "3.11"  # Blender 4.2 - 4.5 and 5.0


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"build.py: error: {' '.join(cmd[:4])} ... failed: {tail[0]}")


def build(out_dir: pathlib.Path, platforms: list[str]) -> pathlib.Path:
    manifest = tomllib.loads((SRC / "blender_manifest.toml").read_text())
    version = manifest["version"]
    with tempfile.TemporaryDirectory() as tmp:
        wheels = pathlib.Path(tmp) / "wheels"
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)])
        base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                "--python-version", PY, "-d", str(wheels)]
        _run(base + ["protobuf"])
        if platforms:
            for plat in platforms:
                _run(base + ["--platform", plat, "grpcio"])
        else:
            _run(base + ["grpcio"])
        names = sorted(p.name for p in wheels.glob("*.whl"))
        text = (SRC / "blender_manifest.toml").read_text()
        listed = "wheels = [\n" + "".join(f'  "./wheels/{n}",\n' for n in names) + "]"
        text, n = re.subn(r"(?m)^wheels = \[.*?\]", listed, text, flags=re.S)
        if n != 1:
            raise SystemExit("build.py: error: the manifest has no 'wheels = [...]' line")
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"hdrlift-{version}.zip"
        partial = target.with_name(f".{target.name}.tmp")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("blender_manifest.toml", text)
            for f in sorted(SRC.glob("*.py")):
                z.write(f, f.name)
            for name in names:
                z.write(wheels / name, f"wheels/{name}")
        partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=HERE / "dist")
    ap.add_argument("--platform", action="append", default=[],
                    help="pip platform tag for grpcio, e.g. manylinux_2_17_x86_64, macosx_11_0_arm64, win_amd64 "
                         "(repeatable; default: this machine)")
    args = ap.parse_args(argv)
    path = build(args.out, args.platform)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
