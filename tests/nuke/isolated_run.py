"""Run the built NUKE_PATH folder as Nuke's Python would, with nothing but the standard library and
the folder: ``python -I -S isolated_run.py PLUGIN STUBS SERVER OUT.json``.

``-I -S``: no site-packages, no user paths, no PYTHONPATH. The stand-in ``nuke`` (this folder's
``standin.py``, held to the types-nuke stubs in ``STUBS``) runs the folder's ``init.py``; from
then on numpy, grpcio and protobuf can only come from the folder's vendored ``site-packages``. A
HdrLift node made by ``nuke.createNode`` reconstructs two frames through the server (inverse-crf)
and the results, the versions and the imported modules are written to ``OUT.json``.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin  # noqa: E402


def main(plugin: str, stubs: str, server: str, out: str) -> None:
    nk = standin.Nuke(standin.Stubs(__import__("pathlib").Path(stubs)))
    sys.modules["nuke"] = nk.module
    nk.plugin_dir = plugin
    with open(os.path.join(plugin, "init.py")) as fh:
        exec(compile(fh.read(), os.path.join(plugin, "init.py"), "exec"), {"__name__": "__main__"})
    import numpy as np

    def pixels(frame):
        ramp = np.linspace(0.0, 1.2, 24 * 16 * 3, dtype=np.float32).reshape(16, 24, 3)
        return (ramp * np.float32(frame / 2.0)) ** 2

    node = nk.module.createNode("HdrLift")
    node.setInput(0, standin.make_plate(nk, pixels, 1, 2))
    node["servers"].setValue(server)
    node["model"].setValue("inverse-crf")
    node["cache_folder"].setValue(os.path.join(os.path.dirname(out), "cache"))
    nk.press(node, "reconstruct")
    from hdrlift.plugin import openexr

    worst = 0.0
    for f in (1, 2):
        with open(nk.read_path(node.node("HdrLiftResult"), f), "rb") as fh:
            planes, _ = openexr.decode(fh.read())
        hdr = np.stack([planes[c] for c in "RGB"], -1)
        worst = max(worst, float(np.abs(hdr - np.clip(pixels(f), 0, 1)).max()))
    import google.protobuf
    import grpc

    report = {"status": node["status"].value(), "worst": worst, "numpy": np.__file__, "grpc": grpc.__file__,
              "grpc_version": grpc.__version__, "protobuf_version": google.protobuf.__version__,
              "modules": sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)),
              "flags": [sys.flags.isolated, sys.flags.no_site]}
    with open(out, "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main(*sys.argv[1:5])
