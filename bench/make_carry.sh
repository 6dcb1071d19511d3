#!/usr/bin/env bash
# Builds .carry/site-cp312.tar.xz for bench/gpu_run.sh (git-ignored; about 33 MiB): the
# manylinux x86_64 wheels the GPU machine lacks, for CPython 3.12 (the device's python3 was
# 3.12.3 last time; av's wheel is abi3, CPython >= 3.11), unpacked into site/ and packed with
# xz (the wheels' own zip compression gives 49 MiB, over the device tool's 64 MiB with the repo).
#
#   bash bench/make_carry.sh            # PIP (default .venv/bin/pip), PYVER (3.12)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pip="${PIP:-$repo/.venv/bin/pip}"
pyver="${PYVER:-3.12}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$pip" download -q --only-binary=:all: --no-deps --python-version "$pyver" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$work/wheels" av==18.1.0 OpenImageIO==3.2.2.0 opencolorio==2.6.0 safetensors==0.8.0
ls -l "$work/wheels"
for w in "$work"/wheels/*.whl; do python3 -m zipfile -e "$w" "$work/site/"; done
mkdir -p "$repo/.carry"
out="$repo/.carry/site-cp${pyver/./}.tar.xz"
tar -C "$work" -cf - site | xz -9e -T0 > "$out.tmp"
mv "$out.tmp" "$out"
ls -l "$out"
