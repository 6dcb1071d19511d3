"""hdrlift-eval (training/evaluate.py): the grid column, and ColorVideoVDP when it is (not) there."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from hdrlift.training import evaluate as E

from training_helpers import synthetic_hdr, write_exr


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalset")
    for i in range(2):
        write_exr(d / f"p{i}.exr", synthetic_hdr(64, 128, 10 + i))
    return d


def test_eval_reports_the_grid_column(folder, tmp_path, capsys):
    rc = E.main([str(folder), "--split", "all", "--models", "inverse-crf,landis", "--views", "1", "--size", "96",
                 "--clip", "0.3", "--no-stack", "--json", str(tmp_path / "e.json"), "-q"])
    assert rc == 0
    out = json.loads((tmp_path / "e.json").read_text())
    rows = out["per_image"]["inverse-crf"]
    assert all("grid_stops" in r for r in rows)
    finite = [r["grid_stops"] for r in rows if np.isfinite(r["grid_stops"])]
    assert finite and all(g >= 0.0 for g in finite)  # a clip of 30 % leaves room for the phase average
    assert "grid_stops" in capsys.readouterr().out.splitlines()[2]


def test_cvvdp_unavailable_is_one_line_and_exit_2(folder, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pycvvdp", None)  # the import raises ImportError
    rc = E.main([str(folder), "--split", "all", "--models", "inverse-crf", "--views", "1", "--size", "32", "--cvvdp",
                 "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--cvvdp needs the cvvdp package" in err and "make eval-cvvdp" in err


def test_jod_orders_degradations_with_the_real_cvvdp():
    """Runs where cvvdp imports (the environment of `make eval-cvvdp`); skipped elsewhere."""
    try:
        import pycvvdp  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - see E._cvvdp_metric
        pytest.skip(f"cvvdp does not import here: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    metric = E._cvvdp_metric()
    ref = synthetic_hdr(96, 96, 5)
    rng = np.random.default_rng(0)
    same = E._jod(metric, ref, ref)
    light = E._jod(metric, ref * np.exp2(rng.normal(0, 0.05, ref.shape)).astype(np.float32), ref)
    heavy = E._jod(metric, ref * np.exp2(rng.normal(0, 0.5, ref.shape)).astype(np.float32), ref)
    assert same == pytest.approx(10.0, abs=1e-3)
    assert 10.0 >= light > heavy
