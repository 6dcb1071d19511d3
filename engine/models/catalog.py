"""Every shipped model, as data: one :class:`~hdrlift.engine.models.registry.ModelInfo` each.

Imported by the registry on the first lookup, and torch-free: listing models (``--list-models``,
the server's ``ListModels``, ``--version``) costs no network import. Each ``factory`` names the
builder in the model's own file (one file per paper, which keeps the network code and the
docstring that follows the paper), imported when a model is built. ``multiple_of`` repeats the
padding multiple that each file derives from its architecture (``MULTIPLE_OF``);
``tests/engine/test_models_single_image.py`` checks that the two agree and that every factory
resolves.

Tiling facts (``tiling``, ``tile_margin``; ``engine/tiling.py`` explains them and the measured
margins): ``inverse-crf`` is pointwise, the other classical operators use frame statistics
(``global``), the networks tile with a context margin.
"""

from __future__ import annotations

from hdrlift.engine.models.registry import FusionModelInfo, ModelInfo, register

_M = "hdrlift.engine.models."
QIU_SURVEY = "Qiu's survey HDR Image Reconstruction Based on Deep Learning"

# --------------------------------------------------------------------------- single-image networks
HDRCNN_PAPER = ("Eilertsen et al. 2017, HDR image reconstruction from a single exposure using deep CNNs "
                f"({QIU_SURVEY}, §6.1, Eq. 16-18, Fig. 3)")

register(ModelInfo(
    "hdrcnn", "HDR-CNN (Eilertsen 2017): VGG16 autoencoder predicting saturated highlights in log HDR",
    HDRCNN_PAPER, "network", _M + "hdrcnn:hdrcnn", multiple_of=32, weights="hdrcnn.safetensors", tile_margin=64))
register(ModelInfo(
    "hdrcnn-lite", "HDR-CNN at quarter width (16-128 channels), fast on CPU",
    HDRCNN_PAPER + "; width x0.25", "network", _M + "hdrcnn:hdrcnn_lite", multiple_of=32,
    weights="hdrcnn-lite.safetensors", tile_margin=64,
    cuda_bytes_per_pixel=(438, 319)))  # H100, 4K: 3465 / 2522 MiB peak
register(ModelInfo(
    "hdrunet", "HDRUNet (Chen 2021): UNet with SFT condition and weighting networks, denoises too",
    "Chen et al. 2021, HDRUNet: Single image HDR reconstruction with denoising and dequantization "
    "(§3.1 Eq. 1-2, Fig. 3, §4.1)",
    "network", _M + "hdrunet:hdrunet", multiple_of=4, weights="hdrunet.safetensors", tile_margin=64,
    channels_last_cuda=False,  # H100: 52.5 ms NCHW vs 65.5 ms channels_last at 1080p fp32
    cuda_bytes_per_pixel=(2077, 905)))  # H100, 4K: 16431 / 7155 MiB peak
register(ModelInfo(
    "santos", "Masked-feature U-Net (Santos 2020): soft saturation mask in every conv, fills clipped areas",
    "Santos, Ren & Kalantari 2020, Single image HDR reconstruction using a CNN with masked features and "
    "perceptual loss (§3 Eq. 1 + Fig. 2, §3.1 Eq. 2-4, §4 + Fig. 6)",
    "network", _M + "santos:santos", multiple_of=128, weights="santos.safetensors"))
register(ModelInfo(
    "expandnet", "ExpandNet (Marnerides 2018): local, dilated and global branches, no down-sampling",
    "Marnerides et al. 2018, ExpandNet: a deep convolutional neural network for HDR expansion from LDR "
    "content (CGF 37(2), §3, Fig. 2; compared by Moriwaki et al. 2018 and Santos et al. 2020); output "
    "mapped to the contract with Santos et al. 2020 Eq. 1",
    "network", _M + "expandnet:expandnet", multiple_of=1, weights="expandnet.safetensors",
    channels_last_cuda=False,  # H100: 17.4 ms NCHW vs 35.1 ms channels_last at 1080p fp32
    cuda_bytes_per_pixel=(2317, 1542)))  # H100, 4K: 18324 / 12200 MiB peak
register(ModelInfo(
    "moriwaki", "Hybrid-loss generator (Moriwaki 2018): HDR-CNN on linearised input, GAN + VGG trained",
    "Moriwaki et al. 2018, Hybrid loss for learning single-image-based HDR reconstruction (§3.1 Fig. 2, "
    f"§3.2 Eq. 1-6, §4); generator = HDR-CNN (Eilertsen et al. 2017, Eq. 18 in {QIU_SURVEY} §6.1)",
    "network", _M + "moriwaki:moriwaki", multiple_of=32, weights="moriwaki.safetensors"))
register(ModelInfo(
    "singlehdr", "SingleHDR (Liu 2020): dequantize, learnt monotone inverse CRF, hallucinate, refine",
    "Liu et al. 2020, Single-image HDR reconstruction by learning to reverse the camera pipeline "
    f"({QIU_SURVEY}, §7.1, Eq. 23-24)",
    "network", _M + "singlehdr:singlehdr", multiple_of=32, weights="singlehdr.safetensors"))
register(ModelInfo(
    "kim", "Kim 2021: recursive stop-up/stop-down exposure stack merged by a differentiable HDR synthesis layer",
    "Kim, Lee, Jo, Kang 2021, End-to-End Differentiable Learning to HDR Image Synthesis for Multi-exposure "
    "Images (§3.1 Eq. 1-3, §3.2 Fig. 1 & 3)",
    "network", _M + "kim:kim", multiple_of=16, weights="kim.safetensors",
    # measured: fp16 stack networks move the HDR by up to 27 % of its peak (GPU-trained weights, a
    # synthetic frame, CPU); TF32 convolutions by 5 %, strict fp32 on an H100 4e-5 (bench/check_cuda.py)
    fp32_only="its curve solve amplifies the half-precision rounding of the generated stack",
    cuda_bytes_per_pixel=(794, 794)))  # H100, 4K fp32: 6277 MiB peak (it always runs in fp32)

# --------------------------------------------------------------------------- classical operators
# (name, class in classical.py, summary, paper); see classical.py's docstring for the formulas
CLASSICAL = (
    ("inverse-crf", "InverseCRF", "inverse sRGB curve only (no highlight expansion)",
     "IEC 61966-2-1 (sRGB) inverse transfer function; no expansion"),
    ("landis", "Landis", "power-law expansion of luminance above 0.5 up to 16x display white",
     "Landis 2002, Production-ready global illumination; formulation of Banterle et al. 2011 "
     "(Advanced HDR Imaging, ch. 7)"),
    ("akyuz", "Akyuz", "linear stretch of the frame's luminance range to 16x display white",
     "Akyüz et al. 2007, Do HDR displays support LDR content? (linear expansion, gamma 1)"),
    ("huo", "Huo", "retina-response (Naka–Rushton) inverse tone mapping with local adaptation",
     "Huo et al. 2014, Physiological inverse tone mapping based on retina response "
     "(Naka–Rushton inversion, n = 0.86)"),
    ("kovaleski-oliveira", "KovaleskiOliveira", "bilateral-filtered highlight mask boosting clipped areas up to 4x",
     "Kovaleski & Oliveira 2014, High-quality reverse tone mapping for a wide range of exposures "
     "(bilateral brightness enhancement)"),
)
for _name, _cls, _summary, _paper in CLASSICAL:
    # inverse-crf is a pointwise curve; the others use frame statistics and must not be tiled
    register(ModelInfo(_name, _summary, _paper, "classical", f"{_M}classical:{_cls}", multiple_of=1,
                       tiling="pointwise" if _name == "inverse-crf" else "global"))

# --------------------------------------------------------------------------- exposure-bracket networks (hdr-merge)
register(FusionModelInfo(
    "kalantari", "Kalantari 2017 weight estimator: CNN blending weights for a 3-exposure bracket",
    f"Kalantari & Ramamoorthi 2017, Deep HDR imaging of dynamic scenes, weight estimator ({QIU_SURVEY}, "
    "§3.1 Eq. 1-7)",
    "fusion", _M + "kalantari:kalantari", multiple_of=1, weights="kalantari.safetensors"))
register(FusionModelInfo(
    "wu", "Wu 2018: per-exposure encoders, merger and decoder (U-Net) for a 3-exposure bracket",
    f"Wu et al. 2018, Deep HDR imaging with large foreground motions ({QIU_SURVEY}, §4.1 Eq. 9-11)",
    "fusion", _M + "wu:wu", multiple_of=16, weights="wu.safetensors"))
register(FusionModelInfo(
    "ahdrnet", "AHDRNet (Yan 2019): attention modules + dilated residual dense blocks, 3 exposures",
    f"Yan et al. 2019, AHDRNet: attention-guided ghost-free HDR imaging ({QIU_SURVEY}, §5 Eq. 12-15)",
    "fusion", _M + "ahdrnet:ahdrnet", multiple_of=1, weights="ahdrnet.safetensors"))
