"""One unattended call on a lent GPU machine: train, evaluate, benchmark, pack the results into $OUT.

Run through ``training/gpu_session.sh`` (which makes ``hdrlift.*`` importable without installing
and tees this output to ``$OUT/session.log``); docs/training.md, "Training on a lent GPU", has the
exact ``run`` calls.

    bash training/gpu_session.sh hdrcnn-lite            # one model, the whole training budget
    bash training/gpu_session.sh expandnet,kim          # two models, half the budget each
    bash training/gpu_session.sh check                  # environment and data only (~20 s)

For each model: ``training/configs/<model>-gpu.json`` with ``"data"`` set to the pack
(``$HDRLIFT_PACK``, default ``.data/hdri-pack.npz``) and its time limits scaled to the model's
share of ``$HDRLIFT_TRAIN_MIN``; ``hdrlift-train`` into ``runs/gpu/<model>``; ``hdrlift-eval`` of
its ``best.safetensors`` next to ``inverse-crf`` on the pack's val split; then
``$OUT/<model>.tar.gz`` (a run folder ``gpu-<model>/`` to unpack under ``runs/``: configs, logs,
``env.json``, ``eval.json``/``eval.md``, ``best.safetensors``, and ``last.safetensors`` and the
TensorBoard events when they fit 15 MiB). After the models, ``bench/bench_gpu.py`` on them writes
``$OUT/bench.json``. ``$OUT/summary.json`` (environment, per-model results, files) is rewritten
after every step, so a call cut short still returns what it finished. $OUT never holds more than
``2 + models + 1`` files (the device returns at most 8, 16 MiB each).

Each call is self-contained: a fresh machine has nothing of an earlier call, and a checkpoint
(weights, EMA and AdamW moments: ~4x the weights, 28 MiB for hdrcnn-lite) does not fit the 16 MiB a
returned file may have. To go on from an earlier call, put its weights in
``.data/init/<model>.safetensors`` (``$HDRLIFT_INIT_DIR``) and carry ``.data/init``: the first
stage then starts from them (``init_from``: a fine-tuning run with a fresh schedule).

Environment:

* ``OUT``: where results go (the device sets it; required);
* ``HDRLIFT_TRAIN_MIN`` (default 5.5): training minutes of the whole call, split evenly over the models
  (a call then takes about 7.5 minutes; three of them and their machine starts fit the 30 minutes of
  device time a session has);
* ``HDRLIFT_CALL_MIN`` (default 9.0): the call's own deadline, from the start of this script: training is
  shortened, and evaluation or the benchmark skipped, so that the call returns before it (the device
  stops a command at 10 minutes);
* ``HDRLIFT_BENCH=0``: no benchmark; ``HDRLIFT_WORKERS``: overrides the configs' ``"workers"``;
* ``HDRLIFT_GPU_DRYRUN=1``: the same path on the CPU with a tiny budget (tiny patches, batches,
  validation and benchmark frames; 0.4 training minutes per model unless ``HDRLIFT_TRAIN_MIN``
  is set) to check the whole call without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = REPO / "training" / "configs"
MODELS = ("hdrcnn-lite", "hdrunet", "expandnet", "kim")
OUT_FILE_LIMIT = 8
OUT_FILE_BYTES = 16 * 2 ** 20
TAR_BYTES = 15 * 2 ** 20  # optional files join the tarball while it stays below this
EVAL_RESERVE_S = 45.0  # evaluation + tarball after each model (~20 s measured on the CPU machine)
BENCH_RESERVE_S = 75.0
TRAIN_OVERHEAD_MIN = 0.5  # a training run's wall time beyond its time limit (start-up, last validation)
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[gpu_session {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


DRYRUN = env_flag("HDRLIFT_GPU_DRYRUN")


def deadline_left() -> float:
    return float(os.environ.get("HDRLIFT_CALL_MIN", "9.0")) * 60.0 - (time.monotonic() - T0)


# ------------------------------------------------------------------------------------------
# environment
# ------------------------------------------------------------------------------------------

def _cmd(args: list[str], timeout: float = 20.0) -> str | None:
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        return r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(pack: pathlib.Path) -> dict:
    import importlib.util

    import torch

    env = {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "dryrun": DRYRUN, "hdrlift_from": str(REPO)}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_mib=round(p.total_memory / 2 ** 20), cudnn=torch.backends.cudnn.version())
    env["nvidia_smi"] = _cmd(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    # the media libraries the device lacks (training must not need them), and two optional ones
    env["importable"] = {}
    for m in ("av", "OpenImageIO", "PyOpenColorIO"):
        try:
            __import__(m)
            env["importable"][m] = True
        except ImportError:
            env["importable"][m] = False
    for m in ("onnxruntime", "tensorboard"):
        env["importable"][m] = importlib.util.find_spec(m) is not None
    try:
        import onnxruntime as ort

        env["ort_providers"] = ort.get_available_providers()
    except ImportError:
        env["ort_providers"] = None
    if pack.is_file():
        import numpy as np

        with np.load(pack, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            splits = [str(s) for s in z["split"]]
        env["pack"] = {"path": str(pack), "bytes": pack.stat().st_size, "size": meta.get("size"),
                       "images": len(splits), "train": splits.count("train"), "val": splits.count("val")}
    return env


class GpuSampler:
    """``nvidia-smi`` utilisation every few seconds while a model trains (data- or GPU-bound?)."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            out = _cmd(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"], 5)
            if out:
                try:
                    util, mem = (float(v) for v in out.splitlines()[0].split(","))
                    self.samples.append((util, mem))
                except ValueError:
                    pass

    def __enter__(self) -> "GpuSampler":
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def summary(self) -> dict:
        if not self.samples:
            return {}
        u = [s[0] for s in self.samples]
        return {"gpu_util_median": statistics.median(u), "gpu_util_mean": round(statistics.mean(u), 1),
                "gpu_mem_used_mib_max": max(s[1] for s in self.samples), "samples": len(u)}


# ------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------

def _dry_patch(multiple: int) -> int:
    return max(32, multiple)


def session_config(model: str, pack: pathlib.Path, minutes: float, init: pathlib.Path | None) -> dict:
    """``training/configs/<model>-gpu.json`` for this call: the pack, time limits scaled to
    ``minutes`` (a staged config keeps its stages' proportions), ``init_from``, dry-run shrinking."""
    from hdrlift.training.train import trainable_info

    raw = json.loads((CONFIGS / f"{model}-gpu.json").read_text())
    raw["data"] = str(pack)
    if os.environ.get("HDRLIFT_WORKERS"):
        raw["workers"] = int(os.environ["HDRLIFT_WORKERS"])
    stages = raw.get("stages")
    if stages:
        shares = [float(st.get("time_limit_min", 1.0)) for st in stages]
        for st, share in zip(stages, shares):
            st["time_limit_min"] = round(minutes * share / sum(shares), 3)
        raw["time_limit_min"] = round(minutes, 3)
        if init is not None:
            stages[0]["init_from"] = str(init)
    else:
        raw["time_limit_min"] = round(minutes, 3)
        if init is not None:
            raw["init_from"] = str(init)
    if DRYRUN:
        mult = trainable_info(model).multiple_of
        raw.update(patch=_dry_patch(mult), batch=2, workers=min(2, int(raw.get("workers", 0))), log_every=20,
                   val_views=1, val_size=_dry_patch(mult), checkpoint_every=100000, warmup=5, threads=1)
        for st in stages or []:
            st.pop("patch", None)
            st.pop("batch", None)
    return raw


# ------------------------------------------------------------------------------------------
# steps
# ------------------------------------------------------------------------------------------

def run_logged(args: list[str], timeout_s: float, label: str) -> int:
    """Run a child (its output goes to ours); past ``timeout_s`` it gets SIGTERM (the trainer then
    stops after the current step with a checkpoint and its weights), 60 s later SIGKILL."""
    say(f"{label}: {' '.join(args)} (timeout {timeout_s:.0f} s)")
    proc = subprocess.Popen(args, cwd=REPO)
    try:
        return proc.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        say(f"{label}: timeout, SIGTERM")
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            say(f"{label}: SIGKILL")
            proc.kill()
            return proc.wait()


def read_log(run: pathlib.Path) -> list[dict]:
    recs = []
    for f in sorted(run.glob("**/log.jsonl")):
        for line in f.read_text().splitlines():
            try:
                recs.append({"_run": str(f.parent.relative_to(run)), **json.loads(line)})
            except json.JSONDecodeError:
                pass
    return recs


def train_summary(run: pathlib.Path) -> dict:
    recs = read_log(run)
    out: dict = {"stages": {}}
    for r in recs:
        st = out["stages"].setdefault(r["_run"], {})
        if "fit_steps_per_s" in r:
            st.update(steps_per_s=r["fit_steps_per_s"], fit_iterations=r["fit_iterations"])
        st["step"] = max(st.get("step", 0), int(r.get("step", 0)))
        if "elapsed_s" in r:
            st["minutes"] = max(st.get("minutes", 0.0), round(r["elapsed_s"] / 60, 2))
        if "loss" in r:
            st["loss_smooth"] = r["loss_smooth"]
        if "val" in r:
            st["last_val"] = {k: round(v, 3) for k, v in r["val"].items() if k in ("psnr_mu", "pu21_psnr", "psnr_l",
                                                                                   "clipped_stops")}
            st["val_step"] = r["step"]
    for f in sorted(run.glob("**/config.json")):
        rel = str(f.parent.relative_to(run))
        if rel in out["stages"]:
            c = json.loads(f.read_text())
            out["stages"][rel].update(batch=c.get("batch"), patch=c.get("patch"), loss=c.get("loss_resolved"))
    return out


def eval_summary(ev_path: pathlib.Path) -> dict:
    if not ev_path.is_file():
        return {}
    ev = json.loads(ev_path.read_text())
    keys = ("psnr_mu", "pu21_psnr", "worst_mu", "psnr_l", "clipped_stops", "stack_psnr")
    return {m: {k: round(v[k], 3) for k in keys if k in v} for m, v in ev.get("overall", {}).items()}


def make_tar(run: pathlib.Path, model: str, dest: pathlib.Path) -> dict:
    """``dest`` = ``gpu-<model>/...``: the small files, the last stage's ``best.safetensors``, then
    ``last.safetensors`` and TensorBoard events while the total stays under :data:`TAR_BYTES`."""
    final = final_folder(run)
    small = [p for p in run.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".md")]
    weights = [p for p in (final / "best.safetensors", final / "last.safetensors") if p.is_file()]
    must = small + weights[:1]  # best, or last when no validation ran
    optional = weights[1:]
    optional += sorted((p for p in run.rglob("tb/*") if p.is_file()), key=lambda p: p.stat().st_size)
    total = sum(p.stat().st_size for p in must)
    chosen = list(must)
    left_out = []
    for p in optional:
        if total + p.stat().st_size <= TAR_BYTES:
            chosen.append(p)
            total += p.stat().st_size
        else:
            left_out.append(str(p.relative_to(run)))
    tmp = dest.with_name(f".{dest.name}.tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for p in sorted(set(chosen)):
            tar.add(p, arcname=f"gpu-{model}/{p.relative_to(run)}")
    os.replace(tmp, dest)
    return {"file": dest.name, "bytes": dest.stat().st_size, "left_out": left_out,
            "weights": [str(p.relative_to(run)) for p in chosen if p.suffix == ".safetensors"]}


def final_folder(run: pathlib.Path) -> pathlib.Path:
    """The run folder of the last stage (``NN-name/``), or ``run`` for a single-stage run."""
    stage_dirs = sorted(p for p in run.iterdir() if p.is_dir() and p.name[:2].isdigit())
    return stage_dirs[-1] if stage_dirs else run


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Summary:
    def __init__(self, out: pathlib.Path, part: str, env: dict):
        self.path = out / "summary.json"
        self.data = {"part": part, "env": env, "models": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.write()

    def write(self) -> None:
        self.data["seconds"] = round(time.monotonic() - T0, 1)
        tmp = self.path.with_name(".summary.json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def train_model(model: str, minutes: float, pack: pathlib.Path, runs: pathlib.Path, out: pathlib.Path,
                env: dict, device: str, summary: Summary) -> pathlib.Path | None:
    init_dir = pathlib.Path(os.environ.get("HDRLIFT_INIT_DIR", REPO / ".data" / "init"))
    init = init_dir / f"{model}.safetensors"
    cfg = session_config(model, pack, minutes, init if init.is_file() else None)
    run = runs / model
    if run.exists():
        shutil.rmtree(run)  # a warm machine from an earlier call: start afresh
    runs.mkdir(parents=True, exist_ok=True)
    cfg_path = runs / f"{model}.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    rec: dict = {"minutes_planned": round(minutes, 2), "init_from": str(init) if init.is_file() else None}
    summary.data["models"][model] = rec
    summary.write()
    t = time.monotonic()
    train_args = [sys.executable, "-m", "hdrlift.training.train", "--config", str(cfg_path), "--out", str(run),
                  "--device", device]
    with GpuSampler() as gpu:
        rc = run_logged(train_args, minutes * 60 + 90, f"train {model}")
        left_min = minutes - (time.monotonic() - t) / 60.0
        if rc == 1 and left_min > 1.0 and not DRYRUN:
            # a crash or a loss that became non-finite under autocast (exit 1; bad input is 2): once
            # more in float32 for the time left
            say(f"train {model}: exit {rc}; again without AMP for the {left_min:.1f} min left")
            rec["first_attempt"] = {"train_rc": rc, "wall_s": round(time.monotonic() - t, 1)}
            shutil.rmtree(run, ignore_errors=True)
            cfg = session_config(model, pack, left_min - TRAIN_OVERHEAD_MIN, init if init.is_file() else None)
            cfg["amp"] = False
            cfg_path.write_text(json.dumps(cfg, indent=1))
            rc = run_logged(train_args, left_min * 60 + 60, f"train {model} (float32)")
    rec.update(train_rc=rc, train_wall_s=round(time.monotonic() - t, 1), **gpu.summary())
    if not run.is_dir():
        summary.write()
        return None
    (run / "env.json").write_text(json.dumps(env, indent=1) + "\n")
    rec.update(train_summary(run))
    best = run / "best.safetensors"
    if not best.is_file():  # stopped before any validation: the last EMA weights
        best = final_folder(run) / "last.safetensors"
        rec["weights_note"] = "no validation ran: last.safetensors evaluated and returned"
    if best.is_file():
        rec["weights_sha256"] = sha256(best)
        left = deadline_left() - 20
        if left > 30:
            ev_args = [sys.executable, "-m", "hdrlift.training.evaluate", str(pack), "--models", f"{model},inverse-crf",
                       "--weights", f"{model}={best}", "--device", device, "--json", str(run / "eval.json"),
                       "--markdown", str(run / "eval.md"), "-q",
                       "--demo-frames", "0"]  # the demo clip needs PyAV, which the GPU machine lacks
            if DRYRUN:
                ev_args += ["--views", "1", "--size", "64"]
            t = time.monotonic()
            rec["eval_rc"] = run_logged(ev_args, min(left, 120.0), f"eval {model}")
            rec["eval_s"] = round(time.monotonic() - t, 1)
            rec["eval"] = eval_summary(run / "eval.json")
        else:
            rec["eval_rc"] = "skipped: call deadline"
    rec["tar"] = make_tar(run, model, out / f"{model}.tar.gz")
    summary.write()
    say(f"{model}: {json.dumps({k: rec[k] for k in ('train_rc', 'eval', 'tar') if k in rec})}")
    return best if best.is_file() else None


def check_out(out: pathlib.Path) -> dict:
    files = [p for p in out.rglob("*") if p.is_file()]
    res = {"files": {str(p.relative_to(out)): p.stat().st_size for p in sorted(files)},
           "total_bytes": sum(p.stat().st_size for p in files)}
    problems = []
    if len(files) > OUT_FILE_LIMIT:
        problems.append(f"{len(files)} files > {OUT_FILE_LIMIT}")
    problems += [f"{k} is {v / 2 ** 20:.1f} MiB > 16 MiB" for k, v in res["files"].items() if v > OUT_FILE_BYTES]
    if res["total_bytes"] > 64 * 2 ** 20:
        problems.append("more than 64 MiB in all")
    res["problems"] = problems
    return res


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    part = argv[0]
    out_env = os.environ.get("OUT") or ("/tmp/out-dryrun" if DRYRUN else "")
    if not out_env:
        print("gpu_session: error: OUT is not set (the device sets it; set it for a dry run)", file=sys.stderr)
        return 2
    out = pathlib.Path(out_env)
    out.mkdir(parents=True, exist_ok=True)
    pack = pathlib.Path(os.environ.get("HDRLIFT_PACK", REPO / ".data" / "hdri-pack.npz"))
    if not pack.is_absolute():
        pack = REPO / pack
    import torch

    device = "cpu" if DRYRUN else "cuda"
    env = environment(pack)
    summary = Summary(out, part, env)
    say("environment: " + json.dumps(env))
    if not pack.is_file():
        say(f"error: the data pack {pack} is missing: make it with python -m hdrlift.training.pack_data "
            f"--out .data/hdri-pack.npz and name .data/hdri-pack.npz in carry")
        return 2
    if device == "cuda" and not torch.cuda.is_available():
        say("error: torch sees no CUDA GPU (HDRLIFT_GPU_DRYRUN=1 runs the CPU dry run)")
        return 2
    if part == "check":
        from hdrlift.training.data import open_hdr

        t = time.monotonic()
        tr, va = open_hdr(pack, "train"), open_hdr(pack, "val")
        summary.data["check"] = {"train": len(tr), "val": len(va), "load_s": round(time.monotonic() - t, 2)}
        if device == "cuda":
            a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(10):
                a @ a
            torch.cuda.synchronize()
            summary.data["check"]["bf16_tflops"] = round(10 * 2 * 4096 ** 3 / (time.perf_counter() - t) / 1e12, 1)
        summary.write()
        say("check: " + json.dumps(summary.data["check"]))
        return 0
    models = [m.strip() for m in part.split(",") if m.strip()]
    unknown = [m for m in models if not (CONFIGS / f"{m}-gpu.json").is_file()]
    if unknown or not models or len(models) > OUT_FILE_LIMIT - 3:
        say(f"error: PART is 'check' or up to {OUT_FILE_LIMIT - 3} comma-separated models with a "
            f"training/configs/<model>-gpu.json ({', '.join(MODELS)}); got {part!r}")
        return 2
    if os.environ.get("HDRLIFT_TRAIN_MIN"):
        total_min = float(os.environ["HDRLIFT_TRAIN_MIN"])
    else:
        total_min = 0.4 * len(models) if DRYRUN else 5.5
    bench = os.environ.get("HDRLIFT_BENCH", "").strip().lower() not in ("0", "false", "no")
    runs = REPO / "runs" / "gpu"
    trained: dict[str, pathlib.Path] = {}
    for i, model in enumerate(models):
        share = total_min / len(models)
        # what is left for this model and the ones after it, keeping the evaluations and the benchmark
        reserve = EVAL_RESERVE_S * (len(models) - i) + (BENCH_RESERVE_S if bench else 0.0) + 15.0
        cap = (deadline_left() - reserve) / 60.0 / (len(models) - i) - TRAIN_OVERHEAD_MIN
        minutes = min(share, cap) if not DRYRUN else share
        if minutes < 0.25:
            say(f"{model}: skipped, only {minutes:.2f} min of the call left for it")
            summary.data["models"][model] = {"skipped": "call deadline"}
            summary.write()
            continue
        best = train_model(model, minutes, pack, runs, out, env, device, summary)
        if best is not None:
            trained[model] = best
    if bench and trained:
        left = deadline_left() - 25
        if left > 45:
            args = [sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--models", ",".join(trained),
                    "--json", str(out / "bench.json"), "--budget-s", str(round(min(left - 30, 240)))]
            for m, w in trained.items():
                args += ["--weights", f"{m}={w}"]
            if DRYRUN:
                args += ["--device", "cpu", "--sizes", "96x64", "--frames", "2"]
            summary.data["bench_rc"] = run_logged(args, left, "bench")
        else:
            summary.data["bench_rc"] = "skipped: call deadline"
    summary.data["out"] = check_out(out)
    summary.write()
    say("files in $OUT: " + json.dumps(summary.data["out"]))
    ok = trained and all(summary.data["models"].get(m, {}).get("train_rc") == 0 for m in models)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
