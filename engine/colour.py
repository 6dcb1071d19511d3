"""Colour management for hdrlift: every colour conversion goes through OpenColorIO.

A :class:`ColourManager` wraps one OCIO config (``$OCIO``, a file, or an ``ocio://`` built-in;
by default OCIO's own ACES studio config) and hands out fast converters between its colour
spaces. hdrlift's models work in two fixed domains (see docs/CONTRACTS.md):

* :data:`NETWORK_INPUT_SPACE`  -- display code values: sRGB curve, Rec.709 primaries, in [0, 1];
* :data:`NETWORK_OUTPUT_SPACE` -- scene-linear Rec.709, display white = 1.0.

so a frame goes ``input space -> to_network() -> model -> from_network() -> output space``.

Converters
    :meth:`ColourManager.converter` builds an OCIO CPU processor (float32 in, float32 out) once
    per pair of colour spaces, caches it, and returns a callable that applies it to a float32
    ``H x W x 3`` array (any ``... x 3`` shape works) through a packed image description. It
    returns a new C-contiguous float32 array and never touches its argument. By default the
    processor is built with OCIO's "very good" optimisation minus the fast SSE approximations of
    pow/log/exp, so curves are exact to float precision (display white 1.0 stays 1.0); pass
    ``fast=True`` to the manager for OCIO's default optimisation, about twice as fast on
    transfer curves with ~3e-5 relative error (far below half-float precision).

    NaN and infinity are not sanitised: OCIO passes them through (a NaN in one channel of a
    pixel spreads to the three channels of that pixel through any matrix, and an infinity can
    turn into NaN where a matrix mixes signs). Readers reject NaN input pixels before this point.

Thread safety
    A ColourManager can be shared by threads: its converter cache is guarded by a lock, OCIO CPU
    processors are immutable and safe to apply from many threads at once, and their ``apply``
    releases the GIL, so frames can be converted in parallel. A manager pickles as its config
    source (processors are rebuilt in the receiving process).

Display-referred spaces
    OCIO relates a display-referred colour space (e.g. "sRGB - Display") to scene-referred ones
    through the config's default view transform, which is "Un-tone-mapped" (colorimetric) in the
    studio config but may be a tone curve in a facility config. hdrlift's own aliases therefore
    name scene-referred encodings ("Gamma 2.4 Encoded Rec.709", not "Rec.1886 Rec.709 - Display").
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import threading
from typing import Any

import numpy as np
import PyOpenColorIO as ocio

from hdrlift.engine.defaults import DEFAULT_CONFIG, DEFAULT_OUTPUT_SPACE, NETWORK_INPUT_SPACE, NETWORK_OUTPUT_SPACE
from hdrlift.engine.errors import ColourError

__all__ = [
    "DEFAULT_CONFIG",
    "NETWORK_INPUT_SPACE",
    "NETWORK_OUTPUT_SPACE",
    "DEFAULT_OUTPUT_SPACE",
    "ColourManager",
    "Converter",
    "colorspace_from_tags",
    "choose_input_space",
    "to_network",
    "from_network",
]

# The colour spaces hdrlift refers to on its own (aliases, video tags, network domains), each as
# the names it carries in the OCIO studio config first, then in other configs (ACES 1.x config
# names, Color Interop Forum ids). The first one the active config knows is used, so hdrlift
# never points at a colour space the config lacks.
_SPACES: dict[str, tuple[str, ...]] = {
    "aces2065-1": ("ACES2065-1", "ACES - ACES2065-1", "lin_ap0_scene", "lin_ap0", "aces2065_1"),
    "acescg": ("ACEScg", "ACES - ACEScg", "lin_ap1_scene", "lin_ap1"),
    "lin_rec709": ("Linear Rec.709 (sRGB)", "Utility - Linear - sRGB", "Utility - Linear - Rec.709",
                   "lin_rec709_scene", "lin_rec709", "lin_srgb"),
    "lin_rec2020": ("Linear Rec.2020", "Utility - Linear - Rec.2020", "lin_rec2020_scene",
                    "lin_rec2020"),
    "lin_p3d65": ("Linear P3-D65", "Utility - Linear - P3-D65", "lin_p3d65_scene", "lin_p3d65"),
    "srgb_rec709": ("sRGB Encoded Rec.709 (sRGB)", "Utility - sRGB - Texture", "srgb_rec709_scene",
                    "srgb_tx", "srgb_texture", "sRGB - Texture"),
    "g24_rec709": ("Gamma 2.4 Encoded Rec.709", "Utility - Rec.709 - Display", "g24_rec709_scene",
                   "g24_rec709_tx", "g24_rec709"),
    "g22_rec709": ("Gamma 2.2 Encoded Rec.709", "Utility - Gamma 2.2 - Rec.709 - Texture",
                   "g22_rec709_scene", "g22_rec709_tx", "g22_rec709"),
    "camera_rec709": ("Camera Rec.709", "Utility - Rec.709 - Camera", "ocio:itu709_rec709_scene",
                      "rec709_camera", "camera_rec709"),
    "g24_rec2020": ("Gamma 2.4 Encoded Rec.2020", "g24_rec2020_scene", "g24_rec2020_tx",
                    "g24_rec2020"),
    "srgb_p3d65": ("sRGB Encoded P3-D65", "srgb_p3d65_scene", "srgb_encoded_p3d65", "srgb_p3d65"),
    "g22_adobergb": ("Gamma 2.2 Encoded AdobeRGB", "g22_adobergb_scene", "g22_encoded_adobergb", "adobergb"),
    "g18_rec709": ("Gamma 1.8 Encoded Rec.709", "g18_rec709_scene", "g18_rec709_tx", "g18_rec709"),
    "srgb_ap1": ("sRGB Encoded AP1", "srgb_ap1_scene", "srgb_encoded_ap1", "srgb_ap1"),
    "xyz_d65_scene": ("CIE XYZ-D65 - Scene-referred", "lin_ciexyzd65_scene", "cie_xyz_d65_scene"),
}

# hdrlift's short names (matched case-insensitively; '_' and spaces count as '-').
_SHORT_ALIASES: dict[str, str] = {
    "acescg": "acescg",
    "aces2065-1": "aces2065-1",
    "aces": "aces2065-1",
    "lin-rec709": "lin_rec709",
    "linear-rec709": "lin_rec709",
    "scene-linear-rec.709": "lin_rec709",
    "lin-rec2020": "lin_rec2020",
    "srgb": "srgb_rec709",
    "rec709": "g24_rec709",
    "bt1886": "g24_rec709",
    "rec2020": "g24_rec2020",
    "bt2020": "g24_rec2020",
    "gamma22": "g22_rec709",
    "camera-rec709": "camera_rec709",
}

# SMPTE ST 2065-1: CIE 1931 xy of the AP0 primaries (red, green, blue) and of the ACES white.
# The one colorimetric anchor stated here; everything else is measured through OCIO.
_AP0_XY = ((0.7347, 0.2653), (0.0, 1.0), (0.0001, -0.0770), (0.32168, 0.33767))

_EXACT = ocio.OptimizationFlags(
    int(ocio.OPTIMIZATION_VERY_GOOD) & ~int(ocio.OPTIMIZATION_FAST_LOG_EXP_POW))
_VIDEO_ENCODINGS = {"sdr-video", "hdr-video", "edr-video", "display-linear"}
_ACES_WHITE_TOKEN = re.compile(r"aces|(?<![a-z])ap[01](?![0-9])")


# the networks' working primaries beyond Rec.709, narrowest first (ColourManager.working_space)
_WIDER_PRIMARIES = ("lin_p3d65", "lin_rec2020", "acescg")


class _SrgbEncoded:
    """A conversion to a linear space followed by the sRGB encoding curve (IEC 61966-2-1): the
    networks' input domain in other working primaries than Rec.709. Behaves as a Converter."""

    __slots__ = ("src", "dst", "_to_linear")

    def __init__(self, to_linear: "Converter"):
        self.src = to_linear.src
        self.dst = f"sRGB-encoded {to_linear.dst}"
        self._to_linear = to_linear

    is_identity = False

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from hdrlift.engine.colour_maths import linear_to_srgb

        return np.ascontiguousarray(linear_to_srgb(self._to_linear(rgb)), dtype=np.float32)

    def __repr__(self) -> str:
        return f"Converter({self.src!r} -> {self.dst!r})"


def _norm_alias(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


class Converter:
    """Applies one colour conversion to float RGB arrays of shape ``(..., 3)``.

    Calling it returns a new C-contiguous float32 array and leaves the argument untouched.
    ``src``/``dst`` name the colour spaces; ``is_identity`` is true when no maths is done;
    ``processor`` is the OCIO processor behind it (None for an identity), which
    :mod:`hdrlift.engine.device_colour` translates into torch operations.
    """

    __slots__ = ("src", "dst", "_cpu", "processor")

    def __init__(self, src: str, dst: str, cpu: ocio.CPUProcessor | None,
                 processor: ocio.Processor | None = None) -> None:
        self.src = src
        self.dst = dst
        self._cpu = cpu
        self.processor = processor if cpu is not None else None

    @property
    def is_identity(self) -> bool:
        return self._cpu is None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        arr = np.asarray(rgb)
        if arr.ndim == 0 or arr.shape[-1] != 3:
            raise ValueError(f"colour conversion expects RGB arrays of shape (..., 3), got {arr.shape}")
        if arr.dtype.kind != "f":
            raise TypeError(f"colour conversion expects floating-point RGB, got {arr.dtype}")
        out = np.array(arr, dtype=np.float32, order="C")  # always a fresh copy
        if self._cpu is not None and out.size:
            width = out.shape[-2] if out.ndim >= 2 else 1
            height = out.size // (3 * width)
            self._cpu.apply(ocio.PackedImageDesc(out, width, height, 3))
        return out

    def __repr__(self) -> str:
        return f"Converter({self.src!r} -> {self.dst!r}{', identity' if self._cpu is None else ''})"


@functools.lru_cache(maxsize=1)
def _builtin_config() -> ocio.Config:
    """OCIO's built-in studio config: the home of the network domains' reference definitions."""
    return ocio.Config.CreateFromFile(DEFAULT_CONFIG)


def _builtin_config_names() -> list[str]:
    try:
        return [f"ocio://{entry[0]}" for entry in ocio.BuiltinConfigRegistry().getBuiltinConfigs()]
    except Exception:  # pragma: no cover - registry API differences between OCIO releases
        return []


def _load_config(source: str, origin: str) -> ocio.Config:
    if source.startswith("ocio://"):
        try:
            return ocio.Config.CreateFromFile(source)
        except ocio.Exception:
            known = ", ".join(["ocio://default", "ocio://studio-config-latest",
                               "ocio://cg-config-latest"] + _builtin_config_names())
            raise ColourError(f"unknown built-in OCIO config '{source}'{origin}; "
                              f"OCIO {ocio.__version__} knows: {known}") from None
    path = os.path.expanduser(source)
    if not os.path.exists(path):
        raise ColourError(f"OCIO config not found: {source}{origin}")
    if os.path.isdir(path):
        raise ColourError(f"OCIO config {source}{origin} is a folder; give the .ocio file in it")
    try:
        return ocio.Config.CreateFromFile(path)
    except ocio.Exception as exc:
        raise ColourError(f"cannot load OCIO config {source}{origin}: {exc}") from None


def _npm_from_xy(xy: Any) -> np.ndarray:
    """RGB -> XYZ matrix (Y of white = 1) of primaries and white given as CIE xy (metadata maths)."""
    xy = np.asarray(xy, dtype=np.float64)
    xyz = np.stack([xy[:, 0] / xy[:, 1], np.ones(4), (1.0 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])
    scale = np.linalg.solve(xyz[:, :3], xyz[:, 3])
    return xyz[:, :3] * scale


class ColourManager:
    """One OCIO config and the conversions hdrlift needs from it.

    ``config``: an OCIO config file (``.ocio``/``.ocioz``) or any ``ocio://`` built-in URI; None
    means ``$OCIO`` when set, else :data:`DEFAULT_CONFIG`. ``fast``: build processors with OCIO's
    default optimisation (fast pow/log/exp approximations) instead of exact curves.
    """

    def __init__(self, config: str | os.PathLike[str] | None = None, *, fast: bool = False) -> None:
        origin = ""
        if config is None:
            env = os.environ.get("OCIO", "").strip()
            if env:
                config, origin = env, " (from $OCIO)"
            else:
                config = DEFAULT_CONFIG
        self._source = os.fspath(config)
        self._fast = bool(fast)
        self._config = _load_config(self._source, origin)
        name = self._config.getName()
        self._name = name or os.path.basename(self._source) or self._source
        self._flags = ocio.OPTIMIZATION_DEFAULT if self._fast else _EXACT
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], Converter] = {}
        self._chroma: dict[tuple[str, str | None], tuple[float, ...]] = {}
        self._network: dict[str, str | None] = {}
        self._build_index()

    # -- identity -----------------------------------------------------------------------------
    @property
    def config(self) -> ocio.Config:
        """The PyOpenColorIO config (treat as read-only)."""
        return self._config

    @property
    def config_name(self) -> str:
        """The config's own name, or its file name when it has none."""
        return self._name

    @property
    def flags(self) -> ocio.OptimizationFlags:
        """The OCIO optimisation its processors are built with (exact curves unless ``fast``)."""
        return self._flags

    @property
    def source(self) -> str:
        """The path or ``ocio://`` URI the config was loaded from."""
        return self._source

    def __repr__(self) -> str:
        return f"ColourManager({self._source!r}, name={self._name!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self._source, "fast": self._fast}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], fast=state["fast"])  # type: ignore[misc]

    # -- names ----------------------------------------------------------------------------------
    def _build_index(self) -> None:
        spaces = list(self._config.getColorSpaces(ocio.SEARCH_REFERENCE_SPACE_ALL, ocio.COLORSPACE_ALL))
        self._all_names = [cs.getName() for cs in spaces]
        self._name_set = set(self._all_names)
        index: dict[str, str] = {}
        for cs in spaces:
            index.setdefault(cs.getName().lower(), cs.getName())
        for cs in spaces:
            for alias in cs.getAliases():
                index.setdefault(alias.lower(), cs.getName())
        for cs in spaces:
            interop = cs.getInteropID() if hasattr(cs, "getInteropID") else ""
            if interop:
                index.setdefault(interop.lower(), cs.getName())
        self._index = index
        self._roles = {role.lower(): space for role, space in self._config.getRoles()}

    def colorspaces(self) -> list[str]:
        """Names of the config's active colour spaces (scene- and display-referred), config order."""
        return [cs.getName() for cs in self._config.getColorSpaces()]

    def _lookup(self, name: str) -> str | None:
        """A name or alias the config itself defines (exact, then case-insensitive)."""
        if name in self._name_set:
            return name
        return self._index.get(name.lower())

    def _role(self, name: str) -> str | None:
        space = self._roles.get(name.lower())
        return self._lookup(space) if space else None

    def _find(self, space_id: str) -> str | None:
        """The active config's name for one of hdrlift's known colour spaces, or None."""
        for candidate in _SPACES[space_id]:
            found = self._lookup(candidate)
            if found is not None:
                return found
        return None

    def resolve(self, name: str) -> str:
        """The config's name for ``name``: a colour space name or alias (exact or any case), a
        role (e.g. ``scene_linear``), or one of hdrlift's short names (``acescg``, ``aces``,
        ``lin_rec709``, ``lin_rec2020``, ``srgb``, ``rec709``/``bt1886``, ``rec2020``,
        ``gamma22``, ``camera-rec709``) when the config defines that space."""
        if not isinstance(name, str) or not name.strip():
            raise ColourError(f"empty colour space name (config {self._name}; see --list-colorspaces)")
        key = name.strip()
        found = self._lookup(key) or self._role(key)
        if found is None and _norm_alias(key) in _SHORT_ALIASES:
            found = self._find(_SHORT_ALIASES[_norm_alias(key)])
        if found is None:
            raise ColourError(self._unknown_message(key))
        return found

    def _unknown_message(self, key: str) -> str:
        pool: dict[str, str] = dict(self._index)
        for role in self._roles:
            target = self._role(role)
            if target:
                pool.setdefault(role, target)
        for short, space_id in _SHORT_ALIASES.items():
            target = self._find(space_id)
            if target:
                pool.setdefault(short, target)
        low, norm = key.lower(), _norm_alias(key)
        hits = [k for k in pool if low in k or norm in _norm_alias(k)]
        hits.sort(key=len)
        hits += difflib.get_close_matches(low, list(pool), n=6, cutoff=0.6)
        suggestions: list[str] = []
        for hit in hits:
            if pool[hit] not in suggestions:
                suggestions.append(pool[hit])
        text = f"unknown colour space '{key}' in config {self._name}"
        if suggestions:
            text += "; did you mean: " + ", ".join(suggestions[:3]) + "?"
        return text + " (see --list-colorspaces)"

    # -- conversions ----------------------------------------------------------------------------
    def converter(self, src: str, dst: str) -> Converter:
        """A cached callable converting float32 RGB from colour space ``src`` to ``dst``."""
        source, target = self.resolve(src), self.resolve(dst)
        key = (source, target)
        with self._lock:
            conv = self._cache.get(key)
            if conv is None:
                conv = self._build(source, target)
                self._cache[key] = conv
        return conv

    def _build(self, source: str, target: str) -> Converter:
        if source == target:
            return Converter(source, target, None)
        try:
            proc = self._config.getProcessor(source, target)
        except ocio.Exception as exc:
            raise ColourError(f"OCIO cannot convert '{source}' to '{target}' in config "
                              f"{self._name}: {exc}") from None
        return self._wrap(source, target, proc)

    def _wrap(self, source: str, target: str, proc: ocio.Processor) -> Converter:
        if proc.isNoOp():
            return Converter(source, target, None)
        cpu = proc.getOptimizedCPUProcessor(ocio.BIT_DEPTH_F32, ocio.BIT_DEPTH_F32, self._flags)
        return Converter(source, target, cpu, proc)

    def _network_space(self, builtin_name: str, space_id: str) -> str | None:
        """The active config's colour space equal to the built-in studio config's
        ``builtin_name``: by name or alias, else as identified by OCIO's heuristics."""
        if builtin_name not in self._network:
            found = self._lookup(builtin_name) or self._find(space_id)
            if found is None and hasattr(ocio.Config, "IdentifyBuiltinColorSpace"):
                try:
                    found = ocio.Config.IdentifyBuiltinColorSpace(
                        self._config, _builtin_config(), builtin_name) or None
                except ocio.Exception:
                    found = None
            self._network[builtin_name] = found
        return self._network[builtin_name]

    def network_converter(self, space: str, *, to_network: bool) -> Converter:
        """``space`` -> network input domain (``to_network=True``) or network output domain ->
        ``space``. When the active config lacks the network space, OCIO converts between it and
        the built-in studio config through their interchange spaces (the ``aces_interchange``
        role, or a shared space OCIO identifies)."""
        net, space_id = ((NETWORK_INPUT_SPACE, "srgb_rec709") if to_network
                         else (NETWORK_OUTPUT_SPACE, "lin_rec709"))
        with self._lock:
            local = self._network_space(net, space_id)
        if local is not None:
            return self.converter(space, local) if to_network else self.converter(local, space)
        name = self.resolve(space)
        key = ("network", name, "in" if to_network else "out")
        with self._lock:
            conv = self._cache.get(key)
            if conv is None:
                conv = self._cross_config(name, net, to_network)
                self._cache[key] = conv
        return conv

    # -- the network's working primaries -------------------------------------------------------
    def working_space(self, space: str) -> str | None:
        """The primaries the networks work in for input ``space``. None: Rec.709, the networks'
        own domain (:data:`NETWORK_INPUT_SPACE` / :data:`NETWORK_OUTPUT_SPACE`, the one they were
        trained in), whenever the input's primaries lie within it. Otherwise the config's name
        of the first of linear P3-D65, Rec.2020 and AP1 whose gamut holds them: a P3 still or a
        BT.2020 clip keeps its gamut instead of being clipped to Rec.709. The networks then see
        sRGB-encoded code values in those primaries; what they do is per pixel and channel, so
        the primaries matter little to them, and a colour outside Rec.709 comes out as OCIO's
        own conversion wherever nothing was clipped."""
        name = self.resolve(space)
        key = ("working", name)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        probe = np.eye(3, dtype=np.float32)  # the input's primaries at full code value

        def holds(rgb: np.ndarray) -> bool:
            return bool(np.isfinite(rgb).all() and rgb.min() >= -1e-4 * max(1.0, float(np.abs(rgb).max())))

        chosen = None
        if not holds(self.network_converter(name, to_network=True)(probe.copy())):
            for space_id in _WIDER_PRIMARIES:
                candidate = self._find(space_id)
                if candidate is not None:
                    chosen = candidate
                    if holds(self.converter(name, candidate)(probe.copy())):
                        break
        with self._lock:
            self._cache[key] = chosen
        return chosen

    def to_network(self, space: str) -> "Converter | _SrgbEncoded":
        """``space`` -> sRGB-encoded code values in the working primaries of ``space`` (not yet
        clipped): OCIO to :data:`NETWORK_INPUT_SPACE` for Rec.709 inputs, as always."""
        working = self.working_space(space)
        if working is None:
            return self.network_converter(space, to_network=True)
        return _SrgbEncoded(self.converter(space, working))

    def from_network(self, working: str | None, space: str) -> Converter:
        """The networks' output (scene-linear in ``working``; None: Rec.709) -> ``space``."""
        if working is None:
            return self.network_converter(space, to_network=False)
        return self.converter(working, space)

    def _cross_config(self, name: str, net: str, to_network: bool) -> Converter:
        user, builtin = self._config, _builtin_config()
        label = f"{net} (built-in studio config)"
        try:
            if to_network:
                proc = ocio.Config.GetProcessorFromConfigs(user, name, builtin, net)
            else:
                proc = ocio.Config.GetProcessorFromConfigs(builtin, net, user, name)
        except ocio.Exception:
            try:
                mine, theirs = ocio.Config.IdentifyInterchangeSpace(user, name, builtin, net)
                if to_network:
                    proc = ocio.Config.GetProcessorFromConfigs(user, name, mine, builtin, net, theirs)
                else:
                    proc = ocio.Config.GetProcessorFromConfigs(builtin, net, theirs, user, name, mine)
            except ocio.Exception:
                raise ColourError(
                    f"OCIO config {self._name} has no colour space for hdrlift's network "
                    f"{'input' if to_network else 'output'} domain '{net}' and OCIO cannot relate "
                    f"it to the built-in studio config (no aces_interchange role and no "
                    f"recognisable sRGB or linear Rec.709 space); add '{net}' to the config "
                    f"(see ocio/README.md)") from None
        return self._wrap(name, label, proc) if to_network else self._wrap(label, name, proc)

    # -- chromaticities -------------------------------------------------------------------------
    def chromaticities(self, name: str, white: str | None = None) -> tuple[float, ...]:
        """CIE 1931 xy of the red, green and blue primaries and of the white of a scene-linear
        colour space, as 8 floats ``(rx, ry, gx, gy, bx, by, wx, wy)`` (the EXR attribute).

        Measured through OCIO: the unit primaries and RGB white of the space are converted to
        CIE XYZ and projected to xy. OCIO adapts every white to the reference white on the way
        (Bradford in the ACES configs), so the XYZ frame must match the space's own white:

        * ACES spaces (ACES white; recognised by an ACES family or by "ACES"/"AP0"/"AP1" in the
          name, aliases or interop id): through the ``aces_interchange`` space (ACES2065-1),
          whose AP0 primaries are the one stated reference (SMPTE ST 2065-1);
        * every other space (D65 white, as are all other linear spaces of the studio config but
          Canon's CinemaGamut D55): through the config's scene-referred CIE XYZ-D65 space.

        This gives the EXR convention: AP1 primaries with the ACES white for ACEScg, Rec.709
        primaries with D65 for Linear Rec.709. ``white`` ("D65" or "ACES") forces a frame; the
        result is then the space's primaries adapted to that white by the config's own CAT.
        """
        cs_name = self.resolve(name)
        want = white.upper() if isinstance(white, str) else white
        if want not in (None, "D65", "ACES"):
            raise ColourError(f"unknown white '{white}' for chromaticities (use D65 or ACES)")
        key = (cs_name, want)
        if key in self._chroma:
            return self._chroma[key]
        cs = self._config.getColorSpace(cs_name)
        encoding = cs.getEncoding() if hasattr(cs, "getEncoding") else ""
        if (cs.isData() or cs.getReferenceSpaceType() == ocio.REFERENCE_SPACE_DISPLAY
                or (encoding and encoding != "scene-linear")):
            raise ColourError(
                f"colour space '{cs_name}' is not scene-linear (encoding "
                f"{encoding or 'unspecified'}); chromaticities are defined for scene-linear RGB "
                f"spaces such as ACEScg or Linear Rec.709 (sRGB)")
        if want is None:
            want = "ACES" if self._is_aces_white(cs) else "D65"
        probe = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0],
                          [0.5, 0.25, 0.0], [4, 4, 4]], dtype=np.float32)
        if want == "ACES":
            xyz = self._to_aces_interchange(cs_name)(probe).astype(np.float64) @ _npm_from_xy(_AP0_XY).T
        else:
            xyz = self._to_xyz_d65(cs_name)(probe).astype(np.float64)
        scale = np.abs(xyz[3]).max()
        tol = 1e-4 * scale
        linear = (np.abs(xyz[4]).max() <= tol
                  and np.allclose(xyz[0] + xyz[1] + xyz[2], xyz[3], rtol=0, atol=tol)
                  and np.allclose(0.5 * xyz[0] + 0.25 * xyz[1], xyz[5], rtol=0, atol=tol)
                  and np.allclose(4 * xyz[3], xyz[6], rtol=0, atol=4 * tol))
        if not linear or scale == 0:
            raise ColourError(f"colour space '{cs_name}' is not linear; chromaticities are defined "
                              f"for scene-linear RGB spaces such as ACEScg or Linear Rec.709 (sRGB)")
        xy = xyz[:4, :2] / xyz[:4].sum(axis=1, keepdims=True)
        result = tuple(float(v) for v in xy.ravel())
        self._chroma[key] = result
        return result

    def _is_aces_white(self, cs: ocio.ColorSpace) -> bool:
        if self._role("aces_interchange") == cs.getName():
            return True
        words = [cs.getName(), cs.getFamily(), *cs.getAliases()]
        if hasattr(cs, "getInteropID"):
            words.append(cs.getInteropID())
        return any(_ACES_WHITE_TOKEN.search(w.lower()) for w in words if w)

    def _to_aces_interchange(self, cs_name: str) -> Converter:
        aces = self._role("aces_interchange") or self._find("aces2065-1")
        if aces is None:
            raise ColourError(f"OCIO config {self._name} has no aces_interchange role or ACES2065-1 "
                              f"space, needed to measure the chromaticities of '{cs_name}'")
        return self.converter(cs_name, aces)

    def _to_xyz_d65(self, cs_name: str) -> Converter:
        xyz = self._role("cie_xyz_d65_interchange")
        if xyz is not None and (self._config.getColorSpace(xyz).getReferenceSpaceType()
                                != ocio.REFERENCE_SPACE_SCENE):
            xyz = None  # the role names a display-referred space: reached through a view transform
        xyz = xyz or self._find("xyz_d65_scene")
        if xyz is not None:
            return self.converter(cs_name, xyz)
        aces = self._role("aces_interchange") or self._find("aces2065-1")
        if aces is None:
            raise ColourError(f"OCIO config {self._name} has neither a scene-referred CIE XYZ-D65 "
                              f"space nor an aces_interchange role, needed to measure the "
                              f"chromaticities of '{cs_name}'")
        key = ("xyz_d65", cs_name)
        with self._lock:
            conv = self._cache.get(key)
            if conv is None:
                group = ocio.GroupTransform()
                group.appendTransform(ocio.ColorSpaceTransform(src=cs_name, dst=aces))
                group.appendTransform(ocio.BuiltinTransform(style="UTILITY - ACES-AP0_to_CIE-XYZ-D65_BFD"))
                conv = self._wrap(cs_name, "CIE XYZ-D65", self._config.getProcessor(group))
                self._cache[key] = conv
        return conv

    # -- listing --------------------------------------------------------------------------------
    def list_text(self) -> str:
        """The ``--list-colorspaces`` listing: one colour space per line with its family,
        encoding, aliases, roles and hdrlift short names, grouped scene-linear / display-encoded
        / log / other."""
        shorts: dict[str, list[str]] = {}
        for short, space_id in _SHORT_ALIASES.items():
            target = self._find(space_id)
            if target:
                shorts.setdefault(target, []).append(short)
        roles: dict[str, list[str]] = {}
        for role in sorted(self._roles):
            target = self._role(role)
            if target:
                roles.setdefault(target, []).append(role)
        groups: dict[str, list[ocio.ColorSpace]] = {
            "scene-linear": [], "display-encoded": [], "log": [], "other": []}
        for cs in self._config.getColorSpaces():
            encoding = cs.getEncoding()
            if encoding == "scene-linear":
                groups["scene-linear"].append(cs)
            elif encoding in _VIDEO_ENCODINGS or (
                    cs.getReferenceSpaceType() == ocio.REFERENCE_SPACE_DISPLAY and not cs.isData()):
                groups["display-encoded"].append(cs)
            elif encoding == "log":
                groups["log"].append(cs)
            else:
                groups["other"].append(cs)
        width = max((len(n) for n in self.colorspaces()), default=0)
        fam_width = max((len(cs.getFamily()) for cs in self._config.getColorSpaces()), default=0)
        lines = [f"OCIO config {self._name} ({self._source})"]
        for title, members in groups.items():
            if not members:
                continue
            lines.append(f"{title}:")
            for cs in members:
                name = cs.getName()
                extra = []
                aliases = list(cs.getAliases())
                if aliases:
                    extra.append("aliases: " + ", ".join(aliases))
                if name in roles:
                    extra.append("roles: " + ", ".join(roles[name]))
                if name in shorts:
                    extra.append("hdrlift: " + ", ".join(shorts[name]))
                lines.append(f"  {name:<{width}}  {cs.getFamily() or '-':<{fam_width}}  "
                             f"{cs.getEncoding() or '-':<12}  {'; '.join(extra)}".rstrip())
        return "\n".join(lines)


# -- video colour tags ----------------------------------------------------------------------------
_UNTAGGED = {"", "unknown", "unspecified", "reserved", "reserved0", "none"}
_PRIMARIES = {
    # SMPTE-C (smpte170m/240m) and EBU (bt470bg) primaries differ from Rec.709 by less than the
    # tolerance of the displays SD video is watched on; players show them as Rec.709.
    "bt709": "rec709", "smpte170m": "rec709", "bt470bg": "rec709", "smpte240m": "rec709",
    "bt2020": "rec2020",
    "smpte432": "p3d65", "smpte432-1": "p3d65",
}
_TRANSFERS = {
    "iec61966-2-1": "srgb", "srgb": "srgb",
    # SDR video transfers: the BT.709-family OETF tags and PAL's nominal gamma 2.8 all mean
    # "watched on a BT.1886 display" (see colorspace_from_tags).
    "bt709": "bt1886", "smpte170m": "bt1886", "bt2020-10": "bt1886", "bt2020-12": "bt1886",
    "bt2020-10bit": "bt1886", "bt2020-12bit": "bt1886", "bt470bg": "bt1886", "gamma28": "bt1886",
    "smpte240m": "bt1886", "bt1361e": "bt1886", "bt1361": "bt1886", "iec61966-2-4": "bt1886",
    "gamma22": "g22", "bt470m": "g22",
    "linear": "linear",
}
_HDR_TRANSFERS = {"smpte2084": "PQ", "pq": "PQ", "smpte-st-2084": "PQ",
                  "arib-std-b67": "HLG", "hlg": "HLG"}
_ENCODINGS = {
    ("rec709", "srgb"): ("srgb_rec709", "sRGB-encoded Rec.709"),
    ("rec709", "bt1886"): ("g24_rec709", "BT.1886 (gamma 2.4) Rec.709"),
    ("rec709", "g22"): ("g22_rec709", "gamma 2.2 Rec.709"),
    ("rec709", "linear"): ("lin_rec709", "linear Rec.709"),
    ("rec2020", "bt1886"): ("g24_rec2020", "BT.1886 (gamma 2.4) Rec.2020"),
    ("rec2020", "linear"): ("lin_rec2020", "linear Rec.2020"),
    ("p3d65", "srgb"): ("srgb_p3d65", "sRGB-encoded P3-D65 (Display P3)"),
    ("p3d65", "linear"): ("lin_p3d65", "linear P3-D65"),
}


def _tag(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) and hasattr(value, "name"):
        value = value.name
    text = str(value).strip().lower().replace("_", "-")
    return None if text in _UNTAGGED else text


def colorspace_from_tags(tags: Any, cm: ColourManager, default: str | None = None) -> str:
    """The colour space (a name in ``cm``'s config) of a stream from its colour tags.

    ``tags.primaries`` and ``tags.transfer`` are FFmpeg names (``bt709``, ``iec61966-2-1``...)
    or None. SDR video transfers (``bt709``, ``smpte170m``, ``bt2020-10``/``-12``, ``bt470bg``,
    ``smpte240m``) map to the BT.1886 display encoding (pure gamma 2.4, "Gamma 2.4 Encoded"),
    not to the inverse of the camera OETF they name: SDR video is mastered and approved on
    BT.1886 displays, so the picture to reconstruct is the light the display shows, and that is
    also the domain the networks were trained on (display-referred code values). Inverting the
    camera OETF would lift the shadows and drop the ~1.2 system gamma the grade relies on; for
    ungraded camera originals pass ``--input-colorspace camera-rec709``. ``iec61966-2-1`` is
    sRGB; ``gamma22``/``bt470m`` is gamma 2.2; ``linear`` a scene-linear space.

    An untagged transfer returns ``default`` (resolved in ``cm``) when given, else BT.1886 on
    the tagged primaries (Rec.709 when untagged too). PQ and HLG inputs are refused: they are
    already HDR.
    """
    transfer = _tag(getattr(tags, "transfer", None))
    primaries = _tag(getattr(tags, "primaries", None))
    if transfer in _HDR_TRANSFERS:
        kind = _HDR_TRANSFERS[transfer]
        raise ColourError(f"input is already HDR ({kind}); hdrlift reconstructs HDR from SDR; "
                          f"convert it directly with OCIO or pass --input-colorspace to force")
    if transfer is None:
        if default is not None:
            return cm.resolve(default)
        curve = "bt1886"
    else:
        curve = _TRANSFERS.get(transfer)
        if curve is None:
            raise ColourError(f"unsupported transfer characteristic '{transfer}' (primaries "
                              f"{primaries or 'untagged'}); pass --input-colorspace to say how "
                              f"the input is encoded")
    gamut = "rec709" if primaries is None else _PRIMARIES.get(primaries)
    if gamut is None:
        raise ColourError(f"unsupported colour primaries '{primaries}' (transfer "
                          f"{transfer or 'untagged'}); pass --input-colorspace to say how the "
                          f"input is encoded")
    space_id, description = _ENCODINGS.get((gamut, curve), (None, f"{curve} {gamut}"))
    found = cm._find(space_id) if space_id else None
    if found is None:
        raise ColourError(f"input tagged primaries={primaries or 'untagged'} "
                          f"transfer={transfer or 'untagged'} is {description}, which OCIO config "
                          f"{cm.config_name} does not define; pass --input-colorspace, or use a "
                          f"config that defines it (e.g. ocio/hdrlift.ocio)")
    return found


def choose_input_space(cm: ColourManager, *, given: str | None = None, tags: Any = None, profile: Any = None) -> str:
    """The colour space of an input's code values, in this order: the user's
    (``--input-colorspace``); the user's tag overrides (``tags`` of a still); the image's
    embedded ICC profile (:class:`hdrlift.engine.io.icc.Profile`), honoured when it names a
    space hdrlift knows and refused aloud otherwise; a stream's colour tags; sRGB."""
    if given:
        return cm.resolve(given)
    if profile is not None and tags is None:
        where = f"{profile.source} carries" if profile.source else "the input carries"
        if profile.space_id is None:
            raise ColourError(f"{where} an {profile.summary()} that hdrlift does not map to a colour space; pass "
                              "--input-colorspace NAME to say how its pixels are encoded")
        found = cm._find(profile.space_id)
        if found is None:
            raise ColourError(f"{where} an {profile.summary()}, but OCIO config {cm.config_name} has no such "
                              "colour space; pass --input-colorspace NAME")
        return found
    if tags is None:
        return cm.resolve("srgb")
    return colorspace_from_tags(tags, cm)


def to_network(cm: ColourManager, input_space: str) -> Converter:
    """Converter from ``input_space`` to the networks' input domain (:data:`NETWORK_INPUT_SPACE`)."""
    return cm.network_converter(input_space, to_network=True)


def from_network(cm: ColourManager, output_space: str) -> Converter:
    """Converter from the networks' output domain (:data:`NETWORK_OUTPUT_SPACE`) to ``output_space``."""
    return cm.network_converter(output_space, to_network=False)
