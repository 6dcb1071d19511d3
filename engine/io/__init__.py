"""Decoding and encoding: video (PyAV), stills and sequences, OpenEXR (OpenImageIO)."""
