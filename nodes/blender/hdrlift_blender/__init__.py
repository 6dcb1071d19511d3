"""hdrlift for Blender: reconstruct scene-linear HDR from SDR images and shots through an
``hdrlift-serve`` server (the shim runs no model itself; the server's engine does the work).

* Image Editor > sidebar (N) > hdrlift > "Reconstruct HDR" makes ``<name>_hdr``, a float image in
  the chosen scene-linear space (Linear Rec.709, Blender's working space, by default), with the
  source's alpha: ``bpy.ops.hdrlift.reconstruct(image=..., server=..., output_space=...)``.
* Compositor > sidebar (N) > hdrlift > "Reconstruct Shot" turns the selected Image / Movie Clip
  node's image sequence or movie (or ``image=``/``clip=``) into a cached EXR sequence and puts an
  "HdrLift" node group in the source node's place: ``bpy.ops.hdrlift.reconstruct_shot(...)``.
  From the UI it runs modal (progress bar, Esc cancels); from scripts it blocks.

Preferences > Add-ons > hdrlift: server address(es), token file, CA file, model, cache folder.
"""

import time

import bpy
import numpy as np

from . import bridge, shot

OUTPUT_ITEMS = [(name, name, f"new image in {name}") for name in bridge.OUTPUT_SPACES]
SHOT_OUTPUT_ITEMS = [(shot.SCENE_LINEAR, "Scene linear", "the scene-linear space of Blender's OCIO config "
                      "(Linear Rec.709; ACEScg in an ACES config)")] + \
    [(name, name, f"EXRs in {name}") for name in bridge.OUTPUT_SPACES]


def _prefs(context):
    addon = context.preferences.addons.get(__package__) if __package__ else None
    return addon.preferences if addon is not None else None


class HdrliftPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server: bpy.props.StringProperty(name="Server", default="localhost:50051",
                                     description="hdrlift-serve address; several, comma-separated, share the work")
    token_file: bpy.props.StringProperty(name="Token file", subtype="FILE_PATH",
                                         description="file whose first line is the server's bearer token")
    ca_file: bpy.props.StringProperty(name="CA file (TLS)", subtype="FILE_PATH",
                                      description="PEM certificate authority; set it to talk TLS")
    model: bpy.props.StringProperty(name="Model", default="",
                                    description="reconstruction model (empty: the server's default)")
    cache_dir: bpy.props.StringProperty(name="Shot cache", default="//hdrlift_cache", subtype="DIR_PATH",
                                        description="folder for reconstructed shots (// = beside the .blend)")

    def draw(self, context):
        col = self.layout.column()
        for prop in ("server", "token_file", "ca_file", "model", "cache_dir"):
            col.prop(self, prop)


class HDRLIFT_OT_reconstruct(bpy.types.Operator):
    """Reconstruct scene-linear HDR from this SDR image on the hdrlift server"""

    bl_idname = "hdrlift.reconstruct"
    bl_label = "Reconstruct HDR"
    bl_options = {"REGISTER", "UNDO"}

    image: bpy.props.StringProperty(name="Image", description="source image (default: the Image Editor's)")
    server: bpy.props.StringProperty(name="Server", description="overrides the preferences' server")
    model: bpy.props.StringProperty(name="Model", description="overrides the preferences' model")
    output_space: bpy.props.EnumProperty(name="Output", items=OUTPUT_ITEMS, default="Linear Rec.709")

    def _source(self, context):
        if self.image:
            img = bpy.data.images.get(self.image)
            if img is None:
                raise bridge.BridgeError(f"no image named {self.image!r}")
            return img
        space = getattr(context, "space_data", None)
        img = getattr(space, "image", None)
        if img is None:
            raise bridge.BridgeError("no image: open one in the Image Editor or pass image=NAME")
        return img

    def execute(self, context):
        prefs = _prefs(context)
        try:
            src = self._source(context)
            w, h = src.size
            if w < 1 or h < 1:
                raise bridge.BridgeError(f"image {src.name!r} has no pixels (not loaded or missing file)")
            flat = np.empty(w * h * 4, np.float32)
            src.pixels.foreach_get(flat)
            space = src.colorspace_settings.name
            if src.is_float and space != "Non-Color" and bridge.linear_server_space(space) is None:
                # Blender converted this float file (16-bit PNG/TIFF...) to scene linear on load
                bridge.shot_input_space(space, is_float=True, scene_linear="")  # Filmic/AgX: refused
                space = shot.scene_linear_space()[0]
            out = bridge.reconstruct(
                flat, w, h, space, self.output_space,
                server=self.server or (prefs.server if prefs else ""),
                model=self.model or (prefs.model if prefs else ""),
                token_file=prefs.token_file if prefs else "", ca_file=prefs.ca_file if prefs else "")
        except bridge.BridgeError as exc:
            self.report({"ERROR"}, f"hdrlift: {exc}")
            return {"CANCELLED"}
        name = f"{src.name}_hdr"
        dst = bpy.data.images.get(name)
        if dst is not None and (tuple(dst.size) != (w, h) or not dst.is_float):
            bpy.data.images.remove(dst)
            dst = None
        if dst is None:
            dst = bpy.data.images.new(name, w, h, alpha=True, float_buffer=True)
        dst.colorspace_settings.name = self.output_space
        dst.pixels.foreach_set(out)
        dst.update()
        space = getattr(context, "space_data", None)
        if space is not None and hasattr(space, "image"):
            space.image = dst
        self.report({"INFO"}, f"hdrlift: {dst.name} ({w}x{h}, {self.output_space})")
        return {"FINISHED"}


class HDRLIFT_PT_panel(bpy.types.Panel):
    bl_label = "hdrlift"
    bl_space_type = "IMAGE_EDITOR"
    bl_region_type = "UI"
    bl_category = "hdrlift"

    def draw(self, context):
        prefs = _prefs(context)
        col = self.layout.column()
        col.label(text=f"Server: {prefs.server if prefs else '(preferences)'}")
        col.operator(HDRLIFT_OT_reconstruct.bl_idname)


class HDRLIFT_OT_reconstruct_shot(bpy.types.Operator):
    """Reconstruct a movie clip or image sequence as scene-linear HDR on the hdrlift server, cache it as
    EXRs and read them in the compositor"""

    bl_idname = "hdrlift.reconstruct_shot"
    bl_label = "Reconstruct Shot"
    bl_options = {"REGISTER"}

    node: bpy.props.StringProperty(name="Node", description="compositor Image or Movie Clip node "
                                   "(default: the selected one)")
    image: bpy.props.StringProperty(name="Image", description="image sequence or movie datablock")
    clip: bpy.props.StringProperty(name="Movie Clip", description="movie clip datablock")
    server: bpy.props.StringProperty(name="Server", description="overrides the preferences' server")
    model: bpy.props.StringProperty(name="Model", description="overrides the preferences' model")
    output_space: bpy.props.EnumProperty(name="Output", items=SHOT_OUTPUT_ITEMS, default=shot.SCENE_LINEAR)
    use_scene_range: bpy.props.BoolProperty(name="Scene range", default=True,
                                            description="the scene's frame range (else Start/End)")
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=1)
    cache_dir: bpy.props.StringProperty(name="Cache", subtype="DIR_PATH",
                                        description="overrides the preferences' shot cache folder")
    wire: bpy.props.BoolProperty(name="Wire compositor", default=True,
                                 description="put an HdrLift node group in the source node's place")
    route: bpy.props.EnumProperty(name="Route", default="AUTO", items=[
        ("AUTO", "Auto", "a server job when the server can read the files and write the cache (shared storage), "
                         "else stream the frames"),
        ("STREAM", "Stream", "Blender decodes, frames go over the network, EXRs are written here"),
        ("SERVER", "Server job", "the server reads the files and writes the EXRs (storage shared with it; "
                                 "sources without alpha)")])

    _shot = None
    _timer = None

    def _prepare(self, context) -> shot.Shot:
        prefs = _prefs(context)
        return shot.Shot(
            context.scene, image=self.image, clip=self.clip, node=self.node,
            server=self.server or (prefs.server if prefs else ""), model=self.model or (prefs.model if prefs else ""),
            output=self.output_space,
            frame_start=None if self.use_scene_range else self.frame_start,
            frame_end=None if self.use_scene_range else self.frame_end,
            cache_dir=self.cache_dir or (prefs.cache_dir if prefs else ""),
            token_file=prefs.token_file if prefs else "", ca_file=prefs.ca_file if prefs else "",
            route=self.route)

    def _end(self, context, job: shot.Shot) -> set:
        try:
            if self.wire:
                job.finish()
            r = job.run
            if r.error:
                self.report({"ERROR"}, job.summary())
                return {"CANCELLED"}
            self.report({"WARNING"} if r.cancelled.is_set() else {"INFO"}, job.summary())
            return {"CANCELLED"} if r.cancelled.is_set() else {"FINISHED"}
        finally:
            job.close()

    def execute(self, context):
        """Blocking (scripts, background Blender, farm jobs): the progress bar moves, the UI waits."""
        try:
            job = self._prepare(context)
        except bridge.BridgeError as exc:
            self.report({"ERROR"}, f"hdrlift: {exc}")
            return {"CANCELLED"}
        wm = context.window_manager
        wm.progress_begin(0, max(1, job.run.total))
        try:
            job.run.start()
            while job.run.feed(block=True):
                wm.progress_update(job.run.done)
            while not job.run.wait(0.25):  # a server job: its progress
                wm.progress_update(job.run.done)
        except BaseException:
            job.run.cancel()
            job.close()
            raise
        finally:
            wm.progress_end()
        return self._end(context, job)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._shot = self._prepare(context)
        except bridge.BridgeError as exc:
            self.report({"ERROR"}, f"hdrlift: {exc}")
            return {"CANCELLED"}
        wm = context.window_manager
        self._shot.run.start()
        wm.progress_begin(0, max(1, self._shot.run.total))
        self._timer = wm.event_timer_add(0.05, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._shot
        if event.type == "ESC" and event.value == "PRESS":
            job.run.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        # decode on the main thread (bpy), a few frames per tick; the worker thread streams and writes
        until = time.monotonic() + 0.04
        while time.monotonic() < until and job.run.feed(block=False) and not job.run.queue.full():
            pass
        r = job.run
        context.window_manager.progress_update(r.done)
        context.workspace.status_text_set(f"hdrlift: {self._shot.source.stem if self._shot.source else ''} "
                                          f"{r.done}/{r.total} frames (Esc cancels)")
        if not (r.fed_all and r.finished.is_set()):
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        context.window_manager.progress_end()
        context.workspace.status_text_set(None)
        self._shot = None
        return self._end(context, job)

    def cancel(self, context):
        """Blender ends the operator (window closed, file loaded): stop the run, keep whole frames."""
        job, self._shot = self._shot, None
        if job is not None:
            job.run.cancel()
            job.run.wait(30)
            job.close()
            context.window_manager.event_timer_remove(self._timer)
            context.window_manager.progress_end()


class HDRLIFT_PT_shot_panel(bpy.types.Panel):
    bl_label = "hdrlift"
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "hdrlift"

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "tree_type", "") == "CompositorNodeTree"

    def draw(self, context):
        prefs = _prefs(context)
        col = self.layout.column()
        col.label(text=f"Server: {prefs.server if prefs else '(preferences)'}")
        col.label(text=f"Frames: {context.scene.frame_start}-{context.scene.frame_end}")
        col.operator(HDRLIFT_OT_reconstruct_shot.bl_idname)


CLASSES = (HdrliftPreferences, HDRLIFT_OT_reconstruct, HDRLIFT_PT_panel, HDRLIFT_OT_reconstruct_shot,
           HDRLIFT_PT_shot_panel)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
