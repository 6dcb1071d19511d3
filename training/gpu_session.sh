#!/usr/bin/env bash
# One unattended call on a lent GPU machine (docs/training.md, "Training on a lent GPU"):
#
#   bash training/gpu_session.sh hdrcnn-lite        # or: hdrunet | expandnet,kim | check
#
# Run from anywhere inside a copy of the repository whose .data/hdri-pack.npz was carried along
# (python -m hdrlift.training.pack_data --out .data/hdri-pack.npz, on the CPU machine). Makes
# hdrlift.* importable without installing anything (a one-line package under /tmp/hdrlift-site
# whose __path__ is this checkout: hdrlift.engine -> engine/, hdrlift.training -> training/),
# then runs training/gpu_session.py, whose output also goes to $OUT/session.log.
# HDRLIFT_GPU_DRYRUN=1 runs the same path on the CPU with a tiny budget (OUT defaults to
# /tmp/out-dryrun there). Other knobs: HDRLIFT_TRAIN_MIN, HDRLIFT_CALL_MIN, HDRLIFT_BENCH,
# HDRLIFT_WORKERS, HDRLIFT_PACK, HDRLIFT_INIT_DIR (training/gpu_session.py).
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 2
if [ -z "${OUT:-}" ]; then
    if [ -n "${HDRLIFT_GPU_DRYRUN:-}" ] && [ "${HDRLIFT_GPU_DRYRUN}" != 0 ]; then
        export OUT=/tmp/out-dryrun
    else
        echo "gpu_session.sh: OUT is not set (the device sets it)" >&2
        exit 2
    fi
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1  # everything below also lands in $OUT/session.log
tee_pid=$!
site="${HDRLIFT_SITE:-/tmp/hdrlift-site}"
mkdir -p "$site/hdrlift"
printf '"""hdrlift from the checkout %s (training/gpu_session.sh)."""\n__path__ = [%s]\n' \
    "$repo" "'$repo'" > "$site/hdrlift/__init__.py"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# numpy work in the data workers: one BLAS thread each (16 cores, ~14 workers)
export OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export HDRLIFT_CACHE="${HDRLIFT_CACHE:-/tmp/hdrlift-cache}"
export MPLBACKEND=Agg
py="${PYTHON:-python3}"
echo "gpu_session.sh: $(date -u +%FT%TZ) part=${1:-} repo=$repo python=$("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])') OUT=$OUT"
"$py" -c 'import hdrlift, hdrlift.training; print("gpu_session.sh: hdrlift", hdrlift.__file__, "->", hdrlift.training.__file__)' || exit 2
"$py" -m hdrlift.training.gpu_session "$@"
rc=$?
echo "gpu_session.sh: exit $rc"
exec >&- 2>&-
wait "$tee_pid" 2>/dev/null  # session.log complete before the device collects $OUT
exit $rc
