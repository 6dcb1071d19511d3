# hdrlift for Nuke: runs in every Nuke session, GUI or not (nuke -t, render farms), so it only
# extends paths. Put the folder holding this file on NUKE_PATH (docs/nuke.md).
import nuke

nuke.pluginAddPath("./python")  # hdrlift_nuke and the vendored hdrlift client (also on sys.path)
nuke.pluginAddPath("./gizmos", addToSysPath=False)  # HdrLift.gizmo
nuke.pluginAddPath("./icons", addToSysPath=False)  # hdrlift.png

import hdrlift_nuke.vendor  # noqa: E402

hdrlift_nuke.vendor.activate()  # grpcio, protobuf, numpy built for this Nuke's Python, if vendored
