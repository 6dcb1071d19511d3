"""hdrlift's Nuke node: the HdrLift gizmo reconstructs its input through ``hdrlift-serve``.

Everything here but :mod:`hdrlift_nuke.node` runs without Nuke (and is tested so):

* :mod:`hdrlift_nuke.vendor`: which folder of vendored packages (grpcio, protobuf, numpy) fits
  the running Python; ``init.py`` puts it on ``sys.path``;
* :mod:`hdrlift_nuke.colour`: Nuke's scene-linear pixels back to the plate's code values;
* :mod:`hdrlift_nuke.exrfiles`: the EXRs Nuke's Write renders, and the result EXRs;
* :mod:`hdrlift_nuke.job`: one run (render, hash, skip, stream, write), driven through callbacks;
* :mod:`hdrlift_nuke.node`: the thin layer that calls Nuke (knobs, Write, Read, progress).

Imports: the standard library, numpy, ``hdrlift.plugin`` (grpcio, protobuf) and ``nuke`` (only in
``node``); never the hdrlift engine or torch (docs/nuke.md).
"""

__version__ = "0.1.0"
