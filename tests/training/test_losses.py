"""The papers' losses (training/losses.py), checked against the equations they cite."""

from __future__ import annotations

import math

import pytest
import torch

from hdrlift.training import losses as L


def rand_hdr(n=2, h=16, w=16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(n, 3, h, w, generator=g) * 1.5 - 0.5)


def rand_code(n=2, h=16, w=16, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g)


def grad_of(fn, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    fn(x).backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    return x.grad


# ------------------------------------------------------------------------------------------
# Eilertsen et al. 2017 (Qiu's survey §6.1)
# ------------------------------------------------------------------------------------------

def test_eilertsen_losses_zero_on_identical_and_positive_in_highlights():
    h, ldr = rand_hdr(), rand_code() * 0.9  # max_c D <= 0.9 < tau: alpha = 0 ...
    ldr[:, :, :4, :4] = 1.0  # ... except in a saturated corner, alpha = 1
    y = L.log_image(h)
    assert float(L.eilertsen_log(y, h, ldr)) == pytest.approx(0.0, abs=1e-12)
    assert float(L.eilertsen_ir(y, h, ldr)) == pytest.approx(0.0, abs=1e-10)
    assert float(L.eilertsen_log(y + 0.5, h, ldr)) > 0
    # Eq. 19 weighs by alpha: only saturated pixels (max_c D > tau) count
    assert float(L.eilertsen_log(y + 0.5, h, ldr * 0.9)) == 0.0
    # Eq. 19 value: alpha = 1 on 16 of 256 pixels of every image and channel, error 0.5
    assert float(L.eilertsen_log(y + 0.5, h, ldr)) == pytest.approx(0.25 * 16 / 256, rel=1e-5)
    grad_of(lambda t: L.eilertsen_ir(t, h, ldr), y + 0.1)


# ------------------------------------------------------------------------------------------
# Moriwaki et al. 2018 (§3.2)
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code,weight", [(0.0, 6.0), (0.01, 5.0), (0.025, 3.5), (0.05, 1.0), (0.5, 1.0), (1.0, 1.0)])
def test_moriwaki_weights_eq3(code, weight):
    # w = 1 + gamma max(0, 1 - min_c(x) / tau), gamma = 5, tau = 0.05
    x = torch.tensor([0.9, code, 0.7]).view(1, 3, 1, 1)  # the darkest channel decides
    assert float(L.moriwaki_weights(x)) == pytest.approx(weight, rel=1e-6)


def test_moriwaki_rec_eq2():
    h, ldr = rand_hdr(), rand_code()
    y = L.log_image(h)
    assert float(L.moriwaki_rec(y, h, ldr)) == pytest.approx(0.0, abs=1e-12)
    w = L.moriwaki_weights(ldr)
    assert float(L.moriwaki_rec(y + 0.3, h, ldr)) == pytest.approx(float((w * 0.09).mean()), rel=1e-5)
    grad_of(lambda t: L.moriwaki_rec(t, h, ldr), y)


def test_moriwaki_adversarial_losses_eq4_eq5():
    zero = torch.zeros(4)  # D = 0.5 for every image
    assert float(L.moriwaki_gan(zero)) == pytest.approx(4 * math.log(2))  # sum over the mini-batch
    assert float(L.moriwaki_d(zero, zero)) == pytest.approx(2 * math.log(2))  # mean over the mini-batch
    # a confident, correct discriminator has a small loss; the fooled generator a large one
    assert float(L.moriwaki_d(torch.full((4,), -20.0), torch.full((4,), 20.0))) < 1e-6
    assert float(L.moriwaki_gan(torch.full((4,), -20.0))) == pytest.approx(80.0, rel=1e-6)
    assert torch.isfinite(L.moriwaki_d(torch.full((2,), 1e4), torch.full((2,), -1e4)))  # no overflow


def test_moriwaki_vgg_and_hybrid(random_vgg):
    vgg = random_vgg("cpu")
    h, ldr = rand_hdr(h=32, w=32), rand_code(h=32, w=32)
    y = L.log_image(h)
    assert float(L.moriwaki_vgg(y, h, vgg)) == pytest.approx(0.0, abs=1e-9)
    assert float(L.moriwaki_vgg(y + 0.5 * torch.randn_like(y), h, vgg)) > 0
    logits = torch.tensor([0.3, -0.2])
    expect = float(L.moriwaki_rec(y + 0.1, h, ldr) + L.MORIWAKI_ALPHA * L.moriwaki_gan(logits)
                   + L.MORIWAKI_BETA * L.moriwaki_vgg(y + 0.1, h, vgg))
    assert float(L.moriwaki_hybrid(y + 0.1, h, ldr, logits, vgg)) == pytest.approx(expect, rel=1e-6)
    assert L.MORIWAKI_ALPHA == 1e-3 and L.MORIWAKI_BETA == 5e-4  # §4
    grad_of(lambda t: L.moriwaki_hybrid(t, h, ldr, logits, vgg), y + 0.1)


# ------------------------------------------------------------------------------------------
# Santos et al. 2020 (§3.2)
# ------------------------------------------------------------------------------------------

def test_santos_rec_eq6_supervises_only_saturated_pixels():
    h = rand_hdr()
    ldr = rand_code() * 0.9  # all well exposed: M = 1 everywhere
    y = torch.log1p(h)
    assert float(L.santos_rec(y + 1.0, h, ldr)) == 0.0
    sat = ldr.clone()
    sat[:, :, :8] = 1.0  # half of the rows saturated: M = 0 there
    assert float(L.santos_rec(y, h, sat)) == pytest.approx(0.0, abs=1e-7)
    assert float(L.santos_rec(y + 1.0, h, sat)) == pytest.approx(0.5, rel=1e-5)  # mean over elements
    grad_of(lambda t: L.santos_rec(t, h, sat), y)


def test_santos_composite_eq9_and_gram_eq12():
    h = rand_hdr()
    ldr = rand_code() * 0.9
    ldr[:, :, :4] = 1.0
    y = torch.log1p(h * 2)
    comp = L.santos_composite(y, h, ldr)
    torch.testing.assert_close(comp[:, :, 8:], h[:, :, 8:])  # M = 1: the reference
    torch.testing.assert_close(comp[:, :, :4], torch.expm1(y[:, :, :4]))  # M = 0: the prediction
    feat = torch.ones(1, 2, 3, 4)
    g = L.gram(feat)
    assert g.shape == (1, 2, 2)
    torch.testing.assert_close(g, torch.full((1, 2, 2), 12.0 / 24.0))  # phi^T phi / (C H W)


def test_santos_loss_zero_on_identical(random_vgg):
    vgg = random_vgg("cpu")
    h = rand_hdr(1, 32, 32)
    ldr = rand_code(1, 32, 32)
    ldr[:, :, :10] = 1.0
    y = torch.log1p(h)
    assert float(L.santos_loss(y, h, ldr, vgg)) == pytest.approx(0.0, abs=1e-5)
    bad = float(L.santos_loss(y + 0.5, h, ldr, vgg))
    assert bad > float(L.santos_loss(y + 0.5, h, ldr, None)) > 0  # the VGG and style terms add
    assert L.SANTOS_LAMBDAS == (6.0, 1.0, 1.0, 120.0) and L.SANTOS_MU == 500.0
    grad_of(lambda t: L.santos_loss(t, h, ldr, vgg), y + 0.2)


# ------------------------------------------------------------------------------------------
# HDRUNet, Kalantari / AHDRNet mu-law
# ------------------------------------------------------------------------------------------

def test_tanh_l1_eq3():
    a = torch.tensor([0.5, 2.0, -1.0])
    b = torch.tensor([1.0, 2.0, 0.0])
    expect = (abs(math.tanh(0.5) - math.tanh(1.0)) + 0.0 + abs(math.tanh(-1.0))) / 3
    assert float(L.tanh_l1(a, b)) == pytest.approx(expect, rel=1e-6)
    assert float(L.tanh_l1(b, b)) == 0.0
    # bounded: huge values cost at most 2 per element
    assert float(L.tanh_l1(torch.tensor([1e6]), torch.tensor([-1e6]))) == pytest.approx(2.0)


def test_mu_law_values():
    assert float(L.mu_law(torch.tensor(0.0))) == 0.0
    assert float(L.mu_law(torch.tensor(1.0))) == pytest.approx(1.0)
    assert float(L.mu_law(torch.tensor(1.0), 500.0)) == pytest.approx(1.0)
    assert float(L.mu_law(torch.tensor(0.5))) == pytest.approx(math.log(1 + 2500) / math.log(5001), rel=1e-6)
    assert float(L.mu_law(torch.tensor(0.1), 500.0)) == pytest.approx(math.log(51) / math.log(501), rel=1e-6)
    assert float(L.mu_law(torch.tensor(-3.0))) == 0.0


def test_mu_law_l1_l2():
    h = rand_hdr()
    assert float(L.mu_law_l1(h, h)) == 0.0 and float(L.mu_law_l2(h, h)) == 0.0
    # L2 sums the squared error over the three channels (Kalantari Eq. 2)
    a = torch.full((1, 3, 2, 2), 0.5)
    b = torch.full((1, 3, 2, 2), 0.25)
    d = math.log(1 + 2500) / math.log(5001) - math.log(1 + 1250) / math.log(5001)
    assert float(L.mu_law_l2(a, b)) == pytest.approx(3 * d * d, rel=1e-5)
    assert float(L.mu_law_l1(a, b)) == pytest.approx(d, rel=1e-5)
    grad_of(lambda t: L.mu_law_l1(t, h) + L.mu_law_l2(t, h), h * 1.1)


# ------------------------------------------------------------------------------------------
# Kim et al. 2021 (§3.2)
# ------------------------------------------------------------------------------------------

def test_kim_histogram_loss():
    a = rand_code(1, 16, 16, seed=3)
    assert float(L.kim_hist(a, a)) == 0.0
    assert float(L.kim_hist(a * 0.5, a)) > 0.0
    # a permutation of the pixels has the same histogram
    perm = a.flatten(2)[..., torch.randperm(256)].view_as(a)
    assert float(L.kim_hist(perm, a)) == pytest.approx(0.0, abs=1e-7)
    c = L.soft_counts(a)
    assert c.shape == (1, 3, 256)
    torch.testing.assert_close(c.sum(-1), torch.ones(1, 3))  # fractions of pixels
    on_level = torch.full((1, 1, 2, 2), 10 / 255)
    assert float(L.soft_counts(on_level)[0, 0, 10]) == pytest.approx(1.0, abs=1e-5)
    g = grad_of(lambda t: L.kim_hist(t, a), a * 0.7 + 0.1)
    assert float(g.abs().sum()) > 0  # the soft counts move with the pixel values


def test_kim_hdr_edge_and_global():
    h = rand_hdr()
    assert float(L.kim_hdr(h, h)) == 0.0
    assert float(L.kim_hdr(h * 2, h)) > 0.0
    step = torch.zeros(1, 3, 24, 24)
    step[..., 12:] = 1.0
    edges = L.canny_edges(step)
    assert edges.shape == (1, 1, 24, 24)
    cols = edges[0, 0].sum(0)
    assert cols[10:14].sum() >= 20 and cols[:6].sum() == 0 and cols[-6:].sum() == 0  # one vertical edge
    assert float(L.kim_edge(edges, step)) == 0.0
    s = rand_code(1, 8, 8).unsqueeze(1).repeat(1, 3, 1, 1, 1)
    assert float(L.kim_global(s, s)) == 0.0


# ------------------------------------------------------------------------------------------
# SingleHDR, Liu et al. 2020 (Qiu's survey §7.1)
# ------------------------------------------------------------------------------------------

def test_singlehdr_stage_losses_zero_on_identical():
    h, code = rand_hdr(), rand_code()
    assert float(L.singlehdr_deq(code, code)) == 0.0
    assert float(L.singlehdr_lin(h.clamp(0, 1), h.clamp(0, 1))) == 0.0
    curve = L.srgb_inverse_crf(1024).unsqueeze(0)
    assert float(L.singlehdr_crf(curve, curve)) == 0.0
    assert float(L.singlehdr_hal(h, h)) == 0.0
    assert float(L.total_variation(torch.ones(1, 3, 5, 5))) == 0.0
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 4, 6)
    assert float(L.total_variation(ramp)) == pytest.approx(1.0)  # |dx| = 1, |dy| = 0
    assert L.SINGLEHDR_WEIGHTS == {"deq": 1.0, "lin": 10.0, "crf": 1.0, "hal": 1.0, "p": 0.001, "tv": 0.1}
    stages = {"deq": code, "lin": h.clamp(0, 1), "hdr": h}
    # Eq. 24 with every stage exact: only the TV regulariser remains
    joint = L.singlehdr_joint(stages, curve, h, code, curve)
    assert float(joint) == pytest.approx(0.1 * float(L.total_variation(L.log_image(h))), rel=1e-6)


def test_clipped_log_l1_weighs_images_not_pixels():
    """training/objectives.py: the log error over each image's clipped channels, averaged per image:
    an image with one clipped pixel counts as much as one with a hundred (log_l1 weighs pixels)."""
    from hdrlift.training.objectives import clipped_log_l1

    ldr = torch.full((2, 3, 16, 16), 0.5)
    ldr[0, :, 0, 0] = 1.0  # one clipped pixel
    ldr[1, :, :10, :10] = 1.0  # a hundred
    target = torch.where(ldr >= 1.0, torch.full_like(ldr, 4.0), ldr)
    pred = torch.where(ldr >= 1.0, torch.full_like(ldr, 2.0), ldr)  # one stop low where clipped
    d = math.log(4.0 + 1 / 255) - math.log(2.0 + 1 / 255)
    assert float(clipped_log_l1(pred, target, ldr)) == pytest.approx(d, rel=1e-5)
    assert float(clipped_log_l1(pred[:1], target[:1], ldr[:1])) == pytest.approx(d, rel=1e-5)
    # the well-exposed channels do not count, whatever their error; no clipped channel: 0
    assert float(clipped_log_l1(pred * 0 + 0.3, target, ldr * 0 + 0.5)) == 0.0
    # the L2 variant (Eilertsen Eq. 19's square, per image)
    from hdrlift.training.objectives import clipped_log_l2

    assert float(clipped_log_l2(pred, target, ldr)) == pytest.approx(d * d, rel=1e-5)


def test_psnr_gain_is_zero_for_the_inverse_curve_and_weighs_images_that_lose():
    """training/objectives.py::psnr_gain: the inverse camera curve itself scores the hinge alone
    (no gain, a 0.5 dB shortfall), a prediction nearer the truth scores below it, and the hinge
    multiplies the gradient of an image that loses against the curve by 1 + hinge."""
    from hdrlift.engine.colour_maths import srgb_to_linear
    from hdrlift.training.objectives import psnr_gain

    torch.manual_seed(0)
    ldr = torch.rand(2, 3, 16, 16) * 0.8
    ldr[:, :, 4:8, 4:8] = 1.0  # a clipped block in each image
    base = srgb_to_linear(ldr)
    target = torch.where(ldr >= 1.0, torch.full_like(ldr, 3.0), base)
    hinge = 4.0
    # the curve itself: r = 0 in both domains, hinge * 0.05 each
    at_base = psnr_gain(base, target, ldr, hinge=hinge, clipped_l1=0.0)
    assert float(at_base) == pytest.approx(2 * hinge * 0.05, rel=1e-5)
    # half-way to the truth inside the clipped block: better than the curve in both domains
    better = torch.where(ldr >= 1.0, torch.full_like(ldr, 2.0), base)
    assert float(psnr_gain(better, target, ldr, hinge=hinge, clipped_l1=0.0)) < 0.0
    # an image that loses gets (1 + hinge) times the gradient of one that gains (same error size)
    pred = torch.where(ldr >= 1.0, torch.full_like(ldr, 2.0), base)
    pred[1] = torch.where(ldr[1] >= 1.0, torch.full_like(ldr[1], 30.0), base[1])  # far too bright: a loss
    pred.requires_grad_(True)
    psnr_gain(pred, target, ldr, hinge=hinge, clipped_l1=0.0).backward()
    g = pred.grad.abs().sum(dim=(1, 2, 3))
    plain = pred.detach().clone().requires_grad_(True)
    psnr_gain(plain, target, ldr, hinge=0.0, clipped_l1=0.0).backward()
    g0 = plain.grad.abs().sum(dim=(1, 2, 3))
    assert float(g[0] / g0[0]) == pytest.approx(1.0, rel=1e-4)  # gains: no hinge
    assert float(g[1] / g0[1]) == pytest.approx(1.0 + hinge, rel=1e-4)  # loses: 1 + hinge
