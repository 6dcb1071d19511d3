"""What the Blender extension does, without ``bpy``: colour-space names, pixel layout, the call.

Blender keeps an image as a flat RGBA float buffer, rows bottom to top. Byte images hold their
code values (0..1, in the image's colour space); float images hold values in theirs (usually
scene-linear). The server takes top-to-bottom H x W x 3 frames in a named colour space and
returns scene-linear RGB; alpha is carried over unchanged.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

#: Blender colour-space name -> the name the server's OCIO config resolves (its aliases).
INPUT_SPACES = {
    "sRGB": "srgb",
    "Rec.1886": "bt1886",
    "Rec.2020": "rec2020",
    "Linear Rec.709": "lin_rec709",
    "Linear Rec.2020": "lin_rec2020",
    "ACEScg": "acescg",
    "ACES2065-1": "aces",
    "Display P3": "sRGB Encoded P3-D65",
    "Linear DCI-P3 D65": "Linear P3-D65",
    # the same spaces as the OCIO studio config (Blender run with an ACES config) and the ACES 1.x
    # config name them
    "sRGB Encoded Rec.709 (sRGB)": "srgb",
    "Gamma 2.4 Encoded Rec.709": "bt1886",
    "Gamma 2.2 Encoded Rec.709": "gamma22",
    "Gamma 2.4 Encoded Rec.2020": "rec2020",
    "sRGB Encoded P3-D65": "sRGB Encoded P3-D65",
    "Linear Rec.709 (sRGB)": "lin_rec709",
    "Linear P3-D65": "Linear P3-D65",
    "Utility - sRGB - Texture": "srgb",
    "Utility - Linear - sRGB": "lin_rec709",
    "Utility - Rec.709 - Display": "bt1886",
    "ACES - ACEScg": "acescg",
    "ACES - ACES2065-1": "aces",
}

#: Output choices: Blender colour-space name of the new image -> the server's name.
OUTPUT_SPACES = {
    "Linear Rec.709": "lin_rec709",
    "ACEScg": "acescg",
    "Linear Rec.2020": "lin_rec2020",
}


class BridgeError(Exception):
    """A one-line message for the user (shown in Blender's status bar and the operator report)."""


def server_input_space(blender_space: str) -> str:
    try:
        return INPUT_SPACES[blender_space]
    except KeyError:
        raise BridgeError(f"colour space {blender_space!r} is not an SDR or linear picture space hdrlift takes; "
                          f"set the image's colour space to one of {', '.join(list(INPUT_SPACES)[:9])} "
                          "(or their names in an ACES config)") from None


def server_output_space(blender_space: str) -> str:
    try:
        return OUTPUT_SPACES[blender_space]
    except KeyError:
        raise BridgeError(f"output colour space {blender_space!r} is not one of {', '.join(OUTPUT_SPACES)}") from None


def rgba_to_frame(flat: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Blender's flat RGBA buffer -> (H x W x 3 float32 top row first, H x W alpha)."""
    a = np.asarray(flat, dtype=np.float32)
    if a.size != width * height * 4:
        raise BridgeError(f"the image has {a.size} values, not {width} x {height} x 4")
    img = a.reshape(height, width, 4)[::-1]
    rgb = np.ascontiguousarray(img[..., :3])
    if not np.isfinite(rgb).all():
        raise BridgeError("the image holds NaN or infinite values")
    return rgb, np.ascontiguousarray(img[..., 3])


def frame_to_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H x W x 3, H x W) top row first -> Blender's flat RGBA float32 buffer."""
    h, w = alpha.shape
    out = np.empty((h, w, 4), np.float32)
    out[..., :3] = rgb
    out[..., 3] = alpha
    return np.ascontiguousarray(out[::-1]).reshape(-1)


def reconstruct(flat: np.ndarray, width: int, height: int, input_space: str, output_space: str, *,
                server: str, model: str = "", token_file: str = "", ca_file: str = "",
                timeout: float = 600.0) -> np.ndarray:
    """Send one image to ``server`` (host:port[,host:port...]) and return the HDR result as
    Blender's flat RGBA buffer. Every failure is a one-line ``BridgeError``."""
    from hdrlift.plugin import Client, read_token_file
    from hdrlift.plugin.client import RemoteError
    from hdrlift.plugin.errors import InputError

    if not server.strip():
        raise BridgeError("no hdrlift server address set (Preferences > Add-ons > hdrlift, or the operator's Server)")
    rgb, alpha = rgba_to_frame(flat, width, height)
    ins, outs = server_input_space(input_space), server_output_space(output_space)
    try:
        token = read_token_file(token_file) if token_file else None
    except InputError as exc:
        raise BridgeError(str(exc)) from None
    try:
        with Client(server, token=token, ca_file=ca_file or None, retries=2,
                    timeout=timeout) as client:
            res = client.reconstruct(rgb, model=model or None, input_space=ins, output_space=outs)
    except RemoteError as exc:
        raise BridgeError(" ".join(str(exc).split())) from None
    except Exception as exc:  # noqa: BLE001 - grpc/TLS set-up errors reach the user as one line
        raise BridgeError(f"hdrlift server {server}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    return frame_to_rgba(res.hdr, alpha)


# --------------------------------------------------------------------------- shots (whole clips)
#: Blender colour spaces that hold a view transform's picture (a tone curve and look baked into
#: the code values): hdrlift cannot tell scene light from them.
VIEW_ENCODED = ("Filmic", "AgX", "Khronos PBR Neutral")

#: The scene-linear spaces a shot may be written in: OCIO names Blender or ACES configs use for
#: them (lower case, compared after dropping spaces, dots, dashes and underscores) -> server name.
_LINEAR_NAMES = {
    "linearrec709": "lin_rec709", "linrec709": "lin_rec709", "linearsrgb": "lin_rec709",
    "linrec709scene": "lin_rec709", "utilitylinearsrgb": "lin_rec709", "utilitylinearrec709": "lin_rec709",
    "linearrec709srgb": "lin_rec709", "linsrgb": "lin_rec709",
    "acescg": "acescg", "acesacescg": "acescg", "linap1": "acescg", "linap1scene": "acescg",
    "linearrec2020": "lin_rec2020", "linrec2020": "lin_rec2020", "utilitylinearrec2020": "lin_rec2020",
    "linrec2020scene": "lin_rec2020",
}


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def linear_server_space(blender_space: str) -> str | None:
    """The server's name for a scene-linear Blender/OCIO colour space, or None."""
    return _LINEAR_NAMES.get(_squash(blender_space))


def scene_linear_role(config_text: str) -> str | None:
    """The ``scene_linear`` role of an OCIO config (its text): Blender's working space."""
    in_roles = False
    for line in config_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            in_roles = line.split(":")[0].strip() == "roles"
            continue
        if in_roles:
            key, _, value = line.strip().partition(":")
            if key.strip() == "scene_linear":
                return value.strip().strip("\"'") or None
    return None


def shot_input_space(blender_space: str, *, is_float: bool, scene_linear: str) -> str:
    """The server's input space for the pixels Blender hands out for a frame.

    Byte frames (8-bit files, most movies) hold the file's code values in ``blender_space``;
    float frames (EXR, 16-bit PNG/TIFF) were already converted to the scene-linear space
    (``scene_linear``, a server name) when Blender loaded them."""
    if blender_space.startswith(VIEW_ENCODED):
        raise BridgeError(f"colour space {blender_space!r} is a Filmic/AgX view encoding (a look baked into "
                          "the code values), not camera or display SDR: hdrlift cannot recover scene light "
                          "from it; set the source's colour space to what the footage is (sRGB, Rec.1886, "
                          "Rec.2020, or a linear space)")
    space = server_input_space(blender_space)  # Non-Color and unknown spaces are refused here
    return scene_linear if is_float else space


#: Output EXR chromaticities (red, green, blue, white xy), as OpenEXR's standard attribute.
CHROMATICITIES = {
    "lin_rec709": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    "lin_rec2020": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
    "acescg": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
}

CACHE_FORMAT = 1  # bump when what a cached frame holds changes
HASH_ATTR = "hdrlift:inputSha256"
SETTINGS_ATTR = "hdrlift:settings"


def settings_key(**settings) -> str:
    """16 hex digits naming a cache folder: every setting that changes the result."""
    text = json.dumps({"cache_format": CACHE_FORMAT, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def frame_hash(rgba: np.ndarray, input_space: str) -> str:
    """The content hash of one decoded frame (its RGBA values as sent, and how to read them)."""
    a = np.ascontiguousarray(rgba, dtype=np.float32)
    h = hashlib.sha256(f"{a.shape}|{input_space}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def safe_stem(name: str) -> str:
    """A file-name stem from a datablock name (letters, digits, '-', '_')."""
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name if ch.isprintable())
    return stem.strip("_.")[:64] or "shot"


def read_exr_strings(path: str, limit: int = 1 << 16) -> dict[str, str] | None:
    """The string attributes of an EXR file's header (a few KB read), or None when the file is
    missing or not a whole EXR header. Used to tell whether a cached frame still matches."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit)
    except OSError:
        return None
    if data[:4] != b"\x76\x2f\x31\x01" or len(data) < 8:
        return None
    pos, out = 8, {}
    while pos < len(data):
        if data[pos] == 0:
            return out
        end_name = data.find(b"\0", pos)
        end_type = data.find(b"\0", end_name + 1) if end_name >= 0 else -1
        if end_type < 0 or end_type + 5 > len(data):
            return None
        size = int.from_bytes(data[end_type + 1:end_type + 5], "little", signed=True)
        start = end_type + 5
        if size < 0 or start + size > len(data):
            return None
        if data[end_name + 1:end_type] == b"string":
            out[data[pos:end_name].decode("utf-8", "replace")] = data[start:start + size].decode("utf-8", "replace")
        pos = start + size
    return None


def exr_is_whole(path: str) -> bool:
    """Whether an EXR file holds every block its offset table points to (written to the end)."""
    from hdrlift.plugin import openexr

    try:
        with open(path, "rb") as fh:
            openexr.decode(fh.read())
        return True
    except (OSError, openexr.ExrFormatError):
        return False


def write_exr(path: str, rgb: np.ndarray, alpha: np.ndarray | None, mask: np.ndarray | None,
              attributes: dict) -> None:
    """One frame as a half-float EXR (ZIP): R, G, B premultiplied by ``alpha`` as OpenEXR
    stores colour, A, and ``mask.Y``. Written under a temporary name in the same folder, then
    renamed over ``path`` (:func:`hdrlift.plugin.openexr.write_file`): a reader or a crash never
    sees half a file."""
    from hdrlift.plugin import openexr

    planes = {}
    a = None if alpha is None else np.asarray(alpha, np.float32)
    for i, ch in enumerate("RGB"):
        planes[ch] = rgb[..., i] if a is None else rgb[..., i] * a
    if a is not None:
        planes["A"] = a
    if mask is not None:
        planes["mask.Y"] = mask
    openexr.write_file(path, planes, half=True, compression=openexr.ZIP, attributes=attributes)


def remove_stale_temporaries(folder: str) -> int:
    """Temporaries a killed Blender left in a cache folder (never a finished frame)."""
    from hdrlift.plugin import openexr

    return openexr.remove_stale_temporaries(folder)


def one_line(exc: BaseException, server: str = "") -> str:
    """Any failure on the way to or from a server, as one line for the status bar."""
    text = " ".join(str(exc).split())
    if isinstance(exc, BridgeError) or text.startswith("server "):
        return text
    return f"hdrlift server {server}: {text or type(exc).__name__}" if server else (text or type(exc).__name__)


def connect(server: str, *, token_file: str = "", ca_file: str = "", timeout: float | None = None):
    """A ``Client`` for ``server`` (host:port[,host:port...]); one-line ``BridgeError`` otherwise."""
    from hdrlift.plugin import Client, read_token_file
    from hdrlift.plugin.errors import HdrliftError

    if not server.strip():
        raise BridgeError("no hdrlift server address set (Preferences > Add-ons > hdrlift, or the operator's Server)")
    try:
        token = read_token_file(token_file) if token_file else None
        return Client(server, token=token, ca_file=ca_file or None, retries=2, timeout=timeout)
    except HdrliftError as exc:
        raise BridgeError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - grpc/TLS set-up errors reach the user as one line
        raise BridgeError(one_line(exc, server)) from None
