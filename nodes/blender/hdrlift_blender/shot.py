"""The Blender side of a shot: where its frames come from, how Blender decodes them, where the
result is cached, and the compositor nodes that read it back.

Sources: an Image datablock whose source is an image sequence or a movie, a Movie Clip, or the
image or clip of a compositor Image / Movie Clip node. Frames are decoded by Blender itself
(``Image.pixels``; a movie clip is read through an Image datablock on the same file), one frame
at a time through an image user: a temporary image texture whose ``image_user.frame_current``
picks the frame and whose ``evaluate()`` makes Blender load it.

Scene frame -> source frame follows Blender's own rules: a compositor Image node's Start Frame,
Offset, Frames and Cyclic; a Movie Clip's Start Frame and Frame Offset; a bare Image datablock
starts at the scene's first frame. Scene frames the source does not cover are left out.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile

import bpy
import numpy as np

from . import bridge
from .runner import ServerJobRun, ShotRun

SCENE_LINEAR = "SCENE_LINEAR"
ROUTES = ("AUTO", "STREAM", "SERVER")
_DIGITS = re.compile(r"^(.*?)(\d+)(\D*)$")


# --------------------------------------------------------------------------- colour
def scene_linear_space() -> tuple[str, str]:
    """Blender's scene-linear space: (its colour-space name, the server's name). Read from the
    OCIO config Blender runs with ($OCIO, else the bundled config), role ``scene_linear``."""
    path = os.environ.get("OCIO") or os.path.join(bpy.utils.resource_path("LOCAL"), "datafiles",
                                                  "colormanagement", "config.ocio")
    name = None
    try:
        with open(path, encoding="utf-8") as fh:
            name = bridge.scene_linear_role(fh.read())
    except (OSError, UnicodeDecodeError):
        pass
    if name is None:  # an ocio:// URI or an unreadable file: the space Blender gives new float images
        probe = bpy.data.images.new(".hdrlift-probe", 1, 1, float_buffer=True)
        name = probe.colorspace_settings.name
        bpy.data.images.remove(probe)
    server = bridge.linear_server_space(name)
    if server is None:
        raise bridge.BridgeError(f"the OCIO config's scene-linear space {name!r} is not one hdrlift writes "
                                 f"({', '.join(bridge.OUTPUT_SPACES)})")
    return name, server


def output_space(choice: str) -> tuple[str, str]:
    """(Blender colour-space name of the result, server name) for the operator's Output choice."""
    if choice in ("", SCENE_LINEAR):
        return scene_linear_space()
    return choice, bridge.server_output_space(choice)


# --------------------------------------------------------------------------- sources
class Source:
    """Where a shot's frames come from and how scene frames map onto them."""

    def __init__(self, *, label: str, path: str, kind: str, colorspace: str, image, owned: bool,
                 node=None, clip=None):
        self.label = label  # for messages
        self.path = path  # absolute file path (a sequence: any one frame's file)
        self.kind = kind  # "SEQUENCE" or "MOVIE"
        self.colorspace = colorspace
        self.image = image  # the Image datablock frames are decoded through
        self.owned = owned  # made here (for a Movie Clip): removed when done
        self.node = node  # the compositor node it came from, if any
        self.clip = clip
        m = _DIGITS.match(os.path.basename(path)) if kind == "SEQUENCE" else None
        if kind == "SEQUENCE" and m is None:
            raise bridge.BridgeError(f"{label}: {os.path.basename(path)} has no frame number in its name")
        self._seq = m.groups() if m else None
        base = m.group(1) if m else os.path.splitext(os.path.basename(path))[0]
        self.stem = bridge.safe_stem(base.rstrip("._-") or label)

    # frame numbers in a sequence's file names
    def file_for(self, number: int) -> str:
        head, digits, tail = self._seq
        return os.path.join(os.path.dirname(self.path), f"{head}{number:0{len(digits)}d}{tail}")

    def numbers_on_disk(self) -> list[int]:
        head, digits, tail = self._seq
        pat = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "$")
        try:
            names = os.listdir(os.path.dirname(self.path))
        except OSError:
            return []
        return sorted(int(m.group(1)) for m in map(pat.match, names) if m)

    def path_number(self) -> int:
        return int(self._seq[1])

    def pattern(self) -> str:
        """The source as ``hdr-video`` and server jobs name it (a sequence: ``name.%04d.png``)."""
        if self.kind == "MOVIE":
            return self.path
        head, digits, tail = self._seq
        return os.path.join(os.path.dirname(self.path), f"{head}%0{len(digits)}d{tail}")

    def content_hash(self, first: int, last: int) -> str:
        """SHA-256 of the bytes the frames first..last come from (the movie file, or those files)."""
        h = hashlib.sha256()
        paths = [self.path] if self.kind == "MOVIE" else [self.file_for(n) for n in range(first, last + 1)]
        for p in paths:
            h.update(os.path.basename(p).encode() + b"\0")
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()

    def length(self) -> int:
        """Frames in the source (a sequence: from its first to its last file on disk)."""
        if self.kind == "MOVIE":
            return int(self.image.frame_duration)
        nums = self.numbers_on_disk()
        return nums[-1] - nums[0] + 1 if nums else 0

    def source_frame(self, scene, f: int) -> int | None:
        """The source frame (movie: 1-based frame; sequence: file number) shown at scene frame
        ``f``, or None where the source shows nothing of its own."""
        node = self.node
        if node is not None and node.bl_idname == "CompositorNodeImage":
            n, length = f - node.frame_start + 1, node.frame_duration
            if node.use_cyclic and length > 0:
                n = (n - 1) % length + 1
            return n + node.frame_offset if 1 <= n <= length else None
        if self.clip is not None:
            n = f - self.clip.frame_start + 1
            if not 1 <= n <= self.clip.frame_duration:
                return None
            if self.kind == "MOVIE":
                return n + self.clip.frame_offset
            return self.path_number() + n - 1 + self.clip.frame_offset
        n = f - scene.frame_start + 1
        if self.kind == "MOVIE":
            return n if 1 <= n <= self.length() else None
        nums = self.numbers_on_disk()
        k = self.path_number() + n - 1
        return k if nums and nums[0] <= k <= nums[-1] else None


def _image_source(img, label: str, node=None) -> Source:
    if img.source not in ("SEQUENCE", "MOVIE"):
        raise bridge.BridgeError(f"{label} is a {img.source.lower()} image, not an image sequence or a movie "
                                 "(stills: Image Editor > hdrlift > Reconstruct HDR)")
    if img.packed_file is not None:
        raise bridge.BridgeError(f"{label} is packed into the .blend; unpack it to files first")
    return Source(label=label, path=bpy.path.abspath(img.filepath, library=img.library), kind=img.source,
                  colorspace=img.colorspace_settings.name, image=img, owned=False, node=node)


def _clip_source(clip, label: str, node=None) -> Source:
    path = bpy.path.abspath(clip.filepath, library=clip.library)
    try:
        img = bpy.data.images.load(path, check_existing=False)  # Blender decodes the clip's file as an image
    except RuntimeError:
        raise bridge.BridgeError(f"{label}: cannot open {path}") from None
    img.name = f".hdrlift {clip.name}"
    try:
        img.source = clip.source
        img.colorspace_settings.name = clip.colorspace_settings.name
        src = Source(label=label, path=path, kind=clip.source, colorspace=clip.colorspace_settings.name,
                     image=img, owned=True, node=node, clip=clip)
    except BaseException:
        bpy.data.images.remove(img)
        raise
    return src


def find_source(scene, *, image: str = "", clip: str = "", node: str = "") -> Source:
    """The shot named by ``node`` (a compositor node), ``image`` or ``clip``; else the active
    compositor node when it is a selected Image or Movie Clip node."""
    if image:
        img = bpy.data.images.get(image)
        if img is None:
            raise bridge.BridgeError(f"no image named {image!r}")
        return _image_source(img, f"image {img.name!r}")
    if clip:
        mc = bpy.data.movieclips.get(clip)
        if mc is None:
            raise bridge.BridgeError(f"no movie clip named {clip!r}")
        return _clip_source(mc, f"movie clip {mc.name!r}")
    tree = scene.node_tree if scene.use_nodes else None
    if node:
        nd = tree.nodes.get(node) if tree is not None else None
        if nd is None:
            raise bridge.BridgeError(f"no compositor node named {node!r}")
    else:
        nd = tree.nodes.active if tree is not None else None
        if nd is None or not nd.select or nd.bl_idname not in ("CompositorNodeImage", "CompositorNodeMovieClip"):
            raise bridge.BridgeError("no shot: select a compositor Image or Movie Clip node, or pass image=/clip=")
    if nd.bl_idname == "CompositorNodeImage":
        if nd.image is None:
            raise bridge.BridgeError(f"compositor node {nd.name!r} has no image")
        return _image_source(nd.image, f"image {nd.image.name!r} (node {nd.name!r})", node=nd)
    if nd.bl_idname == "CompositorNodeMovieClip":
        if nd.clip is None:
            raise bridge.BridgeError(f"compositor node {nd.name!r} has no movie clip")
        return _clip_source(nd.clip, f"movie clip {nd.clip.name!r} (node {nd.name!r})", node=nd)
    raise bridge.BridgeError(f"compositor node {nd.name!r} is not an Image or Movie Clip node")


def plan_frames(scene, source: Source, start: int, end: int) -> list[int]:
    """The scene frames in ``start..end`` the source covers. A sequence file missing inside the
    source's span is an error (Blender would show a hole)."""
    if end < start:
        raise bridge.BridgeError(f"frame range {start}-{end} is empty")
    frames = []
    for f in range(start, end + 1):
        n = source.source_frame(scene, f)
        if n is None:
            continue
        if source.kind == "SEQUENCE" and not os.path.isfile(source.file_for(n)):
            raise bridge.BridgeError(f"{source.label}: frame {f} needs {source.file_for(n)}, which is missing")
        frames.append(f)
    if not frames:
        raise bridge.BridgeError(f"{source.label} has no frames in {start}-{end}")
    return frames


class FrameReader:
    """Blender decodes the source's frames: ``reader(scene_frame)`` -> (top-first H x W x 4 RGBA
    float32, the server's input space). Main thread only."""

    def __init__(self, scene, source: Source, scene_linear_server: str):
        self.scene, self.source, self.linear = scene, source, scene_linear_server
        self.texture = bpy.data.textures.new(".hdrlift frame reader", "IMAGE")
        self.texture.image = source.image

    def __call__(self, f: int) -> tuple[np.ndarray, str]:
        src = self.source
        n = src.source_frame(self.scene, f)
        self.texture.image_user.frame_current = n
        self.texture.evaluate((0.5, 0.5, 0.0))  # Blender loads frame n into the image's buffer
        w, h = src.image.size
        if w < 1 or h < 1:
            raise bridge.BridgeError(f"{src.label}: Blender cannot read frame {n} (scene frame {f})")
        flat = np.empty(w * h * 4, np.float32)
        src.image.pixels.foreach_get(flat)
        rgba = np.ascontiguousarray(flat.reshape(h, w, 4)[::-1])
        if not np.isfinite(rgba[..., :3]).all():
            raise bridge.BridgeError(f"{src.label}: frame {n} holds NaN or infinite values")
        return rgba, bridge.shot_input_space(src.colorspace, is_float=src.image.is_float, scene_linear=self.linear)

    def close(self) -> None:
        if self.texture is not None:
            bpy.data.textures.remove(self.texture)
            self.texture = None


# --------------------------------------------------------------------------- the cache
def cache_root(folder: str = "") -> str:
    """The cache folder: ``folder`` (Blender's ``//`` = beside the .blend), else ``//hdrlift_cache``;
    for a .blend never saved, hdrlift_cache in the temporary folder."""
    folder = folder or "//hdrlift_cache"
    if folder.startswith("//") and not bpy.data.filepath:
        return os.path.join(tempfile.gettempdir(), "hdrlift_cache")
    return os.path.abspath(bpy.path.abspath(folder))


# --------------------------------------------------------------------------- one run
class Shot:
    """One run of the shot operator, ready to go: ``.run`` (a :class:`ShotRun`: ``feed()`` from
    the main thread, ``cancel()`` from anywhere), then ``finish()`` (wires the compositor when
    every frame is there) and always ``close()``. Nothing is written before the server answered."""

    def __init__(self, scene, *, image: str = "", clip: str = "", node: str = "", server: str, model: str = "",
                 output: str = SCENE_LINEAR, frame_start: int | None = None, frame_end: int | None = None,
                 cache_dir: str = "", token_file: str = "", ca_file: str = "", window: int = 4,
                 timeout: float = 15.0, route: str = "AUTO"):
        if route not in ROUTES:
            raise bridge.BridgeError(f"route {route!r} is not one of {', '.join(ROUTES)}")
        self.scene = scene
        self.server = server
        self.source = None
        self.reader = None
        self.client = None
        self.route = "STREAM"
        self.note = ""  # why AUTO streamed, for the report
        try:
            self.source = find_source(scene, image=image, clip=clip, node=node)
            self.out_blender, self.out_server = output_space(output)
            _, self.linear_server = scene_linear_space()
            bridge.shot_input_space(self.source.colorspace, is_float=False, scene_linear=self.linear_server)
            start = scene.frame_start if frame_start is None else frame_start
            end = scene.frame_end if frame_end is None else frame_end
            self.frames = plan_frames(scene, self.source, start, end)
            self.client = bridge.connect(server, token_file=token_file, ca_file=ca_file)
            try:
                self.model, _ = self.client.runnable_model(model or None, timeout=timeout)
                self.model_version = next((m.version for m in self.client.list_models(timeout).models
                                           if m.name == self.model), "")
            except Exception as exc:  # noqa: BLE001 - unreachable, refused, unknown model: one line
                raise bridge.BridgeError(bridge.one_line(exc, server)) from None
            self.root = cache_root(cache_dir)
            self.reader = FrameReader(scene, self.source, self.linear_server)
            if route != "STREAM":
                why = self._server_job(timeout)
                if why is not None and route == "SERVER":
                    raise bridge.BridgeError(f"no server job: {why}")
                self.note = why or ""
            if self.route == "STREAM":
                self._stream(window)
        except BaseException:
            self.close()
            raise

    def _settings(self, **extra) -> dict:
        return {"source": self.source.path, "model": self.model, "model_version": self.model_version,
                "colorspace": self.source.colorspace, "output": self.out_server, **extra}

    def _stream(self, window: int) -> None:
        """Frames decoded here by Blender, streamed to the server, written here (any storage)."""
        key = bridge.settings_key(**self._settings())
        self.folder = os.path.join(self.root, f"{self.source.stem}_{key}")
        attrs = {bridge.SETTINGS_ATTR: key, "hdrlift:model": self.model, "hdrlift:modelVersion": self.model_version,
                 "hdrlift:source": self.source.path, "hdrlift:sourceColorspace": self.source.colorspace,
                 "hdrlift:outputColorspace": self.out_server, "hdrlift:server": self.server}
        if self.out_server in bridge.CHROMATICITIES:
            attrs["chromaticities"] = bridge.CHROMATICITIES[self.out_server]
        self.route = "STREAM"
        self.run = ShotRun(self.frames, self.reader, client=self.client, folder=self.folder,
                           stem=self.source.stem, model=self.model, output_space=self.out_server,
                           attributes=attrs, window=window)

    def _server_job(self, timeout: float) -> str | None:
        """Submit a path job when the server can do the shot from the files themselves; the reason
        it cannot otherwise (then the frames are streamed)."""
        from hdrlift.plugin import RemoteError

        try:
            if not self.client.server_info().jobs_enabled:
                return "the server takes no path jobs (no --root)"
        except Exception as exc:  # noqa: BLE001
            return bridge.one_line(exc, self.server)
        src, frames = self.source, self.frames
        first = src.source_frame(self.scene, frames[0])
        if any(src.source_frame(self.scene, f) != first + (f - frames[0]) for f in frames):
            return "the frame mapping is not one continuous run of source frames"
        self.reader(frames[0])  # Blender opens the file: its channels tell whether it has alpha
        if src.image.depth in (32, 64, 128):
            return "the source has alpha, which a server job does not keep"
        last = first + len(frames) - 1
        try:
            digest = src.content_hash(first, last)
        except OSError as exc:
            return f"cannot read {exc.filename}: {exc.strerror}"
        key = bridge.settings_key(**self._settings(route="server job", content=digest))
        folder = os.path.join(self.root, f"{src.stem}_{key}")
        try:
            job = self.client.submit_job(
                src.pattern(), os.path.join(folder, f"{src.stem}.####.exr"), start=first, end=last, model=self.model,
                input_space=bridge.server_input_space(src.colorspace), output_space=self.out_server, resume=True,
                mask_layer=True, compression="zip")
        except RemoteError as exc:
            if exc.code is not None and exc.code.name in ("PERMISSION_DENIED", "FAILED_PRECONDITION",
                                                          "INVALID_ARGUMENT", "NOT_FOUND"):
                return f"the server cannot use these paths ({exc})"
            raise bridge.BridgeError(str(exc)) from None
        self.folder = folder
        self.route = "SERVER"
        self.run = ServerJobRun(job, frames, client=self.client, folder=folder, stem=src.stem,
                                number_offset=first - frames[0])
        return None

    def path(self, frame: int) -> str:
        return self.run.path(frame)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self.client is not None:
            self.client.close()
            self.client = None
        src, self.source = self.source, None
        if src is not None and src.owned:
            bpy.data.images.remove(src.image)

    def summary(self) -> str:
        r = self.run
        if r.error:
            return f"hdrlift: {r.error}"
        how = "server job" if self.route == "SERVER" else "streamed"
        head = f"hdrlift: {self.run.stem}: {r.n_written} frames reconstructed ({how}), {r.n_cached} from the cache"
        if r.cancelled.is_set():
            return f"{head}, {r.total - r.done} left (cancelled; run again to finish)"
        note = f"; {self.note}" if self.note else ""
        return f"{head} -> {self.folder}{note}"

    def finish(self) -> "bpy.types.Node | None":
        """After a complete run: the compositor reads the EXR sequence (see :func:`wire`)."""
        r = self.run
        if r.error or r.cancelled.is_set() or r.done != r.total:
            return None
        offset = getattr(self.run, "number_offset", 0)
        return wire(self.scene, self.source, self.path(self.frames[0]), self.frames, self.out_blender,
                    self.run.stem, number_offset=offset)


# --------------------------------------------------------------------------- the compositor
GROUP_OUTPUTS = (("Image", "NodeSocketColor"), ("Mask", "NodeSocketFloat"), ("Alpha", "NodeSocketFloat"))


def _reader_group(name: str, image, frames: list[int], number_offset: int = 0):
    """A compositor node group: an Image node on the EXR sequence -> outputs Image (the
    reconstruction, with alpha), Mask (which pixels were expanded), Alpha."""
    group = bpy.data.node_groups.get(name)
    if group is None or group.bl_idname != "CompositorNodeTree":
        group = bpy.data.node_groups.new(name, "CompositorNodeTree")
    group.nodes.clear()
    group.interface.clear()
    for sock, kind in GROUP_OUTPUTS:
        group.interface.new_socket(name=sock, in_out="OUTPUT", socket_type=kind)
    read = group.nodes.new("CompositorNodeImage")
    read.name = read.label = "HdrLift EXR"
    read.image = image
    read.frame_start, read.frame_duration = frames[0], frames[-1] - frames[0] + 1
    read.frame_offset = frames[0] - 1 + number_offset  # scene frame f reads file number f + number_offset
    read.location = (-300, 0)
    out = group.nodes.new("NodeGroupOutput")
    out.location = (100, 0)
    # the EXR has R, G, B, A and mask.Y: Blender reads it as a multilayer file (Combined, Alpha, mask)
    by_name = {s.name: s for s in read.outputs}
    picks = {"Image": by_name.get("Combined") or by_name.get("Image"), "Mask": by_name.get("mask"),
             "Alpha": by_name.get("Alpha")}
    for sock, _ in GROUP_OUTPUTS:
        if picks[sock] is not None:
            group.links.new(picks[sock], out.inputs[sock])
    return group


def wire(scene, source: Source, path: str, frames: list[int], colorspace: str, stem: str, number_offset: int = 0):
    """The compositor reads the reconstruction: an image datablock on the EXR sequence (colour
    space ``colorspace``, premultiplied alpha) inside the node group ``HdrLift <stem>``, whose node
    ("HdrLift") takes the source node's place and links; the source node stays, muted, beside it.
    Running again updates the same nodes."""
    scene.use_nodes = True
    tree = scene.node_tree
    img = next((i for i in bpy.data.images if i.source == "SEQUENCE" and
                os.path.normpath(bpy.path.abspath(i.filepath)) == os.path.normpath(path)), None)
    if img is None:
        img = bpy.data.images.load(path)
        img.source = "SEQUENCE"
    img.name = f"{stem}_hdr"
    try:
        img.colorspace_settings.name = colorspace
    except TypeError:  # a space this config lacks: Blender's default for float files stays
        pass
    img.alpha_mode = "PREMUL"
    img.reload()
    group = _reader_group(f"HdrLift {stem}", img, frames, number_offset)
    gnode = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeGroup" and n.node_tree == group), None)
    fresh = gnode is None
    if fresh:
        gnode = tree.nodes.new("CompositorNodeGroup")
        gnode.node_tree = group
        gnode.name = gnode.label = "HdrLift"
    src = source.node
    if src is not None and fresh:
        gnode.location = src.location.copy()
        src.location = (src.location[0], src.location[1] + 300)
        for link in list(tree.links):
            if link.from_node != src:
                continue
            name = {"Image": "Image", "Alpha": "Alpha"}.get(link.from_socket.name)
            if name is not None:
                tree.links.new(gnode.outputs[name], link.to_socket)
        src.mute = True
    elif fresh:
        comp = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"), None)
        if comp is not None:
            gnode.location = (comp.location[0] - 300, comp.location[1])
            if not comp.inputs["Image"].is_linked:
                tree.links.new(gnode.outputs["Image"], comp.inputs["Image"])
    return gnode
