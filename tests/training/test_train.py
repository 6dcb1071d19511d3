"""``hdrlift-train`` (training/train.py): a CPU smoke run, exact resume (also with the GAN), the
loss selection, Moriwaki's GAN alternation and staged recipes."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hdrlift.engine.errors import InputError
from hdrlift.training import losses as L
from hdrlift.training import train as T

CONFIGS = pathlib.Path(T.__file__).resolve().parent / "configs"


def tiny(hdr_folder, **kw) -> T.TrainConfig:
    base = dict(model="hdrcnn-lite", data=str(hdr_folder), val_split=None, patch=32, batch=2, iterations=4,
                lr=1e-3, lr_min=1e-4, warmup=1, log_every=1, checkpoint_every=1000, seed=0, threads=0)
    base.update(kw)
    return T.TrainConfig(**base)


def log_records(run: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def assert_same_weights(a: pathlib.Path, b: pathlib.Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ------------------------------------------------------------------------------------------
# smoke run and exact resume
# ------------------------------------------------------------------------------------------

def test_training_reduces_the_loss(hdr_folder, tmp_path):
    # a quarter of the pixels clipped: HDR-CNN's "do-nothing" start has a large loss to lose
    cfg = tiny(hdr_folder, iterations=20, batch=4, lr=2e-3, warmup=0, clip_range=(0.15, 0.3), val_split="train",
               val_views=1, val_size=32, val_every=20)
    res = T.train(cfg, tmp_path / "run", progress=False, device="cpu")
    assert res["step"] == 20 and res["stopped"] == "iterations" and res["loss_name"] == "eilertsen_log"
    losses = [r["loss"] for r in log_records(tmp_path / "run") if "loss" in r]
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    # held-out check: the trained weights beat the initial ones on a fixed batch
    from hdrlift.training.data import HdrFolder, PatchDataset

    ldr, hdr = (torch.from_numpy(a) for a in
                PatchDataset(HdrFolder(hdr_folder), size=32, seed=99, clip_range=cfg.clip_range).batch(8))
    torch.manual_seed(cfg.seed)
    net = T.build_network("hdrcnn-lite").eval()
    with torch.no_grad():
        before = float(T.compute_loss(net, "hdrcnn-lite", ldr, hdr, "auto"))
        net.load_state_dict(load_file(str(tmp_path / "run" / "last.safetensors")))
        after = float(T.compute_loss(net, "hdrcnn-lite", ldr, hdr, "auto"))
    assert after < 0.8 * before
    # the run folder
    for name in ("config.json", "log.jsonl", "checkpoint.pt", "last.safetensors", "best.safetensors"):
        assert (tmp_path / "run" / name).exists(), name
    assert json.loads((tmp_path / "run" / "config.json").read_text())["loss_resolved"] == "eilertsen_log"
    vals = [r["val"] for r in log_records(tmp_path / "run") if "val" in r]
    assert vals and all("worst_mu" in v and "worst_pu21" in v for v in vals)
    with pytest.raises(InputError, match="--resume"):
        T.train(cfg, tmp_path / "run", progress=False, device="cpu")


def test_validation_worst_case_against_the_inverse_curve_and_select():
    """``worst_mu`` is the lowest per-item PSNR-mu difference to the inverse curve: 0 for a network
    that returns the inverse curve (HDR-CNN at its do-nothing start, no item in the ramp), negative
    for one that damages one item; ``select`` sums weighted metrics."""
    from hdrlift.engine.colour_maths import srgb_to_linear
    from hdrlift.training import camera as cam

    from training_helpers import synthetic_hdr

    items = []
    for seed in (1, 2, 3):
        ldr, ref, _ = cam.Camera(clip_fraction=0.05)(synthetic_hdr(64, 64, seed))
        items.append({"ldr": ldr, "hdr": ref})
    base = T.baseline_scores(items)

    class Curve(torch.nn.Module):  # the inverse curve, except that it blows item 2's highlights up 8x
        def forward(self, x):
            y = srgb_to_linear(x)
            if float(x.mean()) == float(torch.from_numpy(items[2]["ldr"]).mean()):
                y = torch.where(x >= 0.99, 8.0 * y, y)
            return y

    m = T.validate(Curve(), items, torch.device("cpu"), baseline=base)
    assert m["worst_mu"] < -1.0 and m["worst_pu21"] < -1.0
    m0 = T.validate(T.build_network("hdrcnn-lite").eval(), items[:1], torch.device("cpu"), 32, baseline=base[:1])
    assert abs(m0["worst_mu"]) < 0.2  # do-nothing start: the inverse curve plus eps in clipped channels
    assert T.select_score("psnr_mu+2*worst_mu", {"psnr_mu": 40.0, "worst_mu": -1.5}) == pytest.approx(37.0)
    assert T.select_score("psnr_mu+pu21_psnr", {"psnr_mu": 40.0}) < -1e8
    with pytest.raises(InputError, match="select"):
        T.TrainConfig(select="psnr_mu+x*worst_mu").check()
    with pytest.raises(InputError, match="val_cases"):
        T.TrainConfig(val_cases=("views", "nope")).check()


def _stop_at(k: int):
    """An ``on_step`` callback sending this process SIGTERM after step ``k`` (the real signal path)."""
    def cb(step: int) -> None:
        if step == k:
            os.kill(os.getpid(), signal.SIGTERM)
    return cb


def _split_run(cfg: T.TrainConfig, run: pathlib.Path, stop: int) -> dict:
    first = T.train(cfg, run, progress=False, device="cpu", on_step=_stop_at(stop))
    assert first["stopped"] == "signal" and first["step"] == stop
    return T.train(cfg, run, resume=True, progress=False, device="cpu")


def test_resume_is_bit_exact(hdr_folder, tmp_path):
    cfg = tiny(hdr_folder, iterations=6, noise=True, compression=True, curves="random")
    handler = signal.getsignal(signal.SIGTERM)
    straight = T.train(cfg, tmp_path / "a", progress=False, device="cpu")
    assert signal.getsignal(signal.SIGTERM) is handler  # the trainer's handlers are gone after the run
    resumed = _split_run(cfg, tmp_path / "b", 3)
    assert straight["step"] == resumed["step"] == 6
    assert straight["loss"] == resumed["loss"]
    assert_same_weights(tmp_path / "a" / "last.safetensors", tmp_path / "b" / "last.safetensors")
    ca = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for k in ca["net"]:
        assert torch.equal(ca["net"][k], cb["net"][k]), k
    assert ca["data_rng"] == cb["data_rng"]


def test_hard_stop_inside_a_step_still_resumes_exactly(hdr_folder, tmp_path, monkeypatch):
    """An exception (second Ctrl-C, crash) before any weight changed in a step: the checkpoint is
    the state at the start of that step, so the resumed run equals the straight one."""
    cfg = tiny(hdr_folder, iterations=4)
    T.train(cfg, tmp_path / "a", progress=False, device="cpu")
    real = T.compute_loss
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "compute_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, tmp_path / "b", progress=False, device="cpu")
    monkeypatch.setattr(T, "compute_loss", real)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    T.train(cfg, tmp_path / "b", resume=True, progress=False, device="cpu")
    assert_same_weights(tmp_path / "a" / "last.safetensors", tmp_path / "b" / "last.safetensors")


def test_data_workers_resume_exactly(hdr_folder, tmp_path):
    """"workers": batch i comes from rng (seed, i) in worker processes; a stopped run resumes at
    batch `step`, so it still ends bit for bit where the straight run does."""
    cfg = tiny(hdr_folder, iterations=4, workers=2)
    straight = T.train(cfg, tmp_path / "a", progress=False, device="cpu")
    resumed = _split_run(cfg, tmp_path / "b", 2)
    assert straight["step"] == resumed["step"] == 4 and straight["loss"] == resumed["loss"]
    assert_same_weights(tmp_path / "a" / "last.safetensors", tmp_path / "b" / "last.safetensors")


class _StepClock:
    """The trainer's clock, advancing 0.05 s each time it is read: the fit is then decided by
    steps, the same on any machine, never by how busy the machine is."""

    def __init__(self):
        self.now = 1_000_000.0

    def time(self) -> float:
        self.now += 0.05
        return self.now


def test_fit_time_fits_the_schedule_into_the_time_limit(hdr_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "FIT_SKIP_STEPS", 2)
    monkeypatch.setattr(T, "FIT_WINDOW_S", (0.3, 0.0))
    monkeypatch.setattr(T, "time", _StepClock())
    cfg = tiny(hdr_folder, iterations=100000, time_limit_min=0.03, fit_time=True, val_split="train",
               val_views=1, val_size=32, val_every=100000, val_count=2, log_every=1000)
    res = T.train(cfg, tmp_path / "run", progress=False, device="cpu")
    fit = [r for r in log_records(tmp_path / "run") if "fit_iterations" in r]
    assert len(fit) == 1 and fit[0]["fit_planned"] == 100000 and fit[0]["fit_iterations"] < 100000
    n = fit[0]["fit_iterations"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["iterations"] == n and saved["val_every"] == fit[0]["val_every"] == -(-n // 2)
    assert res["step"] <= n and cfg.iterations == 100000  # the caller's config is left alone
    if res["stopped"] == "iterations":  # (a slow machine may still reach the time limit first)
        assert res["step"] == n and any("val" in r for r in log_records(tmp_path / "run"))
    with pytest.raises(InputError, match="fit_time needs time_limit_min"):
        T.TrainConfig.from_dict({"fit_time": True})


def test_gan_alternation_and_exact_resume(hdr_folder, tmp_path):
    cfg = tiny(hdr_folder, iterations=2, gan=True, loss="moriwaki_rec_gan", d_lr=5e-4)
    straight = T.train(cfg, tmp_path / "a", progress=False, device="cpu")
    assert straight["loss_name"] == "moriwaki_rec_gan"
    recs = [r for r in log_records(tmp_path / "a") if "loss" in r]
    assert all("loss_d" in r and np.isfinite(r["loss_d"]) for r in recs)
    _split_run(cfg, tmp_path / "b", 1)
    ca = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert "disc" in ca and "opt_d" in ca
    for k in ca["disc"]:  # discriminator weights and BatchNorm statistics
        assert torch.equal(ca["disc"][k], cb["disc"][k]), k
    assert_same_weights(tmp_path / "a" / "last.safetensors", tmp_path / "b" / "last.safetensors")
    # the discriminator was trained: its weights left their initialisation
    from hdrlift.training.discriminator import MoriwakiDiscriminator

    torch.manual_seed(0)
    fresh = MoriwakiDiscriminator().state_dict()
    assert not torch.equal(fresh["fc2.weight"], ca["disc"]["fc2.weight"])
    # a GAN run cannot resume from a checkpoint without a discriminator
    plain = tiny(hdr_folder, iterations=1)
    T.train(plain, tmp_path / "c", progress=False, device="cpu")
    with pytest.raises(InputError, match="gan"):
        T.train(dataclasses.replace(plain, iterations=2, gan=True), tmp_path / "c", resume=True, progress=False,
                device="cpu")


def test_moriwaki_hybrid_generator_step(hdr_folder, tmp_path, random_vgg):
    """Moriwaki's own recipe: "gan": true with "loss": "auto" is Eq. 1 (hybrid) on the generator."""
    assert T.resolve_loss("moriwaki", "auto", gan=True) == "moriwaki_hybrid"
    torch.manual_seed(0)
    net = T.build_network("moriwaki")
    from hdrlift.training.discriminator import MoriwakiDiscriminator

    disc = MoriwakiDiscriminator()
    ldr = torch.rand(2, 3, 32, 32)
    hdr = torch.exp(torch.randn(2, 3, 32, 32))
    y = T.log_prediction(net, ldr)
    torch.testing.assert_close(y, net.forward_log(ldr))
    logits = disc(y)
    loss = T.generator_loss(net, "moriwaki", ldr, hdr, "moriwaki_hybrid", y, logits)
    expect = L.moriwaki_hybrid(y, hdr, ldr, logits, random_vgg("cpu"))
    assert float(loss.detach()) == pytest.approx(float(expect.detach()), rel=1e-6)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------------
# loss selection
# ------------------------------------------------------------------------------------------

def test_every_recipe_is_a_valid_loss_name():
    names = T.loss_names()
    assert set(L.RECIPES) <= set(names)
    assert set(T.TRAINER_RECIPES) <= set(names)
    assert {"auto", "eilertsen_log", "eilertsen_ir", "log_l1", "psnr", "moriwaki_hybrid"} <= set(names)


def test_auto_loss_is_each_papers_loss(random_vgg):
    assert T.resolve_loss("hdrcnn") == T.resolve_loss("hdrcnn-lite") == "eilertsen_log"
    assert T.resolve_loss("moriwaki") == "moriwaki_rec"
    assert T.resolve_loss("moriwaki", gan=True) == "moriwaki_hybrid"
    assert T.resolve_loss("santos") == "santos"
    assert T.resolve_loss("hdrunet") == "tanh_l1"
    assert T.resolve_loss("kim") == "kim"
    assert T.resolve_loss("singlehdr") == "singlehdr"
    assert T.resolve_loss("expandnet") == "log_l1"


def test_auto_loss_without_vgg_weights(no_vgg):
    assert T.resolve_loss("santos") == "santos_rec"
    assert T.resolve_loss("moriwaki", gan=True) == "moriwaki_rec_gan"
    assert T.resolve_loss("santos", "santos") == "santos"  # an explicit choice is kept (and fails at start)


def test_loss_errors_are_one_line():
    with pytest.raises(InputError) as e:
        T.resolve_loss("hdrcnn-lite", "nope")
    msg = str(e.value)
    assert "\n" not in msg and "valid:" in msg
    for name in ("santos_rec", "tanh_l1", "kim", "singlehdr_deq", "psnr"):
        assert name in msg
    with pytest.raises(InputError, match="gan"):
        T.resolve_loss("moriwaki", "moriwaki_hybrid")
    with pytest.raises(InputError, match="kim"):
        T.resolve_loss("hdrcnn-lite", "kim")
    with pytest.raises(InputError, match="hdrcnn"):
        T.resolve_loss("santos", "eilertsen_log")
    with pytest.raises(InputError):
        T.compute_loss(None, "hdrcnn-lite", None, None, "nope")


_MODELS: dict[str, torch.nn.Module] = {}


def _model(name: str) -> torch.nn.Module:
    if name not in _MODELS:
        torch.manual_seed(0)
        _MODELS[name] = T.build_network(name)
    return _MODELS[name]


RECIPE_CASES = {  # loss -> (model, patch side)
    "moriwaki_rec": ("moriwaki", 32), "moriwaki_rec_vgg": ("moriwaki", 32),
    "santos_rec": ("santos", 128), "santos": ("santos", 128),
    "tanh_l1": ("hdrunet", 32), "mu_law_l1": ("hdrcnn-lite", 32), "mu_law_l2": ("hdrcnn-lite", 32),
    "kim": ("kim", 32), "singlehdr": ("singlehdr", 32), "singlehdr_p": ("singlehdr", 32),
    "singlehdr_deq": ("singlehdr", 32), "singlehdr_lin": ("singlehdr", 32),
    "singlehdr_hal": ("singlehdr", 32), "singlehdr_hal_p": ("singlehdr", 32),
    "eilertsen_ir": ("hdrcnn-lite", 32), "log_l1": ("expandnet", 32), "psnr": ("hdrcnn-lite", 32),
    "clipped_log_l1": ("hdrcnn-lite", 32), "clipped_log_l2": ("hdrcnn-lite", 32),
}


def test_recipe_cases_cover_every_recipe():
    assert set(L.RECIPES) | set(T.TRAINER_RECIPES) <= set(RECIPE_CASES)


@pytest.mark.parametrize("loss", sorted(RECIPE_CASES))
def test_each_loss_runs_through_the_trainer(loss, random_vgg):
    model, side = RECIPE_CASES[loss]
    assert T.resolve_loss(model, loss) == loss
    net = _model(model).train()
    net.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(0)
    hdr = torch.exp(torch.randn(1, 3, side, side, generator=g) * 1.2 - 1.0)
    ldr = torch.clamp(hdr, 0, 1) ** (1 / 2.2)
    value = T.compute_loss(net, model, ldr, hdr, loss)
    assert value.dim() == 0 and torch.isfinite(value)
    assert value.item() >= 0.0 or loss == "psnr"  # the PSNR objective is a log10, it may be negative
    value.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


@pytest.mark.parametrize("loss,trained", [("singlehdr_deq", "dequantize."), ("singlehdr_lin", "linearize."),
                                          ("singlehdr_hal", "hallucinate.")])
def test_singlehdr_stage_losses_train_only_their_sub_network(loss, trained):
    net = _model("singlehdr").train()
    net.zero_grad(set_to_none=True)
    hdr = torch.exp(torch.randn(1, 3, 32, 32))
    ldr = torch.clamp(hdr, 0, 1) ** (1 / 2.4)
    T.compute_loss(net, "singlehdr", ldr, hdr, loss).backward()
    with_grad = {n.split(".")[0] + "." for n, p in net.named_parameters() if p.grad is not None}
    assert with_grad == {trained}


def test_cli_reports_unknown_loss_and_fusion_models_in_one_line(tmp_path, hdr_folder, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": "hdrcnn-lite", "loss": "nope", "data": str(hdr_folder)}))
    assert T.main(["--config", str(cfg), "--out", str(tmp_path / "r"), "-q"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown loss 'nope'" in err and "valid:" in err
    assert not (tmp_path / "r").exists()
    for fusion in ("ahdrnet", "kalantari", "wu"):
        assert T.main(["--model", fusion, "--data", str(hdr_folder), "--out", str(tmp_path / fusion), "-q"]) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "bracket" in err
    assert T.main(["--model", "akyuz", "--out", str(tmp_path / "k"), "-q"]) != 0
    assert "classical" in capsys.readouterr().err


def test_patch_must_fit_the_model(hdr_folder, tmp_path):
    with pytest.raises(InputError, match="multiple of 128"):
        T.train(tiny(hdr_folder, model="santos", patch=64), tmp_path / "s", progress=False, device="cpu")


def test_validation_pads_to_the_models_multiple():
    seen = []

    class Net(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            assert x.shape[-1] % 16 == 0 and x.shape[-2] % 16 == 0
            return x * 2

    x = torch.rand(1, 3, 20, 36)
    out = T._pad_forward(Net(), x, 16)
    assert seen == [(32, 48)] and out.shape == x.shape
    torch.testing.assert_close(out, x * 2)


# ------------------------------------------------------------------------------------------
# configuration, staged recipes
# ------------------------------------------------------------------------------------------

def test_config_validation(tmp_path):
    def load(raw):
        p = tmp_path / "c.json"
        p.write_text(json.dumps(raw))
        return T.TrainConfig.from_file(p)

    cfg = load({"model": "santos", "patch_sampling": "santos", "pretrain": "inpainting", "mask_coverage": [0.1, 0.4],
                "gan": False, "comment": "x"})
    assert cfg.mask_coverage == (0.1, 0.4) and cfg.patch_sampling == "santos"
    bad = [({"nope": 1}, "unknown keys nope"), ({"patch_sampling": "best"}, "patch_sampling"),
           ({"pretrain": "denoise"}, "pretrain"), ({"mask_coverage": [0.5, 0.2]}, "mask_coverage"),
           ({"stages": []}, "stages"), ({"stages": [{"model": "santos"}]}, "same model"),
           ({"stages": [{"stages": []}]}, "nested"), ({"stages": [{}, {"init_from": "x.safetensors"}]}, "init_from"),
           ({"stages": [{"lr": 1, "bogus": 2}]}, "stage 1: unknown keys bogus")]
    for raw, msg in bad:
        with pytest.raises(InputError, match=msg):
            load(raw)


def test_shipped_configs_are_valid(random_vgg):
    files = sorted(CONFIGS.glob("*.json"))
    assert files
    for f in files:
        cfg = T.TrainConfig.from_file(f)
        stages = [c for _, c in T.stage_configs(cfg)] if cfg.stages else [cfg]
        for c in stages:
            T.resolve_loss(c.model, c.loss, c.gan)
            assert c.patch % T.trainable_info(c.model).multiple_of == 0, f


def test_staged_recipe_inpainting_then_santos_sampling(hdr_folder, tmp_path):
    cfg = tiny(hdr_folder, iterations=2, loss="log_l1", stages=[
        {"name": "inpainting", "pretrain": "inpainting", "mask_coverage": [0.1, 0.3]},
        {"name": "hdr fine-tune", "patch_sampling": "santos", "sampling_tries": 2, "iterations": 1,
         "lr": 0.0, "lr_min": 0.0},
    ])
    res = T.train(cfg, tmp_path / "run", progress=False, device="cpu")
    run = tmp_path / "run"
    assert [s["stage"] for s in res["stages"]] == ["01-inpainting", "02-hdr-fine-tune"]
    assert [s["step"] for s in res["stages"]] == [2, 1]
    s1, s2 = run / "01-inpainting", run / "02-hdr-fine-tune"
    c2 = json.loads((s2 / "config.json").read_text())
    assert c2["init_from"] == str(s1 / "last.safetensors") and c2["patch_sampling"] == "santos"
    assert json.loads((s1 / "config.json").read_text())["pretrain"] == "inpainting"
    assert c2["pretrain"] is None
    # stage 2 (learning rate 0) starts from, and so keeps, stage 1's weights
    w1, w2 = load_file(str(s1 / "last.safetensors")), load_file(str(s2 / "last.safetensors"))
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-6, atol=1e-7)
    assert_same_weights(run / "last.safetensors", s2 / "last.safetensors")
    assert (s1 / "done.json").exists() and (s2 / "done.json").exists()
    with pytest.raises(InputError, match="--resume"):
        T.train(cfg, run, progress=False, device="cpu")
    again = T.train(cfg, run, resume=True, progress=False, device="cpu")  # finished stages are not trained again
    assert [s["step"] for s in again["stages"]] == [2, 1]


def test_staged_recipe_stopped_mid_stage_resumes_exactly(hdr_folder, tmp_path):
    cfg = tiny(hdr_folder, iterations=2, loss="log_l1", stages=[{"name": "a"}, {"name": "b"}])
    T.train(cfg, tmp_path / "straight", progress=False, device="cpu")
    first = T.train(cfg, tmp_path / "split", progress=False, device="cpu", on_step=_stop_at(1))
    assert first["stopped"] == "signal" and len(first["stages"]) == 1
    assert not (tmp_path / "split" / "02-b").exists()
    T.train(cfg, tmp_path / "split", resume=True, progress=False, device="cpu")
    assert_same_weights(tmp_path / "straight" / "last.safetensors", tmp_path / "split" / "last.safetensors")


def test_validation_preview_panels():
    """TensorBoard previews: input as shot | prediction | reference, both HDR panels through the
    reference's Reinhard curve, so a perfect prediction gives identical right-hand panels."""
    from hdrlift.training.train import preview_image

    rng = np.random.default_rng(0)
    ref = (rng.random((12, 10, 3)) * 4.0).astype(np.float32)
    ldr = np.clip(ref, 0, 1)
    img = preview_image(ldr, ref, ref)
    assert img.shape == (12, 30, 3) and img.min() >= 0.0 and img.max() <= 1.0
    np.testing.assert_array_equal(img[:, :10], ldr)
    np.testing.assert_allclose(img[:, 10:20], img[:, 20:])
    worse = preview_image(ldr, ldr, ref)  # clipped prediction: its panel differs from the reference's
    assert np.abs(worse[:, 10:20] - worse[:, 20:]).max() > 0.01


def test_init_partial_loads_matching_tensors_and_keeps_the_layout(tmp_path):
    """init_partial: the resize-convolution decoder starts fresh from deconvolution weights, every
    other tensor is loaded; the network keeps its own layout."""
    from safetensors.torch import save_file

    from hdrlift.engine.models.hdrcnn import HDRCNN

    torch.manual_seed(0)
    old = HDRCNN(width=0.25, upsample="deconv")
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.01)
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(tmp_path / "old.safetensors"))
    net = T.build_network("hdrcnn-lite")
    fresh_up = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("up.")}
    n, fresh = T.load_partial(net, tmp_path / "old.safetensors")
    assert net.upsample == "resize" and fresh == sorted(fresh_up)
    assert n == len(old.state_dict()) - sum(1 for k in old.state_dict() if k.startswith("up."))
    sd = net.state_dict()
    assert torch.equal(sd["encoder.0.0.conv.weight"], old.state_dict()["encoder.0.0.conv.weight"])
    assert all(torch.equal(sd[k], v) for k, v in fresh_up.items())
    with pytest.raises(InputError, match="no tensor"):
        save_file({"x": torch.zeros(2)}, str(tmp_path / "none.safetensors"))
        T.load_partial(net, tmp_path / "none.safetensors")


def test_loss_params_reach_the_objective_and_are_checked():
    """``"loss_params"``: keyword arguments of a training/objectives.py loss, checked at start."""
    T.TrainConfig(loss="psnr_gain", loss_params={"hinge": 8, "margin_db": 1.0}).check()
    with pytest.raises(InputError, match="refused: nope"):
        T.TrainConfig(loss="psnr_gain", loss_params={"nope": 1.0}).check()
    with pytest.raises(InputError, match="refused: hinge"):
        T.TrainConfig(loss="psnr_gain", loss_params={"hinge": "big"}).check()
    with pytest.raises(InputError, match="apply to the losses"):
        T.TrainConfig(loss="log_l1", loss_params={"hinge": 1.0}).check()
    net = T.build_network("hdrcnn-lite").eval()
    torch.manual_seed(0)
    ldr = torch.rand(2, 3, 32, 32)
    ldr[:, :, 8:16, 8:16] = 1.0
    hdr = torch.where(ldr >= 1.0, torch.full_like(ldr, 6.0), ldr ** 2.2)
    with torch.no_grad():
        a = T.compute_loss(net, "hdrcnn-lite", ldr, hdr, "psnr_gain")
        b = T.compute_loss(net, "hdrcnn-lite", ldr, hdr, "psnr_gain", {"hinge": 0.0, "clipped_l1": 0.0})
    assert float(a) != pytest.approx(float(b))
