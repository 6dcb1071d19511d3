"""Checks on the paths hdrlift opens, before anything opens them.

Only regular files are read: a FIFO would block the reader until a writer appears (and, inside a
library call, the whole process with it), a device or socket is never a picture. The check
follows symbolic links (what matters is what the link names) and happens before PyAV or
OpenImageIO touch the path.
"""

from __future__ import annotations

import os
import stat

from hdrlift.engine.errors import InputError


def require_regular_file(path: str | os.PathLike, what: str = "input") -> None:
    """InputError unless ``path`` is a regular file (folders, FIFOs, devices, sockets refused)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a file")
        raise InputError(f"{p}: is {kind}, not a regular file; the {what} must be a file")
