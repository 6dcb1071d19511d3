"""Atomic file writes, shared by every part that writes a file other than an EXR frame.

The file is written under a hidden temporary name in the target's own folder and renamed onto
the target (``os.replace``, atomic on one file system) only once it is complete; on any error,
Ctrl-C included, the temporary is removed. A crash therefore never leaves a half-written file
or a stray temporary. Imports nothing heavy, so host plug-ins can use it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
from typing import Iterator


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a fresh temporary path next to ``path`` (its folder is created); when the block
    ends normally the temporary is renamed onto ``path``, otherwise it is deleted."""
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_temporary(out)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _fresh_temporary(out: pathlib.Path) -> pathlib.Path:
    """Create an empty hidden file next to ``out`` with the permissions of any new file (0666 less
    the umask; ``tempfile.mkstemp`` would make it 0600, so exported models and weights on a shared
    farm disk would be unreadable to other users)."""
    for _ in range(100):
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {out}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically (:func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return pathlib.Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`replacing`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


__all__ = ["replacing", "atomic_write_bytes", "atomic_write_text"]
