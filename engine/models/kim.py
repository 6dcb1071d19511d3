"""Recursive exposure stack + differentiable HDR synthesis.

Kim, Lee, Jo, Kang, "End-to-End Differentiable Learning to HDR Image Synthesis for
Multi-exposure Images", AAAI 2021. The losses of §3.2 (Eq. 4-7: L1,
histogram, edge, mu-law HDR and contextual bilateral losses) belong to ``training/``.

Pipeline (§3, Fig. 1): a single LDR image ``x`` (EV 0) is turned into a multi-exposure stack by a
**stop-up** network applied recursively ``T`` times (EV +1, +2, ... +T, each step fed the previous
output) and a **stop-down** network likewise (EV -1 ... -T); the ``2T + 1`` images are merged into
HDR by the parameter-free **differentiable HDR synthesis layer** (§3.1).

Stop-up / stop-down network (§3.2, Fig. 3) — three U-Nets with Swish on every conv, 2 convs per
level, max-pool down, up-sampling by a transposed conv initialised to bilinear
(:class:`conv_blocks.UpsampleDeconv`), skip concatenation:

* **global** network, 5 levels: from the previous image to the next exposure's global tone
  (3 channels, sigmoid);
* **local** network, 4 levels: from the previous image to the next exposure's gradient edge map
  (1 channel, sigmoid; trained against Canny edges, Eq. 5);
* **refinement** network, same structure as the global one: from ``[previous image, global
  output, edge map]`` (7 channels) to the next exposure image (sigmoid, code values);
* **Conv-GRU** (Siam et al. 2017) at the bottleneck, carrying a hidden state ``h_t`` from one
  recursion to the next. The text says the refinement network "shares the same structure with the
  global network except for the Conv-GRUs on bottleneck layers" and that the global and local
  networks "adaptively respond [to] the number of recursions": we read it as Conv-GRUs in the
  global and local networks and none in the refinement network;
* **conditional instance normalisation** on the decoding convs of every level, one
  ``(gamma_e, beta_e)`` row per recursion (target EV ``e = 1..T``), :class:`conv_blocks.CondInstanceNorm2d`.

Differentiable HDR synthesis layer (§3.1, :class:`DifferentiableHDRSynthesis`):

* the inverse camera curve ``g`` (``levels`` = 256 entries per colour channel) is the minimiser of
  Eq. 1, ``sum_ij w_ij^2 [g(Z_ij) - ln E_i - ln t_j]^2 + lambda^2 sum_z w(z)^2 g''(z)^2`` with
  ``g(128) = 0`` — Debevec & Malik 1997's objective, of which Eq. 1 is the unweighted form (we keep
  their triangle weight ``w``, as the MATLAB HDR Toolbox the authors check against does), on the
  pixels of a fixed ``samples x samples`` grid. ``ln E_i`` is eliminated in closed form (Schur
  complement) and the 256 x 256 normal equations are solved by Gauss-Jordan elimination
  (:func:`camera_curve.gauss_jordan_solve`), so the layer exports to ONNX. The solve sees detached
  values: like the paper's, the curve is an estimate, not a learnt parameter;
* the merge is Debevec & Malik's Eq. 6, ``ln E_i = sum_j w(Z_ij) (g^(Z_ij) - ln t_j) / sum_j w(Z_ij)``
  (Eq. 2 of Kim et al. per image), with ``g^`` the **piecewise-linear** curve through the 256
  points: its derivative in the intensity ``Z`` is ``g(Z) - g(Z - 1)`` (Eq. 3), so gradients reach
  every pixel of every stack image. At ``Z = 0`` Eq. 3 prints ``g(0)`` as the derivative; that
  would be a (negative) log value, not a slope, so we use the first segment's slope ``g(1) - g(0)``.
  On 8-bit inputs the forward value is exactly the discrete classical merge;
* pixels with zero total weight (clipped, or black, in every image) take the largest
  (``max_j``, clipped) or smallest (``min_j``, black) of ``g(Z_ij) - ln t_j``: the classical bounds.

Our domains (docs/CONTRACTS.md): ``x`` is sRGB code values; the stack's EVs are ``-T..T`` stops
(``ln t_j = EV_j ln 2``); the merged radiance (known up to one factor per channel, ``g(128) = 0``)
is scaled per image and channel so that the input's well-exposed pixels match the inverse sRGB
curve of their code values: ``s_c = exp(sum w (ln f^-1(x) - ln E) / sum w)``, ``w`` the triangle
weight of the input. ``T = 3`` as in the paper's Table 2. What the engine returns (``forward``) then
goes through the shared per-channel output stage :func:`masks.keep_unclipped` with HDR-CNN's ramp
(``tau = 0.95`` per channel): a channel that was not clipped keeps ``f^-1(x_c)`` (the merge would
otherwise give a zero channel a positive floor), a clipped one takes ``max(H_c, f^-1(x_c))``; the
losses (:meth:`forward_stack`) still see the whole merged image. ``full_image=True`` returns the
merge itself.

Widths (ours, for CPUs; the paper gives none): U-Net channels ``base * (1, 2, 4, 8, 8)`` with
``base = 8`` (8, 16, 32, 64, 64): 2.8 M parameters, ~0.99 TFLOPs per 1080p frame (six recursions
of three U-Nets); ``base = 16`` gives 11.2 M and ~3.9 TFLOPs. Inputs must be multiples of 16 (four poolings); the
registry pads. Needs trained weights (``kim.safetensors``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hdrlift.engine.colour_maths import srgb_to_linear
from hdrlift.engine.models.camera_curve import gauss_jordan_solve, grid_indices, hat_weight
from hdrlift.engine.models.conv_blocks import (
    CondInstanceNorm2d,
    ConvGRUCell,
    ConvSwish,
    Swish,
    UpsampleDeconv,
    encoder_features,
)
from hdrlift.engine.models.masks import channel_alpha, keep_unclipped, relative_change_mask
from hdrlift.engine.models.registry import get_info

MULTIPLE_OF = 16  # four poolings in the 5-level U-Nets
RECURSIONS = 3  # stop-up and stop-down steps (Table 2)
LEVELS = 256
SAMPLES = 20  # curve-solve grid: 20 x 20 pixels
SMOOTHNESS = 20.0  # lambda of Eq. 1 (on the triangle-weight-normalised rows)
OUTPUT_TAU = 0.95  # per-channel ramp of the output stage (HDR-CNN Eq. 17, per channel)
_TINY = 1e-12


# --------------------------------------------------------------------------- synthesis layer
def smoothness_matrix(levels: int = LEVELS, smoothness: float = SMOOTHNESS) -> torch.Tensor:
    """``lambda^2 D^T diag(w^2) D``, ``D`` the second difference on levels ``1..L-2`` (float64)."""
    z = torch.arange(1, levels - 1, dtype=torch.float64)
    w = hat_weight(z, levels)
    d = torch.zeros(levels - 2, levels, dtype=torch.float64)
    idx = torch.arange(levels - 2)
    d[idx, idx] = 1.0
    d[idx, idx + 1] = -2.0
    d[idx, idx + 2] = 1.0
    d = d * (smoothness * w)[:, None]
    return d.T @ d


class DifferentiableHDRSynthesis(nn.Module):
    """Kim et al. 2021 §3.1 (see the module docstring). No learnt parameters.

    ``forward(stack, log_t)``: ``stack`` ``(N, J, C, H, W)`` code values in ``[0, 1]`` (any number
    ``J >= 2`` of exposures, any ``C``), ``log_t`` ``(J,)`` or ``(N, J)`` natural logs of the
    exposure times (``EV ln 2``). Returns the radiance map ``E`` ``(N, C, H, W)``, normalised by
    ``g(levels // 2) = 0``. ``solve_curve`` returns ``g`` ``(N, C, levels)``; ``merge`` applies Eq. 6
    with a given ``g``.
    """

    def __init__(self, levels: int = LEVELS, samples: int = SAMPLES, smoothness: float = SMOOTHNESS,
                 ridge: float = 1e-9):
        super().__init__()
        self.levels = int(levels)
        self.samples = int(samples)
        self.smoothness = float(smoothness)
        self.ridge = float(ridge)
        reg = smoothness_matrix(self.levels, self.smoothness)
        mid = self.levels // 2
        reg[mid, mid] += 1.0  # g(mid) = 0
        reg += self.ridge * torch.eye(self.levels, dtype=torch.float64)
        self.register_buffer("reg", reg, persistent=False)
        self.register_buffer("eye", torch.eye(self.levels, dtype=torch.float64), persistent=False)
        ones = torch.ones(self.levels - 1, dtype=torch.float64)
        self.register_buffer("shift", torch.diag(ones, 1), persistent=False)  # ones at (m, m + 1)

    @staticmethod
    def _log_t(log_t: torch.Tensor, n: int) -> torch.Tensor:
        log_t = torch.as_tensor(log_t)
        if log_t.dim() == 1:
            log_t = log_t.unsqueeze(0).expand(n, -1)
        return log_t

    def solve_curve(self, stack: torch.Tensor, log_t: torch.Tensor) -> torch.Tensor:
        """Minimise Eq. 1 per image and channel on the sample grid: ``g`` ``(N, C, levels)``, float64.

        The data term uses the same piecewise-linear ``g^`` as the merge: a sample at ``z`` (level
        scale, ``k - 1 < z <= k``) contributes ``(1 - f) g(k - 1) + f g(k)``, ``f = z - k + 1``. On
        8-bit stacks (integer ``z``) this is exactly Debevec & Malik's discrete system; on the
        network's continuous outputs it keeps the curve continuous in the inputs (no rounding
        jumps), which also makes onnxruntime and torch agree to float precision.
        """
        n, j, c, h, w = stack.shape
        lv = self.levels
        dev = stack.device
        f64 = torch.float64
        log_t = self._log_t(log_t, n).detach().to(f64)
        ys = grid_indices(h, self.samples, dev)
        xs = grid_indices(w, self.samples, dev)
        zs = stack.detach().index_select(3, ys).index_select(4, xs)  # (N, J, C, S, S)
        zs = zs.permute(0, 2, 3, 4, 1).reshape(n * c, -1, j).to(f64)  # (B, P, J)
        z = (zs * (lv - 1)).clamp(0.0, lv - 1.0)
        kf = torch.ceil(z).clamp(1, lv - 1)
        f = z - (kf - 1.0)  # weight of level k; 1 - f goes to level k - 1
        hi = kf.to(torch.int64)
        lo = hi - 1
        wgt = hat_weight(z, lv) ** 2  # W_ij = w(Z_ij)^2
        tot = wgt.sum(dim=2, keepdim=True)  # S_i
        a = wgt / tot.clamp(min=_TINY)
        lt = log_t.unsqueeze(1).expand(n, c, j).reshape(n * c, 1, j)
        cres = lt - (a * lt).sum(dim=2, keepdim=True)  # c_ij = ln t_j - sum_k a_ik ln t_k
        b_rows = n * c
        p = z.shape[1]

        def scatter(index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:  # (B, L)
            zero = torch.zeros(b_rows, lv, dtype=f64, device=dev)
            return zero.scatter_add(1, index.reshape(b_rows, -1), values.reshape(b_rows, -1))

        # sum_ij W M M^T with M = (1 - f) e_lo + f e_hi: tridiagonal
        diag = scatter(lo, wgt * (1 - f) ** 2) + scatter(hi, wgt * f * f)
        upper = scatter(lo, wgt * f * (1 - f))  # entry (lo, lo + 1)
        rhs = scatter(lo, wgt * cres * (1 - f)) + scatter(hi, wgt * cres * f)
        mbar = torch.zeros(b_rows, p, lv, dtype=f64, device=dev)
        mbar = mbar.scatter_add(2, lo, a * (1 - f)).scatter_add(2, hi, a * f)
        schur = torch.matmul((mbar * tot).transpose(1, 2), mbar)  # sum_i S_i mbar_i mbar_i^T
        off = upper.unsqueeze(-1) * self.shift
        mat = diag.unsqueeze(-1) * self.eye + off + off.transpose(1, 2) - schur + self.reg
        g = gauss_jordan_solve(mat, rhs)
        return g.reshape(n, c, lv)

    def curve_at(self, g: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Piecewise-linear ``g^(z)`` (Eq. 3 derivative): ``z`` ``(N, J, C, H, W)`` on the level scale,
        ``g`` ``(N, C, levels)``."""
        lv = self.levels
        n, j, c, h, w = z.shape
        k = torch.ceil(z.detach()).clamp(1, lv - 1)
        frac = z - (k - 1.0)  # in [0, 1] (gradient flows through z only)
        k = k.to(torch.int64)
        gg = g.to(z.dtype).unsqueeze(1).expand(n, j, c, lv)
        flat = k.reshape(n, j, c, h * w)
        hi = torch.gather(gg, 3, flat).reshape(n, j, c, h, w)
        lo = torch.gather(gg, 3, flat - 1).reshape(n, j, c, h, w)
        return lo + frac * (hi - lo)

    def merge(self, stack: torch.Tensor, log_t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Debevec & Malik Eq. 6 (Kim Eq. 2) with the piecewise-linear ``g^``: ``ln E`` ``(N, C, H, W)``."""
        n, j = stack.shape[:2]
        lv = self.levels
        log_t = self._log_t(log_t, n).to(stack.dtype).view(n, j, 1, 1, 1)
        z = (stack * (lv - 1)).clamp(0.0, lv - 1.0)
        val = self.curve_at(g, z) - log_t
        w = hat_weight(z, lv)
        num = (w * val).sum(dim=1)
        den = w.sum(dim=1)
        merged = num / den.clamp(min=1e-6)
        bright = z.mean(dim=1) > (lv - 1) / 2.0
        bound = torch.where(bright, val.amax(dim=1), val.amin(dim=1))
        return torch.where(den > 1e-6, merged, bound)

    def forward(self, stack: torch.Tensor, log_t: torch.Tensor) -> torch.Tensor:
        g = self.solve_curve(stack, log_t)
        return torch.exp(self.merge(stack, log_t, g).clamp(max=60.0))


def synthesize_hdr(stack: torch.Tensor, log_t: torch.Tensor, **kwargs) -> torch.Tensor:
    """Functional form of :class:`DifferentiableHDRSynthesis` (same arguments)."""
    return DifferentiableHDRSynthesis(**kwargs).to(stack.device)(stack, log_t)


# --------------------------------------------------------------------------- sub-networks
class KimUNet(nn.Module):
    """U-Net of Kim et al. §3.2: ``levels`` levels of two Swish convs, Conv-GRU at the bottleneck
    (optional), conditional instance norm on the decoder convs, ``cout`` sigmoid outputs."""

    def __init__(self, cin: int, cout: int, base: int, levels: int, conditions: int, gru: bool):
        super().__init__()
        chans = [base * 2 ** min(i, 3) for i in range(levels)]
        enc = []
        c = cin
        for ch in chans:
            enc.append(nn.Sequential(ConvSwish(c, ch), ConvSwish(ch, ch)))
            c = ch
        self.enc = nn.ModuleList(enc)
        self.gru = ConvGRUCell(chans[-1], chans[-1]) if gru else None
        ups, convs1, convs2, norms1, norms2 = [], [], [], [], []
        for i in range(levels - 2, -1, -1):
            ups.append(UpsampleDeconv(chans[i + 1], chans[i]))
            convs1.append(nn.Conv2d(2 * chans[i], chans[i], 3, padding=1))
            norms1.append(CondInstanceNorm2d(chans[i], conditions))
            convs2.append(nn.Conv2d(chans[i], chans[i], 3, padding=1))
            norms2.append(CondInstanceNorm2d(chans[i], conditions))
        self.ups = nn.ModuleList(ups)
        self.dec1 = nn.ModuleList(convs1)
        self.norm1 = nn.ModuleList(norms1)
        self.dec2 = nn.ModuleList(convs2)
        self.norm2 = nn.ModuleList(norms2)
        self.act = Swish()
        self.out = nn.Conv2d(chans[0], cout, 1)

    def forward(self, x: torch.Tensor, e: int, h: torch.Tensor | None = None):
        skips = encoder_features(self.enc, x, F.max_pool2d)
        f = skips[-1]
        if self.gru is not None:
            h = self.gru(f, h)
            f = h
        n = len(skips)
        for i, up in enumerate(self.ups):
            f = torch.cat([up(f), skips[n - 2 - i]], dim=1)
            f = self.act(self.norm1[i](self.dec1[i](f), e))
            f = self.act(self.norm2[i](self.dec2[i](f), e))
        return torch.sigmoid(self.out(f)), h


class StopNetwork(nn.Module):
    """Stop-up (or stop-down) network: global, local and refinement U-Nets (Fig. 3)."""

    def __init__(self, base: int = 8, recursions: int = RECURSIONS):
        super().__init__()
        self.global_net = KimUNet(3, 3, base, 5, recursions, gru=True)
        self.local_net = KimUNet(3, 1, base, 4, recursions, gru=True)
        self.refine_net = KimUNet(7, 3, base, 5, recursions, gru=False)

    def step(self, x: torch.Tensor, e: int, hg: torch.Tensor | None, hl: torch.Tensor | None):
        """One recursion: image at EV ``k`` -> image at EV ``k +- 1`` (condition row ``e``)."""
        tone, hg = self.global_net(x, e, hg)
        edges, hl = self.local_net(x, e, hl)
        out, _ = self.refine_net(torch.cat([x, tone, edges], dim=1), e)
        return out, tone, edges, hg, hl

    def forward(self, x: torch.Tensor, recursions: int) -> list[torch.Tensor]:
        outs = []
        hg = hl = None
        for t in range(recursions):
            x, _, _, hg, hl = self.step(x, t, hg, hl)
            outs.append(x)
        return outs


class KimHDR(nn.Module):
    """The whole model (module docstring): stop-up/stop-down recursion + synthesis layer."""

    def __init__(self, base: int = 8, recursions: int = RECURSIONS, samples: int = SAMPLES,
                 smoothness: float = SMOOTHNESS, full_image: bool = False):
        super().__init__()
        self.recursions = int(recursions)
        self.full_image = bool(full_image)
        self.stop_up = StopNetwork(base, recursions)
        self.stop_down = StopNetwork(base, recursions)
        self.synthesis = DifferentiableHDRSynthesis(LEVELS, samples, smoothness)
        evs = torch.arange(-self.recursions, self.recursions + 1, dtype=torch.float32)
        self.register_buffer("log_t", evs * math.log(2.0), persistent=False)

    def exposure_values(self) -> list[int]:
        return list(range(-self.recursions, self.recursions + 1))

    def generate_stack(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2T + 1, 3, H, W)`` code values at EV ``-T..T`` (the input in the middle)."""
        ups = self.stop_up(x, self.recursions)
        downs = self.stop_down(x, self.recursions)
        return torch.stack(downs[::-1] + [x] + ups, dim=1)

    def scale_to_input(self, x: torch.Tensor, radiance: torch.Tensor) -> torch.Tensor:
        """Per image and channel factor so the input's well-exposed pixels equal ``f^-1(x)``."""
        w = hat_weight(x.clamp(0.0, 1.0) * (LEVELS - 1), LEVELS)
        lin = srgb_to_linear(x).clamp(min=1e-6)
        diff = torch.log(lin) - torch.log(radiance.clamp(min=1e-30))
        s = (w * diff).sum(dim=(2, 3), keepdim=True) / w.sum(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        return radiance * torch.exp(s)

    def forward_stack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(stack, hdr)``: the generated stack and the scaled HDR (for the losses of Eq. 4-7).

        The stack networks run in the input's dtype; the synthesis layer and the scaling always run
        in float32 (the curve solve is float64 inside): in fp16/bf16 the level scale ``z * 255``,
        ``exp(ln E)`` and the ``1e-30`` floor of the log lose or overflow what the merge needs (an
        fp16 run on an H100 was 97 % off the fp32 one before this). The HDR comes back in the input's
        dtype."""
        stack = self.generate_stack(x)
        radiance = self.synthesis(stack.float(), self.log_t.float())
        return stack, self.scale_to_input(x.float(), radiance).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hdr = self.forward_stack(x)[1]
        if self.full_image:
            return hdr
        # the per-channel output stage (module docstring)
        return keep_unclipped(srgb_to_linear(x.clamp(0.0, 1.0)), hdr, channel_alpha(x, OUTPUT_TAU))

    def reconstruction_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Relative change over ``f^-1(x)``: ``clamp(|H - f^-1(x)| / max(H, f^-1(x)), 0, 1)``,
        channel mean (0 = kept as the inverse camera curve)."""
        return self.reconstruction_mask_from(x, self.forward(x))

    def reconstruction_mask_from(self, x: torch.Tensor, hdr: torch.Tensor) -> torch.Tensor:
        """:meth:`reconstruction_mask` from an output already computed (used by the back ends)."""
        return relative_change_mask(x, hdr)


def kim() -> KimHDR:
    return KimHDR()


KIM_INFO = get_info("kim")  # declared in catalog.py
PAPER = KIM_INFO.paper

__all__ = ["DifferentiableHDRSynthesis", "synthesize_hdr", "smoothness_matrix", "KimUNet", "StopNetwork",
           "KimHDR", "kim", "KIM_INFO", "PAPER", "MULTIPLE_OF", "RECURSIONS", "LEVELS", "SAMPLES", "SMOOTHNESS"]
