"""hdrlift for Blender: reconstruct a scene-linear HDR image from an SDR image through an
``hdrlift-serve`` server (the shim runs no model itself; the server's engine does the work).

Image Editor > sidebar (N) > hdrlift > "Reconstruct HDR" makes ``<name>_hdr``, a float image in
the chosen scene-linear space (Linear Rec.709, Blender's working space, by default), with the
source's alpha. Preferences > Add-ons > hdrlift: server address(es), token file, CA file, model.
The operator is ``bpy.ops.hdrlift.reconstruct(image=..., server=..., output_space=...)`` for
scripts and farm-side Blender jobs.
"""

import bpy
import numpy as np

from . import bridge

OUTPUT_ITEMS = [(name, name, f"new image in {name}") for name in bridge.OUTPUT_SPACES]


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

    def draw(self, context):
        col = self.layout.column()
        for prop in ("server", "token_file", "ca_file", "model"):
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
            out = bridge.reconstruct(
                flat, w, h, src.colorspace_settings.name, self.output_space,
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


CLASSES = (HdrliftPreferences, HDRLIFT_OT_reconstruct, HDRLIFT_PT_panel)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
