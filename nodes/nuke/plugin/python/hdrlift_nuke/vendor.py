"""The vendored packages for the running Python: ``site-packages/<tag>/`` beside ``python/``.

``nodes/nuke/build.py`` unpacks grpcio, protobuf and numpy wheels once per Python version and
platform Nuke may run (``py39-linux-x86_64``, ``py311-windows-amd64``...); ``init.py`` calls
:func:`activate`, which appends the one folder that fits to ``sys.path`` (appended, so a package
Nuke ships itself wins). No Nuke import here: the tests call it directly.
"""

from __future__ import annotations

import os
import platform as _platform
import sys

#: Nuke's Pythons this build targets: Nuke 14 (3.9), Nuke 15 (3.10), Nuke 16 (3.11).
PYTHONS = ((3, 9), (3, 10), (3, 11))
#: What the node needs beside the standard library and hdrlift.plugin.
REQUIRED = ("grpc", "google.protobuf", "numpy")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def platform_tag(system: str | None = None, machine: str | None = None) -> str:
    """``linux-x86_64``, ``linux-aarch64``, ``macos-arm64``, ``macos-x86_64`` or ``windows-amd64``."""
    system = (system or sys.platform).lower()
    machine = (machine or _platform.machine()).lower()
    machine = {"amd64": "x86_64", "x64": "x86_64", "arm64": "arm64", "aarch64": "aarch64"}.get(machine, machine)
    if system.startswith("linux"):
        return f"linux-{machine}"
    if system.startswith("darwin") or system == "macos":
        return "macos-arm64" if machine in ("arm64", "aarch64") else "macos-x86_64"
    if system.startswith("win"):
        return "windows-amd64"
    return f"{system}-{machine}"


def site_tag(version: tuple[int, int] | None = None, system: str | None = None, machine: str | None = None) -> str:
    major, minor = version or sys.version_info[:2]
    return f"py{major}{minor}-{platform_tag(system, machine)}"


def site_folder(root: str | None = None, **kw) -> str:
    return os.path.join(root or ROOT, "site-packages", site_tag(**kw))


def activate(root: str | None = None) -> str | None:
    """Append this Python's vendored folder to ``sys.path``; returns it, or None if absent."""
    folder = site_folder(root)
    if not os.path.isdir(folder):
        return None
    if folder not in sys.path:
        sys.path.append(folder)
    return folder


def missing() -> list[str]:
    """The required packages this Python cannot import (an empty list when all are there)."""
    import importlib.util

    gone = []
    for name in REQUIRED:
        try:
            if importlib.util.find_spec(name) is None:
                gone.append(name)
        except (ImportError, ValueError):
            gone.append(name)
    return gone
