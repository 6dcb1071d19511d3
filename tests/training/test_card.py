"""The model card tool (`python -m hdrlift.training.card`): a recipe of CPU and GPU stages, the
resolved loss, the verdict against the classical operators, and nothing replaced on bad input."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from safetensors.torch import save_file

from hdrlift.training import card


def _run(folder: pathlib.Path, *, loss: str, resolved: str, steps: int, best: int, init_from=None,
         env: dict | None = None) -> pathlib.Path:
    folder.mkdir(parents=True)
    cfg = {"model": "hdrcnn-lite", "loss": loss, "loss_resolved": resolved, "iterations": steps + 100,
           "patch": 64, "batch": 4, "lr": 1e-4, "data": ".data/hdri-pack.npz" if env else None,
           "init_from": init_from}
    (folder / "config.json").write_text(json.dumps(cfg))
    log = [{"step": s, "loss": 0.1, "elapsed_s": s / 10} for s in range(0, steps - 5, 50)]  # last steps unlogged
    (folder / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log))
    weights = {"w": torch.arange(4, dtype=torch.float32)}
    save_file(weights, str(folder / "best.safetensors"), metadata={"step": str(best)})
    save_file(weights, str(folder / "last.safetensors"), metadata={"step": str(steps)})
    if env:
        (folder / "env.json").write_text(json.dumps(env))
    return folder


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    out = tmp_path / "weights"
    monkeypatch.setattr(card, "WEIGHTS_DIR", out)
    return out


def test_card_for_cpu_then_gpu_stages(tmp_path, weights_dir):
    gpu = {"gpu": "Test GPU 80GB", "cpu_count": 16, "torch": "2.x+cu", "pack": {"size": 512}}
    cpu_run = _run(tmp_path / "cpu", loss="psnr", resolved="psnr", steps=300, best=250)
    gpu_run = _run(tmp_path / "gpu", loss="auto", resolved="log_l1", steps=420, best=400,
                   init_from=".data/init/hdrcnn-lite.safetensors", env=gpu)
    ev = {"overall": {"hdrcnn-lite": {"psnr_mu": 45.0, "pu21_psnr": 41.0, "psnr_l": 30.0, "clipped_stops": 0.30},
                      "inverse-crf": {"psnr_mu": 44.0, "pu21_psnr": 42.0, "psnr_l": 29.0, "clipped_stops": 0.50},
                      "akyuz": {"psnr_mu": 35.0, "pu21_psnr": 36.0, "psnr_l": 28.0, "clipped_stops": 0.45}}}
    (tmp_path / "ev.json").write_text(json.dumps(ev))
    assert card.main(["--model", "hdrcnn-lite", "--run", str(gpu_run), "--stage", str(cpu_run),
                      "--eval", str(tmp_path / "ev.json"), "--eval-cmd", "hdrlift-eval ..."]) == 0
    text = (weights_dir / "hdrcnn-lite.md").read_text()
    assert (weights_dir / "hdrcnn-lite.safetensors").read_bytes() == (gpu_run / "best.safetensors").read_bytes()
    rows = [ln for ln in text.splitlines() if ln.startswith("| 1 ") or ln.startswith("| 2 ")]
    # the CPU stage handed its best weights on (the GPU stage started from a copy, not last.safetensors)
    assert "CPU (2 cores)" in rows[0] and "best val, step 250" in rows[0] and "| 300 (400) |" in rows[0]
    # "auto" shows what it resolved to; the step count comes from last.safetensors past the last log line
    assert "GPU (Test GPU 80GB)" in rows[1] and "`log_l1`" in rows[1] and "| 420 (520) |" in rows[1]
    assert "Test GPU 80GB, 16 CPU cores" in text and "downsized to 512 px" in text
    assert "* `psnr_mu`: better than `inverse-crf` by 1.000" in text
    assert "* `pu21_psnr`: worse than `inverse-crf` by 1.000" in text
    assert "* `clipped_stops`: better than `akyuz` by 0.150" in text
    assert "kept exactly" not in text or "exactly as the inverse sRGB curve" in text


def test_card_changes_nothing_when_an_input_is_missing(tmp_path, weights_dir, capsys):
    run = _run(tmp_path / "r", loss="psnr", resolved="psnr", steps=100, best=100)
    weights_dir.mkdir()
    (weights_dir / "hdrcnn-lite.safetensors").write_bytes(b"shipped")
    assert card.main(["--model", "hdrcnn-lite", "--run", str(run), "--eval", str(tmp_path / "missing.json")]) == 2
    assert "not found" in capsys.readouterr().err
    assert (weights_dir / "hdrcnn-lite.safetensors").read_bytes() == b"shipped"
    assert not (weights_dir / "hdrcnn-lite.md").exists()
    assert sorted(p.name for p in weights_dir.iterdir()) == ["hdrcnn-lite.safetensors"]  # no temporaries


def test_card_reports_the_split_sizes_per_clip_tables_cases_and_the_demo_clip(tmp_path, weights_dir):
    run = _run(tmp_path / "cpu", loss="clipped_log_l1", resolved="clipped_log_l1", steps=300, best=250)
    cfg = json.loads((run / "config.json").read_text())
    cfg.update(data_counts={"train": 88, "val": 14}, clip_range=[0.005, 0.12])
    (run / "config.json").write_text(json.dumps(cfg))
    row = {"psnr_mu": 45.0, "pu21_psnr": 43.0, "worst_mu": -0.7, "worst_pu21": -1.0, "psnr_l": 30.0, "clipped_stops": 0.3}
    base = {"psnr_mu": 44.0, "pu21_psnr": 42.0, "worst_mu": 0.0, "worst_pu21": 0.0, "psnr_l": 29.0, "clipped_stops": 0.5}
    tabs = {"overall": {"hdrcnn-lite": row, "inverse-crf": base},
            "by_clip": {"0.03": {"hdrcnn-lite": row, "inverse-crf": base}, "0.1": {"hdrcnn-lite": row, "inverse-crf": base}}}
    ev = {**tabs, "cases": {"views": tabs, "saturated": tabs},
          "protocol": {"images": 56, "views": 4, "size": 256, "clip_fractions": [0.03, 0.1]},
          "demo_clip": {"protocol": {"frames": "1,5"}, "models": {
              "hdrcnn-lite": {"ratio_median": 0.9, "out_median": 3.0, "truth_median": 4.0, "out_p99": 50.0, "truth_p99": 2000.0},
              "inverse-crf": {"ratio_median": 0.25, "out_median": 1.0, "truth_median": 4.0, "out_p99": 1.0, "truth_p99": 2000.0}}}}
    (tmp_path / "ev.json").write_text(json.dumps(ev))
    assert card.main(["--model", "hdrcnn-lite", "--run", str(run), "--eval", str(tmp_path / "ev.json")]) == 0
    text = (weights_dir / "hdrcnn-lite.md").read_text()
    assert "88 `train` panoramas" in text and "14 `val` panoramas" in text and "0.5-12 % of pixels clip" in text
    assert "14 panoramas x 4 views of 256 px" in text
    assert "### 3 % of pixels clipped" in text and "### 10 % of pixels clipped" in text
    assert "PSNR-mu below `inverse-crf` by 0.700 (the bar: never more than 0.5 below)" in text
    assert "| saturated | 3 % | 45.000 | 43.000 | 44.000 | 42.000 | -0.700 |" in text
    assert "median output / truth luminance **0.900** (`inverse-crf`: 0.250)" in text
    assert "Trained on 88 panoramas" in text


def test_refresh_keeps_how_the_weights_were_made_and_checks_them(tmp_path, weights_dir, capsys):
    run = _run(tmp_path / "cpu", loss="psnr", resolved="psnr", steps=300, best=250)
    ev = {"overall": {"hdrcnn-lite": {"psnr_mu": 45.0, "pu21_psnr": 41.0, "psnr_l": 30.0, "clipped_stops": 0.30},
                      "inverse-crf": {"psnr_mu": 44.0, "pu21_psnr": 42.0, "psnr_l": 29.0, "clipped_stops": 0.50}}}
    (tmp_path / "ev.json").write_text(json.dumps(ev))
    assert card.main(["--model", "hdrcnn-lite", "--run", str(run), "--eval", str(tmp_path / "ev.json")]) == 0
    before = (weights_dir / "hdrcnn-lite.md").read_text()
    how = before.partition("## Validation")[0]
    ev["overall"]["hdrcnn-lite"]["psnr_mu"] = 47.5
    (tmp_path / "ev2.json").write_text(json.dumps(ev))
    weights = (weights_dir / "hdrcnn-lite.safetensors").read_bytes()
    assert card.main(["--model", "hdrcnn-lite", "--refresh", "--eval", str(tmp_path / "ev2.json")]) == 0
    after = (weights_dir / "hdrcnn-lite.md").read_text()
    assert after.startswith(how) and "| **`hdrcnn-lite`** | 47.500 |" in after
    assert after.count("* Trained on") == 1 and (weights_dir / "hdrcnn-lite.safetensors").read_bytes() == weights
    # other weights than the card describes: refused, nothing rewritten
    (weights_dir / "hdrcnn-lite.safetensors").write_bytes(b"other")
    assert card.main(["--model", "hdrcnn-lite", "--refresh", "--eval", str(tmp_path / "ev2.json")]) == 2
    assert "does not describe" in capsys.readouterr().err
    assert (weights_dir / "hdrcnn-lite.md").read_text() == after


def test_prior_card_rows_come_first_and_count_in_the_total(tmp_path, weights_dir, capsys):
    prior = tmp_path / "old.md"
    prior.write_text("# Model card\n\n| stage | run | where | loss | iterations run (planned) | weights taken at | "
                     "patch x batch | lr | wall time (min) |\n|---|---|---|---|---:|---:|---|---:|---:|\n"
                     "| 1 | `s1` | CPU (2 cores) | `log_l1` | 1050 (6000) | last (EMA) | 128 x 8 | 0.0002 | 10.5 |\n"
                     "| 2 | `s2` | CPU (2 cores) | `psnr` | 3250 (4000) | best val, step 3000 | 128 x 8 | 0.0001 | 38.0 |\n")
    run = _run(tmp_path / "new", loss="clipped_log_l1", resolved="clipped_log_l1", steps=600, best=600,
               init_from="runs/old/w.safetensors")
    assert card.main(["--model", "hdrcnn-lite", "--run", str(run), "--prior-card", str(prior)]) == 0
    text = (weights_dir / "hdrcnn-lite.md").read_text()
    rows = [ln for ln in text.splitlines() if ln[:4] in ("| 1 ", "| 2 ", "| 3 ")]
    assert rows[0].startswith("| 1 | `s1` (from `old.md`) | CPU (2 cores) | `log_l1` |")
    assert rows[1].startswith("| 2 | `s2` (from `old.md`)") and rows[2].startswith("| 3 | `new` |")
    assert "Stages 1-2 are the recipe of the weights stage 3 started from (`runs/old/w.safetensors`)" in text
    # 10.5 + 38.0 from the prior card, plus the new stage's minute (its log's last elapsed_s is 55 s)
    assert "for 49 minutes on a 2-core CPU" in text
    # a prior card without a stage table is refused and nothing is written
    (tmp_path / "bad.md").write_text("# no table\n")
    before = (weights_dir / "hdrcnn-lite.md").read_text()
    assert card.main(["--model", "hdrcnn-lite", "--run", str(run), "--prior-card", str(tmp_path / "bad.md")]) == 2
    assert "no stage table" in capsys.readouterr().err
    assert (weights_dir / "hdrcnn-lite.md").read_text() == before
