"""The defaults every entry point shares, in one place that imports nothing heavy.

``--help``, ``--version`` and the list commands build their parsers from these without loading
numpy, OpenColorIO, OpenImageIO or torch, so they answer at once; the modules the values belong
to (colour, EXR, tiling, the file loop) import them from here.
"""

#: OCIO config when neither ``--ocio-config`` nor ``$OCIO`` names one
DEFAULT_CONFIG = "ocio://studio-config-latest"
#: what networks take: display code values, sRGB transfer, Rec.709 primaries (docs/CONTRACTS.md)
NETWORK_INPUT_SPACE = "sRGB Encoded Rec.709 (sRGB)"
#: what networks give: scene-linear Rec.709, display white 1.0
NETWORK_OUTPUT_SPACE = "Linear Rec.709 (sRGB)"
DEFAULT_OUTPUT_SPACE = "ACEScg"
#: compressions OpenImageIO's OpenEXR writer takes ("dwaa"/"dwab"/"zip"/"zips" also take ":LEVEL")
EXR_COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab")
#: pixels one back-end call takes on the CPU; larger frames run in tiles (1080p runs whole)
DEFAULT_MAX_PIXELS = 1920 * 1088
#: frames above are refused before decoding unless asked for (memory: about 60 bytes a pixel)
MAX_FRAME_PIXELS = 8192 * 8192
