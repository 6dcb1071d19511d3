"""What the Blender extension does, without ``bpy``: colour-space names, pixel layout, the call.

Blender keeps an image as a flat RGBA float buffer, rows bottom to top. Byte images hold their
code values (0..1, in the image's colour space); float images hold values in theirs (usually
scene-linear). The server takes top-to-bottom H x W x 3 frames in a named colour space and
returns scene-linear RGB; alpha is carried over unchanged.
"""

from __future__ import annotations

import numpy as np

#: Blender colour-space name -> the name the server's OCIO config resolves (its aliases).
INPUT_SPACES = {
    "sRGB": "srgb",
    "Rec.1886": "bt1886",
    "Linear Rec.709": "lin_rec709",
    "Linear Rec.2020": "lin_rec2020",
    "ACEScg": "acescg",
    "ACES2065-1": "aces",
    "Display P3": "sRGB Encoded P3-D65",
    "Linear DCI-P3 D65": "Linear P3-D65",
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
                          f"set the image's colour space to one of {', '.join(INPUT_SPACES)}") from None


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
    from hdrlift.engine.errors import InputError
    from hdrlift.plugin import Client, read_token_file
    from hdrlift.plugin.client import RemoteError

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
