"""Training losses of the papers followed here, each citing its equation.

Every loss takes tensors ``(N, 3, H, W)``. ``pred`` is what the network returns (linear HDR
unless the name says log), ``target`` the linear reference in the same units, ``ldr`` the
network input (display code values in [0, 1]) where a loss needs the saturation mask.

Eilertsen et al. 2017 (as summarised in Qiu's survey, §6.1):

* :func:`eilertsen_log` — Eq. 19, ``1/3N sum |alpha_ic (y_hat - log(H + eps))|^2`` (alpha per channel, as the blend).
* :func:`eilertsen_ir` — Eq. 20-22, illuminance/reflectance split with a Gaussian
  (``sigma = 2``) low-pass of the log luminance (weights ``0.213, 0.715, 0.072``), ``lambda``
  weighting the illuminance term.

Moriwaki et al. 2018, "Hybrid loss for learning single-image-based HDR reconstruction" (§3.2):

* :func:`moriwaki_weights` / :func:`moriwaki_rec` — Eq. 2-3, ``1/N sum_i w_i |log y_hat_i - log y_i|^2``
  with ``w_i = 1 + gamma max(0, 1 - min_c(x_ic) / tau)``, ``gamma = 5``, ``tau = 0.05`` (§3.2, §4).
* :func:`moriwaki_gan` / :func:`moriwaki_d` — Eq. 4-5 (generator and discriminator losses, on
  logits of :class:`hdrlift.training.discriminator.MoriwakiDiscriminator`).
* :func:`moriwaki_vgg` — Eq. 6, ``1/N_l sum_k |phi_l(log y_hat)_k - phi_l(log y)_k|^2``, ``l = 5``
  (``pool5`` of VGG19).
* :func:`moriwaki_hybrid` — Eq. 1, ``L_Rec + alpha L_GAN + beta L_VGG``, ``alpha = 1e-3``, ``beta = 5e-4``.

Santos et al. 2020, "Single image HDR reconstruction using a CNN with masked features and
perceptual loss" (§3.2):

* :func:`santos_rec` — Eq. 6, ``||(1 - M) ⊙ (Y_hat - log(H + 1))||_1`` (``M``: the soft input mask).
* :func:`santos_composite` — Eq. 9, ``H~ = M ⊙ H + (1 - M) ⊙ Y_hat`` (linear).
* :func:`mu_law` — Eq. 10 (``mu = 500`` for Santos, ``5000`` for Kalantari/AHDRNet/Kim).
* :func:`santos_vgg`, :func:`santos_style`, :func:`gram` — Eq. 8, 11, 12 on ``pool1..pool3``.
* :func:`santos_loss` — Eq. 5 and 7: ``6 L_r + (1.0 L_v + 120 L_s)``.

Chen et al. 2021, HDRUNet (§3.3): :func:`tanh_l1` — Eq. 3, ``|tanh(Y_hat) - tanh(H)|``.

Kalantari & Ramamoorthi 2017 and AHDRNet (Yan et al. 2019), Qiu's survey §3 Eq. 1-2 and §5.3
Eq. 15: :func:`mu_law_l2`, :func:`mu_law_l1` on ``T(H) = log(1 + mu H) / log(1 + mu)``, ``mu = 5000``.

Kim et al. 2021, recursive exposure stack (§3.2):

* :func:`kim_hist` — Eq. 4's ``L_hist`` with differentiable (linear-interpolation) counts;
  :func:`kim_global` — Eq. 4, ``lambda_1 L_1 + lambda_2 L_hist`` over the exposure stack.
* :func:`canny_edges` (sigma = 2) and :func:`kim_edge` — Eq. 5, ``|E_hat - edge(I)|``.
* :func:`kim_hdr` — Eq. 7's tone-mapped HDR term ``|log((1 + mu H_hat) / (1 + mu H))|``, ``mu = 5000``;
  :func:`kim_refine` — Eq. 6-7 without the contextual bilateral term (see its docstring).

Liu et al. 2020, SingleHDR (Qiu's survey, §7.1 Eq. 23-24):

* :func:`singlehdr_deq`, :func:`singlehdr_lin`, :func:`singlehdr_crf`, :func:`singlehdr_hal`,
  :func:`singlehdr_perceptual`, :func:`total_variation` — the stage losses;
  :func:`singlehdr_joint` — Eq. 24 with ``w = {1, 10, 1, 1, 0.001, 0.1}``.

:data:`RECIPES` maps a loss name to ``fn(net, ldr, hdr) -> loss`` that runs the network the way its
paper's loss needs (log output, encoded output, intermediate stages) — the trainer's hook for
the papers' objectives. Perceptual recipes load ImageNet VGG19 through
:func:`hdrlift.training.vgg.shared_vgg` and stop with a one-line error when the weights are absent.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from hdrlift.engine.colour_maths import linear_to_srgb, luminance, mu_law, srgb_to_linear
from hdrlift.engine.models.filters import gaussian_kernel1d
from hdrlift.engine.models.masks import channel_alpha, highlight_alpha

EILERTSEN_W = (0.213, 0.715, 0.072)  # Eq. 20-21 luminance weights
LOG_EPS = 1.0 / 255.0


def eilertsen_log(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, tau: float = 0.95,
                  eps: float = LOG_EPS) -> torch.Tensor:
    """Eq. 19: alpha-weighted squared error between the log prediction and ``log(H + eps)``.

    ``alpha`` is per channel (:func:`masks.channel_alpha`), as the engine's blend is
    (``HDRCNN.blend``): a channel that was not clipped is not predicted, so it is not weighed."""
    alpha = channel_alpha(ldr, tau)
    d = alpha * (y_hat - torch.log(target.clamp(min=0.0) + eps))
    return (d * d).mean()


def _log_lum(y: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(EILERTSEN_W, dtype=y.dtype, device=y.device).view(1, 3, 1, 1)
    return torch.log((w * torch.exp(y)).sum(dim=1, keepdim=True))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = gaussian_kernel1d(sigma).to(x)
    r = k.numel() // 2
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def eilertsen_ir(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, lam: float = 0.5,
                 sigma: float = 2.0, tau: float = 0.95, eps: float = LOG_EPS) -> torch.Tensor:
    """Eq. 20-22: illuminance (``G_sigma * L``) and reflectance (``y - log I``) terms, each
    alpha-weighted, mixed by ``lam`` (illuminance) and ``1 - lam`` (reflectance)."""
    alpha = highlight_alpha(ldr, tau)
    y = torch.log(target.clamp(min=0.0) + eps)
    li_hat = _blur(_log_lum(y_hat), sigma)
    li = _blur(_log_lum(y), sigma)
    lr_hat = y_hat - li_hat
    lr = y - li
    term_i = ((alpha * (li_hat - li)) ** 2).mean()
    term_r = ((alpha * (lr_hat - lr)) ** 2).mean()
    return lam * term_i + (1.0 - lam) * term_r


# ------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------

def log_image(h: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """``log(max(H, 0) + eps)``: the log domain of HDR-CNN, Moriwaki and the trainer (eps = 1/255)."""
    return torch.log(h.clamp(min=0.0) + eps)


# ------------------------------------------------------------------------------------------
# Moriwaki et al. 2018 (§3.2)
# ------------------------------------------------------------------------------------------

MORIWAKI_GAMMA = 5.0  # §4 "Training": gamma of Eq. 3
MORIWAKI_TAU = 0.05  # §3.2: threshold of Eq. 3
MORIWAKI_ALPHA = 1e-3  # Eq. 1 weight of L_GAN (§4)
MORIWAKI_BETA = 5e-4  # Eq. 1 weight of L_VGG (§4)
MORIWAKI_VGG_LAYER = "pool5"  # Eq. 6, l = 5


def moriwaki_weights(ldr: torch.Tensor, gamma: float = MORIWAKI_GAMMA, tau: float = MORIWAKI_TAU) -> torch.Tensor:
    """Eq. 3: ``w_i = 1 + gamma * max(0, 1 - min_c(x_ic) / tau)`` on the LDR input in [0, 1],
    ``(N, 1, H, W)``: 1 in well-exposed pixels, up to ``1 + gamma`` in black ones."""
    return 1.0 + gamma * (1.0 - ldr.amin(dim=1, keepdim=True) / tau).clamp(min=0.0)


def moriwaki_rec(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, gamma: float = MORIWAKI_GAMMA,
                 tau: float = MORIWAKI_TAU, eps: float = LOG_EPS) -> torch.Tensor:
    """Eq. 2: ``1/N sum_i w_i |log(y_hat_i) - log(y_i)|^2`` (averaged over the mini-batch).

    ``y_hat`` is the *log* prediction (``MoriwakiGenerator.forward_log``: ``log(H + eps)``), the
    target enters as ``log(H + eps)``; the squared difference is averaged over pixels and channels.
    """
    w = moriwaki_weights(ldr, gamma, tau)
    d = y_hat - log_image(target, eps)
    return (w * d * d).mean()


def moriwaki_gan(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``L_GAN = sum_j -log D(log y_hat_j)`` over the mini-batch (logits of the discriminator
    on the log prediction; see :mod:`hdrlift.training.discriminator`)."""
    from hdrlift.training.discriminator import generator_adversarial_loss

    return generator_adversarial_loss(fake_logits)


def moriwaki_d(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 5: ``L_D = -1/M sum_j [log(1 - D(log y_hat_j)) + log D(log y_j)]``."""
    from hdrlift.training.discriminator import discriminator_loss

    return discriminator_loss(fake_logits, real_logits)


def moriwaki_vgg(y_hat: torch.Tensor, target: torch.Tensor, vgg, layer: str = MORIWAKI_VGG_LAYER,
                 eps: float = LOG_EPS) -> torch.Tensor:
    """Eq. 6: ``1/N_l sum_k |phi_l(log y_hat)_k - phi_l(log y)_k|^2`` — the squared Euclidean
    distance of the feature *vectors* at each of the ``N_l`` positions of layer ``l`` (``pool5``),
    averaged over positions and the batch. ``y_hat`` is the log prediction; ``vgg`` a
    :class:`hdrlift.training.vgg.VGG19Features`. Inputs need at least 32 x 32 pixels."""
    fa = vgg(y_hat, (layer,))[layer]
    with torch.no_grad():
        fb = vgg(log_image(target, eps), (layer,))[layer]
    return ((fa - fb) ** 2).sum(dim=1).mean()


def moriwaki_hybrid(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, fake_logits: torch.Tensor | None = None,
                    vgg=None, alpha: float = MORIWAKI_ALPHA, beta: float = MORIWAKI_BETA) -> torch.Tensor:
    """Eq. 1: ``L_G = L_Rec + alpha L_GAN + beta L_VGG`` (terms left out when their input is None)."""
    loss = moriwaki_rec(y_hat, target, ldr)
    if fake_logits is not None:
        loss = loss + alpha * moriwaki_gan(fake_logits)
    if vgg is not None:
        loss = loss + beta * moriwaki_vgg(y_hat, target, vgg)
    return loss


# ------------------------------------------------------------------------------------------
# Santos et al. 2020 (§3.2)
# ------------------------------------------------------------------------------------------

SANTOS_MU = 500.0  # Eq. 10
SANTOS_LAMBDAS = (6.0, 1.0, 1.0, 120.0)  # lambda_1 (L_r), lambda_2 (L_p) of Eq. 5; lambda_3 (L_v), lambda_4 (L_s) of Eq. 7
SANTOS_LAYERS = ("pool1", "pool2", "pool3")
SANTOS_ALPHA = 0.96  # threshold of the input mask (Fig. 2)


def santos_mask(ldr: torch.Tensor, alpha: float = SANTOS_ALPHA) -> torch.Tensor:
    """The soft input mask ``M`` (§3, Fig. 2), per channel: 1 up to ``alpha``, 0 at display white."""
    from hdrlift.engine.models.masks import soft_exposure_mask

    return soft_exposure_mask(ldr, alpha)


def santos_rec(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, alpha: float = SANTOS_ALPHA) -> torch.Tensor:
    """Eq. 6: ``||(1 - M) ⊙ (Y_hat - log(H + 1))||_1``, ``Y_hat`` the prediction in the ``log(H + 1)``
    domain (``SantosHDR.forward_log1p``); the norm is averaged over elements (mean, not sum)."""
    m = santos_mask(ldr, alpha)
    return ((1.0 - m) * (y_hat - torch.log1p(target.clamp(min=0.0)))).abs().mean()


def santos_composite(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, alpha: float = SANTOS_ALPHA) -> torch.Tensor:
    """Eq. 9: ``H~ = M ⊙ H + (1 - M) ⊙ Y_hat`` with ``Y_hat`` taken back to linear (``exp(Y) - 1``)."""
    m = santos_mask(ldr, alpha)
    return m * target + (1.0 - m) * torch.expm1(y_hat).clamp(min=0.0)


def gram(feat: torch.Tensor) -> torch.Tensor:
    """Eq. 12: ``G = phi^T phi / K``, ``phi`` the ``(H W) x C`` feature matrix, ``K = C H W``: ``(N, C, C)``."""
    n, c, h, w = feat.shape
    f = feat.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / float(c * h * w)


def santos_vgg(composite: torch.Tensor, target: torch.Tensor, vgg, layers=SANTOS_LAYERS, mu: float = SANTOS_MU) -> torch.Tensor:
    """Eq. 8: ``sum_l ||phi_l(T(H~)) - phi_l(T(H))||_1`` (mean absolute difference per layer)."""
    fa = vgg(mu_law(composite, mu), tuple(layers))
    with torch.no_grad():
        fb = vgg(mu_law(target, mu), tuple(layers))
    return sum((fa[k] - fb[k]).abs().mean() for k in layers)


def santos_style(composite: torch.Tensor, target: torch.Tensor, vgg, layers=SANTOS_LAYERS, mu: float = SANTOS_MU) -> torch.Tensor:
    """Eq. 11: ``sum_l ||G_l(T(H~)) - G_l(T(H))||_1`` (mean absolute difference of the Gram matrices)."""
    fa = vgg(mu_law(composite, mu), tuple(layers))
    with torch.no_grad():
        fb = vgg(mu_law(target, mu), tuple(layers))
    return sum((gram(fa[k]) - gram(fb[k])).abs().mean() for k in layers)


def santos_loss(y_hat: torch.Tensor, target: torch.Tensor, ldr: torch.Tensor, vgg=None,
                lambdas: tuple[float, float, float, float] = SANTOS_LAMBDAS, mu: float = SANTOS_MU) -> torch.Tensor:
    """Eq. 5 and 7: ``lambda_1 L_r + lambda_2 (lambda_3 L_v + lambda_4 L_s)`` = ``6 L_r + (L_v + 120 L_s)``.

    ``y_hat`` is the ``log(H + 1)`` prediction; without ``vgg`` only ``lambda_1 L_r`` is returned.
    The VGG and style terms share one pass of VGG19 over each image.
    """
    l1, l2, l3, l4 = lambdas
    loss = l1 * santos_rec(y_hat, target, ldr)
    if vgg is None:
        return loss
    comp = santos_composite(y_hat, target, ldr)
    fa = vgg(mu_law(comp, mu), SANTOS_LAYERS)
    with torch.no_grad():
        fb = vgg(mu_law(target, mu), SANTOS_LAYERS)
    lv = sum((fa[k] - fb[k]).abs().mean() for k in SANTOS_LAYERS)
    ls = sum((gram(fa[k]) - gram(fb[k])).abs().mean() for k in SANTOS_LAYERS)
    return loss + l2 * (l3 * lv + l4 * ls)


# ------------------------------------------------------------------------------------------
# HDRUNet (Chen et al. 2021 §3.3); Kalantari (Qiu's survey §3, Eq. 1-2); AHDRNet (Qiu's survey §5.3, Eq. 15)
# ------------------------------------------------------------------------------------------

def tanh_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """HDRUNet Eq. 3: ``mean |tanh(Y_hat) - tanh(H)|``. HDRUNet applies it to its non-linear
    (gamma-encoded) output, see :data:`RECIPES` ``"tanh_l1"``; on any other pair it is the same formula."""
    return (torch.tanh(pred) - torch.tanh(target)).abs().mean()


def mu_law_l2(pred: torch.Tensor, target: torch.Tensor, mu: float = 5000.0) -> torch.Tensor:
    """Kalantari Eq. 1-2: ``E = sum_k (T_hat_k - T_k)^2`` summed over the colour channels, averaged
    over pixels and images; ``T`` the mu-law of Eq. 1 with ``mu = 5000``. Kalantari's HDR is bounded
    to [0, 1]; ours is not (1.0 = display white), so ``T`` exceeds 1 in highlights."""
    return ((mu_law(pred, mu) - mu_law(target, mu)) ** 2).sum(dim=1).mean()


def mu_law_l1(pred: torch.Tensor, target: torch.Tensor, mu: float = 5000.0) -> torch.Tensor:
    """AHDRNet Eq. 15: ``||T(H_hat) - T(H)||_1`` (mean absolute difference), mu-law of Eq. 1."""
    return (mu_law(pred, mu) - mu_law(target, mu)).abs().mean()


# ------------------------------------------------------------------------------------------
# Kim et al. 2021 (§3.2, Eq. 4-7)
# ------------------------------------------------------------------------------------------

KIM_LEVELS = 256  # L of Eq. 4 (8-bit intensity levels)
KIM_MU = 5000.0  # Eq. 7
KIM_CANNY_SIGMA = 2.0  # §3.2 "Canny edge detector of sigma = 2"


def soft_counts(x: torch.Tensor, levels: int = KIM_LEVELS) -> torch.Tensor:
    """Differentiable ``cnt_l`` of Eq. 4: the fraction of pixels at each of ``levels`` intensity
    levels of each image and channel, ``x`` in [0, 1] of shape ``(..., H, W)`` -> ``(..., levels)``.

    The paper counts pixels whose value rounds down to ``l`` (not differentiable); here each value
    ``v (L - 1)`` splits between its two neighbouring levels by linear interpolation, so the counts
    move smoothly with the pixel values. Counts are divided by ``H W`` (fractions, our choice, so
    that the loss does not scale with the patch size).
    """
    lead = x.shape[:-2]
    v = x.clamp(0.0, 1.0).reshape(-1, x.shape[-2] * x.shape[-1]) * (levels - 1)
    i0 = torch.floor(v).clamp(max=levels - 2)
    frac = v - i0
    i0 = i0.long()
    zero = torch.zeros(v.shape[0], levels, dtype=v.dtype, device=v.device)
    c = zero.scatter_add(1, i0, 1.0 - frac).scatter_add(1, i0 + 1, frac)
    return (c / v.shape[1]).reshape(*lead, levels)


def kim_hist(pred: torch.Tensor, target: torch.Tensor, levels: int = KIM_LEVELS) -> torch.Tensor:
    """Eq. 4, ``L_hist = 1/(L E) sum_e sum_l |cnt_l(I_hat^e) - cnt_l(I^e)|`` (averaged over images
    and channels too); images ``(..., H, W)`` of code values, any leading shape (e.g. ``(N, E, 3)``)."""
    return (soft_counts(pred, levels) - soft_counts(target.detach(), levels)).abs().mean()


def kim_global(pred: torch.Tensor, target: torch.Tensor, lam1: float = 1.0, lam2: float = 1.0) -> torch.Tensor:
    """Eq. 4: ``lambda_1 L_1 + lambda_2 L_hist`` over an exposure stack (``(N, E, 3, H, W)`` or
    ``(N, 3, H, W)``). The seed's text lost the values of the lambdas; 1 by default."""
    return lam1 * (pred - target).abs().mean() + lam2 * kim_hist(pred, target)


@torch.no_grad()
def canny_edges(img: torch.Tensor, sigma: float = KIM_CANNY_SIGMA, low: float = 0.1, high: float = 0.2) -> torch.Tensor:
    """Canny edge map (Canny 1986) of ``(N, C, H, W)`` images -> ``(N, 1, H, W)`` in {0, 1}.

    Luminance (or the single channel), Gaussian smoothing with ``sigma`` (Kim §3.2: 2), Sobel
    gradients, non-maximum suppression along the gradient direction quantised to 0/45/90/135
    degrees, double threshold at ``low`` and ``high`` times each image's largest gradient magnitude
    (the paper gives no thresholds; these are ours), hysteresis by repeated 3x3 dilation of the
    strong edges inside the weak ones until nothing changes.
    """
    g = luminance(img) if img.shape[1] == 3 else img[:, :1]
    g = _blur(g.float(), sigma)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=g.device)
    gp = F.pad(g, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(gp, kx.view(1, 1, 3, 3))
    gy = F.conv2d(gp, kx.t().contiguous().view(1, 1, 3, 3))
    mag = torch.sqrt(gx * gx + gy * gy)
    ang = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    sector = (((ang + 22.5) // 45.0) % 4).long()  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135
    mp = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]

    def nb(dy: int, dx: int) -> torch.Tensor:
        return mp[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    # neighbours along the gradient (rows grow downwards, so +45 degrees of atan2(gy, gx) is (dy=+1, dx=+1))
    pairs = [(nb(0, 1), nb(0, -1)), (nb(1, 1), nb(-1, -1)), (nb(1, 0), nb(-1, 0)), (nb(1, -1), nb(-1, 1))]
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for s, (a, b) in enumerate(pairs):
        keep |= (sector == s) & (mag >= a) & (mag >= b)
    nms = torch.where(keep, mag, torch.zeros_like(mag))
    peak = nms.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
    strong = nms >= high * peak
    weak = nms >= low * peak
    for _ in range(h + w):
        grown = (F.max_pool2d(strong.float(), 3, 1, 1) > 0) & weak
        if torch.equal(grown, strong):
            break
        strong = grown
    return strong.to(img.dtype)


def kim_edge(edge_pred: torch.Tensor, target: torch.Tensor, sigma: float = KIM_CANNY_SIGMA) -> torch.Tensor:
    """Eq. 5: ``L_edge = 1/(N E) sum |E_hat - edge(I)|``: the local network's edge map
    ``(N, 1, H, W)`` against the Canny edges of the target exposure ``(N, 3, H, W)``."""
    return (edge_pred - canny_edges(target, sigma)).abs().mean()


def kim_hdr(pred: torch.Tensor, target: torch.Tensor, mu: float = KIM_MU) -> torch.Tensor:
    """Eq. 7, second term: ``1/N sum_i |log((1 + mu H_hat_i) / (1 + mu H_i))|`` on pixel luminance."""
    a = luminance(pred.clamp(min=0.0))
    b = luminance(target.clamp(min=0.0))
    return (torch.log1p(mu * a) - torch.log1p(mu * b)).abs().mean()


def kim_refine(stack_pred: torch.Tensor, stack_target: torch.Tensor, hdr_pred: torch.Tensor, hdr_target: torch.Tensor,
               lam4: float = 1.0, lam5: float = 1.0) -> torch.Tensor:
    """Eq. 6-7 without ``L_CoBi``: ``lambda_4 L_1(stack) + lambda_5 L_HDR``.

    The contextual bilateral loss (Zhang et al. 2019, VGG19 conv3/conv4 features) is not
    implemented: the seed's text lost its weights ``w_s``, ``lambda_6`` and its matching details,
    and the paper uses it only as a final fine-tuning step (Table 3, last row).
    """
    return lam4 * (stack_pred - stack_target).abs().mean() + lam5 * kim_hdr(hdr_pred, hdr_target)


def exposure_stack_target(hdr: torch.Tensor, evs) -> torch.Tensor:
    """Code values of the linear reference re-exposed at each EV with the sRGB camera:
    ``srgb(clip(H 2^e, 0, 1))``, ``(N, E, 3, H, W)`` (targets for Kim's stack losses)."""
    return torch.stack([linear_to_srgb((hdr * (2.0 ** e)).clamp(0.0, 1.0)) for e in evs], dim=1)


# ------------------------------------------------------------------------------------------
# SingleHDR, Liu et al. 2020 (Qiu's survey, §7.1, Eq. 23-24)
# ------------------------------------------------------------------------------------------

SINGLEHDR_WEIGHTS = {"deq": 1.0, "lin": 10.0, "crf": 1.0, "hal": 1.0, "p": 0.001, "tv": 0.1}  # Eq. 24
SINGLEHDR_VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")


def singlehdr_deq(deq: torch.Tensor, target_code: torch.Tensor) -> torch.Tensor:
    """``L_deq = ||I_deq - I_n||_2^2``: dequantised LDR against the un-quantised LDR (mean squared)."""
    return ((deq - target_code) ** 2).mean()


def singlehdr_lin(lin: torch.Tensor, target_lin: torch.Tensor) -> torch.Tensor:
    """``L_lin = ||I_lin - I_c||_2^2``: linearised LDR against the clipped linear scene."""
    return ((lin - target_lin) ** 2).mean()


def singlehdr_crf(curve: torch.Tensor, target_curve: torch.Tensor) -> torch.Tensor:
    """``L_crf = ||g~ - g||_2^2`` on inverse CRFs sampled at 1024 code values, ``(N, 1024)``."""
    return ((curve - target_curve) ** 2).mean()


def singlehdr_hal(hdr: torch.Tensor, target: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """``L_hal = ||log(H_hat) - log(H)||_2^2`` (log with ``eps = 1/255``, mean squared)."""
    return ((log_image(hdr, eps) - log_image(target, eps)) ** 2).mean()


def singlehdr_perceptual(hdr: torch.Tensor, target: torch.Tensor, vgg, layers=SINGLEHDR_VGG_LAYERS,
                         mu: float = 5000.0) -> torch.Tensor:
    """``L_p`` (Johnson et al. 2016 style): mean squared difference of VGG19 activations
    ``relu1_2, relu2_2, relu3_4, relu4_4`` of the mu-law images, summed over layers. The survey does
    not give the layers or the domain; these are ours (mu-law keeps VGG's input in [0, 1])."""
    fa = vgg(mu_law(hdr, mu), tuple(layers))
    with torch.no_grad():
        fb = vgg(mu_law(target, mu), tuple(layers))
    return sum(((fa[k] - fb[k]) ** 2).mean() for k in layers)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """``L_tv``: mean absolute horizontal plus vertical first differences."""
    return (x[..., :, 1:] - x[..., :, :-1]).abs().mean() + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()


def srgb_inverse_crf(samples: int = 1024, device=None) -> torch.Tensor:
    """The inverse sRGB curve sampled at ``samples`` code values in [0, 1]: the ``g`` target of
    ``L_crf`` for the sRGB camera of :mod:`hdrlift.training.camera`."""
    return srgb_to_linear(torch.linspace(0.0, 1.0, samples, device=device))


def singlehdr_joint(stages: dict[str, torch.Tensor], curve: torch.Tensor | None, target: torch.Tensor,
                    target_code: torch.Tensor, target_curve: torch.Tensor | None, vgg=None,
                    weights: dict[str, float] = SINGLEHDR_WEIGHTS) -> torch.Tensor:
    """Eq. 24, ``l_deq L_deq + l_lin L_lin + l_crf L_crf + l_hal L_hal + l_p L_p + l_tv L_tv`` with
    ``w = {1, 10, 1, 1, 0.001, 0.1}``.

    ``stages`` is ``SingleHDR.stages(x)`` (``deq``, ``lin``, ``hdr``); ``curve`` the predicted inverse
    CRF ``(N, 1024)``; ``target`` the linear scene (``I_c = clip(target, 0, 1)``); ``target_code`` the
    un-quantised LDR ``I_n``; ``target_curve`` the camera's inverse CRF. The CRF term is left out
    when either curve is None, ``L_p`` when ``vgg`` is None. ``L_tv`` is taken on ``log(H_hat)``.
    """
    w = weights
    loss = w["deq"] * singlehdr_deq(stages["deq"], target_code)
    loss = loss + w["lin"] * singlehdr_lin(stages["lin"], target.clamp(0.0, 1.0))
    if curve is not None and target_curve is not None:
        loss = loss + w["crf"] * singlehdr_crf(curve, target_curve.expand_as(curve))
    loss = loss + w["hal"] * singlehdr_hal(stages["hdr"], target)
    if vgg is not None:
        loss = loss + w["p"] * singlehdr_perceptual(stages["hdr"], target, vgg)
    return loss + w["tv"] * total_variation(log_image(stages["hdr"]))


# ------------------------------------------------------------------------------------------
# Recipes: run a network the way its paper's loss needs
# ------------------------------------------------------------------------------------------

def _log_pred(net, ldr: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    fn = getattr(net, "forward_log", None)
    return fn(ldr) if fn is not None else log_image(net(ldr), eps)


def _vgg_for(t: torch.Tensor):
    from hdrlift.training.vgg import shared_vgg

    return shared_vgg(t.device)


def _recipe_moriwaki_rec(net, ldr, hdr):
    return moriwaki_rec(_log_pred(net, ldr), hdr, ldr)


def _recipe_moriwaki_rec_vgg(net, ldr, hdr):
    y = _log_pred(net, ldr)
    return moriwaki_rec(y, hdr, ldr) + MORIWAKI_BETA * moriwaki_vgg(y, hdr, _vgg_for(ldr))


def _santos_y(net, ldr):
    fn = getattr(net, "forward_log1p", None)
    return fn(ldr) if fn is not None else torch.log1p(net(ldr).clamp(min=0.0))


def _recipe_santos_rec(net, ldr, hdr):
    return SANTOS_LAMBDAS[0] * santos_rec(_santos_y(net, ldr), hdr, ldr)


def _recipe_santos(net, ldr, hdr):
    return santos_loss(_santos_y(net, ldr), hdr, ldr, _vgg_for(ldr))


def _recipe_tanh_l1(net, ldr, hdr):
    enc = getattr(net, "forward_encoded", None)
    if enc is not None and getattr(net, "srgb_output", True):
        return tanh_l1(enc(ldr), linear_to_srgb(hdr.clamp(min=0.0)))
    return tanh_l1(net(ldr), hdr)


def _recipe_kim(net, ldr, hdr):
    stack, pred = net.forward_stack(ldr)
    target = exposure_stack_target(hdr, net.exposure_values())
    return kim_global(stack, target) + kim_hdr(pred, hdr)


def _recipe_singlehdr(net, ldr, hdr, vgg=None):
    stages = net.stages(ldr)
    w = net.linearize.weights(stages["deq"])
    curve = net.linearize.curve(w)
    target_code = linear_to_srgb(hdr.clamp(0.0, 1.0))
    target_curve = srgb_inverse_crf(curve.shape[1], curve.device).unsqueeze(0)
    return singlehdr_joint(stages, curve, hdr, target_code, target_curve, vgg)


def _recipe_singlehdr_p(net, ldr, hdr):
    return _recipe_singlehdr(net, ldr, hdr, _vgg_for(ldr))


RECIPES: dict[str, Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "moriwaki_rec": _recipe_moriwaki_rec,  # Eq. 2-3 (no GAN, no VGG)
    "moriwaki_rec_vgg": _recipe_moriwaki_rec_vgg,  # Eq. 1 without the adversarial term
    "santos_rec": _recipe_santos_rec,  # Eq. 6 (times lambda_1)
    "santos": _recipe_santos,  # Eq. 5-12
    "tanh_l1": _recipe_tanh_l1,  # HDRUNet Eq. 3 on the encoded output
    "mu_law_l1": lambda net, ldr, hdr: mu_law_l1(net(ldr), hdr),  # AHDRNet Eq. 15
    "mu_law_l2": lambda net, ldr, hdr: mu_law_l2(net(ldr), hdr),  # Kalantari Eq. 2
    "kim": _recipe_kim,  # Eq. 4 (L1 + hist) + Eq. 7 (L_HDR) on the generated stack (sRGB camera)
    "singlehdr": _recipe_singlehdr,  # Eq. 24 without L_p (sRGB camera)
    "singlehdr_p": _recipe_singlehdr_p,  # Eq. 24 with L_p (needs VGG19 weights)
}


__all__ = ["eilertsen_log", "eilertsen_ir", "log_image", "mu_law",
           "moriwaki_weights", "moriwaki_rec", "moriwaki_gan", "moriwaki_d", "moriwaki_vgg", "moriwaki_hybrid",
           "santos_mask", "santos_rec", "santos_composite", "gram", "santos_vgg", "santos_style", "santos_loss",
           "tanh_l1", "mu_law_l1", "mu_law_l2",
           "soft_counts", "kim_hist", "kim_global", "canny_edges", "kim_edge", "kim_hdr", "kim_refine",
           "exposure_stack_target",
           "singlehdr_deq", "singlehdr_lin", "singlehdr_crf", "singlehdr_hal", "singlehdr_perceptual",
           "total_variation", "srgb_inverse_crf", "singlehdr_joint", "RECIPES"]
