"""Santos et al. 2020 training data: Algorithm 1 patch metric and sampling (§3.4),
inpainting pre-training masks (§3.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hdrlift.training import data as D
from hdrlift.training import santos_data as S
from training_helpers import write_exr


def bright_patch(textured: bool, size: int = 64, seed: int = 0) -> np.ndarray:
    """A dim background with a bright region (peak ~8x white): smooth (a Gaussian highlight) or
    textured (the same highlight modulated by fine ripples)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(seed)
    blob = 8.0 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 5) ** 2))
    if textured:
        blob = blob * (1.0 + 0.8 * np.sin(xx * 1.3 + rng.uniform(0, 6)) * np.sin(yy * 1.1))
    return (0.2 + blob[..., None] * np.ones(3, np.float32)).astype(np.float32)


def ldr_of(hdr: np.ndarray) -> np.ndarray:
    return np.clip(hdr, 0, 1) ** (1 / 2.2)


def test_bilateral_filter_matches_brute_force():
    rng = np.random.default_rng(0)
    img = (rng.random((28, 30)) * 2 + np.where(np.arange(30) < 15, 0.0, 3.0)).astype(np.float32)
    # Algorithm 1's sigmas: the range kernel is nearly flat at sigma_c = 100
    np.testing.assert_allclose(S.bilateral_filter(img, 100.0, 10.0), S.bilateral_filter_exact(img, 100.0, 10.0),
                               atol=1e-5)
    # an edge-preserving setting: Durand & Dorsey's piecewise-linear approximation stays close
    fast, exact = S.bilateral_filter(img, 0.5, 2.0), S.bilateral_filter_exact(img, 0.5, 2.0)
    assert float(np.abs(fast - exact).max()) < 0.03
    assert float(np.abs(fast - exact).mean()) < 0.1 * float(np.abs(img - exact).mean())
    # edge preserving: the 3-unit step survives the small range sigma, not the large one
    assert float(exact[:, 16:].mean() - exact[:, :14].mean()) > 2.5
    assert np.all(S.bilateral_filter(np.full((5, 6), 2.0, np.float32)) == 2.0)


def test_sobel_of_a_ramp():
    ramp = np.tile(np.arange(10, dtype=np.float32) * 0.5, (7, 1))
    gx, gy = S.sobel(ramp)
    np.testing.assert_allclose(gx[:, 1:-1], 8 * 0.5)  # unnormalised 3x3 Sobel: 8 x slope
    np.testing.assert_allclose(gy, 0.0)


def test_patch_metric_prefers_textured_saturated_regions():
    flat, tex = bright_patch(False), bright_patch(True)
    m_flat = S.patch_metric(flat, S.soft_mask(ldr_of(flat)))
    m_tex = S.patch_metric(tex, S.soft_mask(ldr_of(tex)))
    assert m_tex >= S.THRESHOLD > m_flat  # Algorithm 1 threshold 0.85
    assert m_tex > 5 * m_flat
    # only saturated pixels count: the same texture below white scores 0
    dim = tex / tex.max() * 0.5
    assert S.patch_metric(dim, S.soft_mask(ldr_of(dim))) == 0.0
    assert S.patch_metric(dim, S.soft_mask(ldr_of(dim)), region="saturated") == 0.0
    # "in the saturated areas": dividing by the saturated share can only raise the score
    assert S.patch_metric(tex, S.soft_mask(ldr_of(tex)), region="saturated") > m_tex
    with pytest.raises(ValueError):
        S.patch_metric(tex, S.soft_mask(ldr_of(tex)), region="all")


def test_soft_mask_is_santos_beta():
    m = S.soft_mask(np.array([0.0, 0.5, 0.96, 0.98, 1.0], np.float32))
    np.testing.assert_allclose(m, [1.0, 1.0, 1.0, 0.5, 0.0], atol=1e-5)


def test_select_patch_returns_the_first_textured_candidate_else_the_best():
    flat, tex = bright_patch(False), bright_patch(True)
    seq = iter([(ldr_of(flat), flat), (ldr_of(tex), tex), (ldr_of(flat), flat)])
    calls = []

    def draw():
        calls.append(1)
        return next(seq)

    ldr, hdr, m = S.select_patch(draw, tries=3)
    assert hdr is tex and m >= S.THRESHOLD and len(calls) == 2
    # nothing reaches the threshold: the largest metric wins
    tex_weak = bright_patch(True) * np.float32(0.3)
    cands = iter([(ldr_of(flat), flat), (ldr_of(tex_weak), tex_weak), (ldr_of(flat), flat)])
    _, hdr, m = S.select_patch(lambda: next(cands), tries=3, threshold=1e9)
    assert hdr is tex_weak


def test_patch_dataset_santos_sampling_prefers_textured_patches(tmp_path):
    write_exr(tmp_path / "flat.exr", bright_patch(False, 48))
    write_exr(tmp_path / "textured.exr", bright_patch(True, 48))
    folder = D.HdrFolder(tmp_path)

    def roughness(hdr: np.ndarray) -> float:  # which picture a patch came from, camera aside
        lg = np.log(hdr.mean(axis=0) + 1e-3)
        return float(np.abs(lg[1:-1, 2:] + lg[1:-1, :-2] + lg[2:, 1:-1] + lg[:-2, 1:-1] - 4 * lg[1:-1, 1:-1]).mean())

    r_tex = roughness(bright_patch(True, 48).transpose(2, 0, 1))
    r_flat = roughness(bright_patch(False, 48).transpose(2, 0, 1))
    assert r_tex > 10 * r_flat
    cut = np.sqrt(r_tex * r_flat)

    def textured_share(sampling: str) -> float:
        ds = D.PatchDataset(folder, size=48, seed=11, sampling=sampling, tries=4)
        return float(np.mean([roughness(ds.sample()[1]) > cut for _ in range(24)]))

    random_share, santos_share = textured_share("random"), textured_share("santos")
    assert santos_share >= 0.85
    assert santos_share > random_share + 0.2


@pytest.mark.parametrize("h,w", [(64, 64), (128, 96)])
@pytest.mark.parametrize("coverage", [0.05, 0.2, 0.45, 0.6])
def test_inpainting_mask_has_requested_coverage(h, w, coverage):
    rng = np.random.default_rng(int(coverage * 100) + h)
    hole = S.inpainting_mask(h, w, rng, coverage)
    assert hole.shape == (h, w) and hole.dtype == bool
    one_disc = math.pi * (S.HOLE_RADIUS[1] * min(h, w) + 1) ** 2 / (h * w)
    assert coverage <= hole.mean() <= coverage + one_disc


def test_inpainting_masks_are_random_streaks_and_holes():
    rng = np.random.default_rng(0)
    masks = [S.inpainting_mask(64, 64, rng, 0.3) for _ in range(4)]
    assert not any(np.array_equal(masks[0], m) for m in masks[1:])
    assert not S.inpainting_mask(64, 64, rng, 0.0).any()
    with pytest.raises(ValueError):
        S.inpainting_mask(8, 8, rng, 1.0)
    a = S.inpainting_mask(64, 64, np.random.default_rng(5), 0.3)
    b = S.inpainting_mask(64, 64, np.random.default_rng(5), 0.3)
    np.testing.assert_array_equal(a, b)


def test_fill_holes_sets_display_white():
    ldr = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32) * 0.9
    hole = np.zeros((8, 8), bool)
    hole[2:4, 3:6] = True
    out = S.fill_holes(ldr, hole)
    assert np.all(out[hole] == 1.0)
    np.testing.assert_array_equal(out[~hole], ldr[~hole])
    assert ldr.max() < 1.0  # the input is not modified


def test_patch_dataset_inpainting_pretraining(hdr_folder):
    ds = D.PatchDataset(D.HdrFolder(hdr_folder), size=32, seed=0, pretrain="inpainting", mask_coverage=(0.3, 0.3))
    for _ in range(4):
        ldr, hdr = ds.sample()
        assert hdr.max() <= 1.0  # the target is the clipped linear scene: inpainting, not expansion
        white = np.all(ldr == 1.0, axis=0).mean()
        assert white >= 0.3
    with pytest.raises(ValueError):
        D.PatchDataset(D.HdrFolder(hdr_folder), pretrain="inpainting", mask_coverage=(0.5, 0.2))
