#!/usr/bin/env bash
# The prepared 4K device run of issue 18 (docs/benchmarks.md, "4K on a GPU (issue 18)"):
#
#   bash bench/gpu_run.sh                      # on the lent GPU machine; OUT is set by the device tool
#
# The GPU machine has no network and, last time, no PyAV, OpenImageIO or OpenColorIO: they come
# along as .carry/site-cp312.tar.xz (bench/make_carry.sh builds it: the manylinux x86_64 wheels
# of av 18.1.0 (abi3, CPython >= 3.11), OpenImageIO 3.2.2.0, opencolorio 2.6.0 for CPython 3.12
# and safetensors 0.8.0 (abi3), unpacked and packed again with xz to fit the device tool's
# 64 MiB). When python3 cannot import them, the archive is unpacked under /tmp and appended to
# PYTHONPATH (what python3 has itself comes first). hdrlift itself is
# imported from this checkout (a one-line package whose __path__ is the checkout, as
# training/gpu_session.sh does). Then bench/bench_gpu_4k.py runs every step and writes
# $OUT/results.json; this script's output goes to $OUT/run.log. Two files in $OUT, no folder.
#
# Knobs (environment): PYTHON (default python3), HDRLIFT_GPU_SIZE (3840x2160), HDRLIFT_GPU_FRAMES
# (48), HDRLIFT_GPU_DEVICE (cuda), HDRLIFT_GPU_COMPILE (auto), HDRLIFT_GPU_WORKERS (8),
# HDRLIFT_GPU_BUDGET_S (420), HDRLIFT_GPU_MODEL (hdrcnn-lite), HDRLIFT_GPU_TIMED (20 timed calls
# per variant). The dry run on a CPU machine (tests/engine/test_bench_gpu_4k.py runs it):
#   OUT=/tmp/out HDRLIFT_GPU_DEVICE=cpu HDRLIFT_GPU_SIZE=256x144 HDRLIFT_GPU_FRAMES=4 PYTHON=.venv/bin/python bash bench/gpu_run.sh
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 2
if [ -z "${OUT:-}" ]; then
    echo "gpu_run.sh: OUT is not set (the device tool sets it; for a dry run set it yourself)" >&2
    exit 2
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
tee_pid=$!
py="${PYTHON:-python3}"
echo "gpu_run.sh: $(date -u +%FT%TZ) repo=$repo python=$("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])') OUT=$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# hdrlift from this checkout, importable without installing anything
site="${HDRLIFT_SITE:-/tmp/hdrlift-gpu-site}"
mkdir -p "$site/hdrlift"
printf '"""hdrlift from the checkout %s (bench/gpu_run.sh)."""\n__path__ = [%s]\n' "$repo" "'$repo'" > "$site/hdrlift/__init__.py"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export HDRLIFT_CACHE="${HDRLIFT_CACHE:-/tmp/hdrlift-cache}"

# the decoders and OCIO: from the carried archive when python3 lacks them
if ! "$py" -c 'import av, OpenImageIO, PyOpenColorIO, safetensors' 2>/dev/null; then
    archive="$repo/.carry/site-cp312.tar.xz"
    pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ ! -f "$archive" ]; then
        echo "gpu_run.sh: $py cannot import av/OpenImageIO/PyOpenColorIO/safetensors and $archive was not carried" \
             "(build it with bench/make_carry.sh and pass it in the run's carry list)"
        exit 3
    fi
    if [ "$pyver" != "3.12" ]; then
        echo "gpu_run.sh: warning: the carried wheels are for CPython 3.12 (av: >= 3.11); this is $pyver"
    fi
    wheels="${HDRLIFT_WHEELS_SITE:-/tmp/hdrlift-gpu-wheels}"
    mkdir -p "$wheels"
    t0=$(date +%s)
    tar -xJf "$archive" -C "$wheels" || { echo "gpu_run.sh: cannot unpack $archive"; exit 3; }
    echo "gpu_run.sh: unpacked $archive in $(( $(date +%s) - t0 )) s"
    export PYTHONPATH="$PYTHONPATH:$wheels/site"
fi
"$py" - <<'EOF' || exit 3
import importlib
for m in ("numpy", "torch", "safetensors", "av", "OpenImageIO", "PyOpenColorIO", "hdrlift.engine.pipeline"):
    mod = importlib.import_module(m)
    print(f"gpu_run.sh: import {m} {getattr(mod, '__version__', '')} from {getattr(mod, '__file__', '?')}")
EOF

"$py" "$repo/bench/bench_gpu_4k.py" --out "$OUT" \
    --size "${HDRLIFT_GPU_SIZE:-3840x2160}" --frames "${HDRLIFT_GPU_FRAMES:-48}" \
    --device "${HDRLIFT_GPU_DEVICE:-cuda}" --compile "${HDRLIFT_GPU_COMPILE:-auto}" \
    --workers "${HDRLIFT_GPU_WORKERS:-8}" --budget-s "${HDRLIFT_GPU_BUDGET_S:-420}" --timed "${HDRLIFT_GPU_TIMED:-20}" \
    --model "${HDRLIFT_GPU_MODEL:-hdrcnn-lite}"
rc=$?
echo "gpu_run.sh: exit $rc"
exec >&- 2>&-
wait "$tee_pid" 2>/dev/null  # run.log complete before the device tool collects $OUT
exit $rc
