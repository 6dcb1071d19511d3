#!/usr/bin/env python3
"""Lay out hdrlift.ofx.bundle: the plug-in, its private gRPC library, and renamed copies of the
shared libraries that library needs.

    bundle.py --plugin hdrlift.ofx --private libhdrlift_grpc.so --resources DIR --out hdrlift.ofx.bundle

    hdrlift.ofx.bundle/Contents/Linux-x86-64/hdrlift.ofx          exports only the OFX entry points
    hdrlift.ofx.bundle/Contents/Linux-x86-64/lib/libhdrlift_grpc.so
    hdrlift.ofx.bundle/Contents/Linux-x86-64/lib/libhdrlift-<name>.so.<N>   e.g. libhdrlift-protobuf.so.32
    hdrlift.ofx.bundle/Contents/Resources/org.hdrlift.Reconstruct.{png,svg}

Every library the private library pulls in (gRPC, protobuf, absl, re2, c-ares, OpenSSL, zlib...)
is copied except the C and C++ runtimes, and renamed: soname, file name and every DT_NEEDED
entry that points to it (patchelf), with RUNPATH $ORIGIN. So a host that has loaded its own
libprotobuf.so.32 or libgrpc++.so.1.51 cannot hand the plug-in its copy by soname, and with
RTLD_DEEPBIND the bundle's libraries bind to one another first, not to the host's symbols.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys

# The system's C/C++ runtime: never copied (one per process, and ABI-stable).
RUNTIME = re.compile(r"^(linux-vdso|ld-linux[-\w.]*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libnsl|"
                     r"libanl|libmvec|libstdc\+\+|libgcc_s)\.so")


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def needed(path: pathlib.Path) -> list[str]:
    out = run("readelf", "-d", str(path))
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def closure(path: pathlib.Path) -> dict[str, pathlib.Path]:
    """soname -> resolved file, for every non-runtime library `path` needs (ldd's answer)."""
    out = run("ldd", str(path))
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(\S+)\s+\(0x", line)
        if m and not RUNTIME.match(m.group(1)):
            libs[m.group(1)] = pathlib.Path(m.group(2)).resolve()
        elif "not found" in line:
            sys.exit(f"bundle.py: {path.name} needs a library the system lacks: {line.strip()}")
    return libs


STB_GLOBAL, STB_GNU_UNIQUE = 1, 10


def unshare_unique_symbols(path: pathlib.Path) -> int:
    """Turn the library's STB_GNU_UNIQUE symbols into plain global ones; returns how many.

    g++ gives the static locals of inline functions and template static members (gRPC's
    NoDestructSingleton<...>::value_, protobuf's default instances...) the GNU_UNIQUE binding,
    and the dynamic linker keeps ONE definition of such a symbol per process whatever the scopes:
    RTLD_LOCAL and RTLD_DEEPBIND do not apply to them. A host that already loaded the system's
    libgrpc would hand the bundle's copy its singletons (and the other way round): the plug-in
    crashed in grpc_event_engine's constructor that way. As plain globals they bind like any
    other symbol: to the bundle's own definition first (DEEPBIND)."""
    data = bytearray(path.read_bytes())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"bundle.py: {path.name} is not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    changed = 0
    for k in range(shnum):
        sh = shoff + k * shentsize
        sh_type, = struct.unpack_from("<I", data, sh + 4)
        if sh_type not in (2, 11):  # SHT_SYMTAB, SHT_DYNSYM
            continue
        off, size = struct.unpack_from("<QQ", data, sh + 0x18)
        entsize, = struct.unpack_from("<Q", data, sh + 0x38)
        for sym in range(off, off + size, entsize or 24):
            info = data[sym + 4]
            if info >> 4 == STB_GNU_UNIQUE:
                data[sym + 4] = (STB_GLOBAL << 4) | (info & 0xF)
                changed += 1
    if changed:
        path.write_bytes(bytes(data))
    return changed


def renamed(soname: str) -> str:
    base = soname[3:] if soname.startswith("lib") else soname
    return "libhdrlift-" + base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", required=True, type=pathlib.Path)
    ap.add_argument("--private", required=True, type=pathlib.Path)
    ap.add_argument("--resources", required=True, type=pathlib.Path)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    a = ap.parse_args()
    if shutil.which("patchelf") is None:
        sys.exit("bundle.py: patchelf is needed (apt-get install patchelf)")
    tmp = a.out.with_name(a.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    binary = tmp / "Contents" / "Linux-x86-64"
    libdir = binary / "lib"
    libdir.mkdir(parents=True)
    shutil.copy2(a.plugin, binary / "hdrlift.ofx")
    res = tmp / "Contents" / "Resources"
    shutil.copytree(a.resources, res)

    deps = closure(a.private)
    names = {soname: renamed(soname) for soname in deps}
    private = libdir / a.private.name
    shutil.copy2(a.private, private)
    targets = [private]
    for soname, src in deps.items():
        dst = libdir / names[soname]
        shutil.copy2(src, dst)
        os.chmod(dst, 0o755)
        run("patchelf", "--set-soname", names[soname], str(dst))
        unshare_unique_symbols(dst)
        targets.append(dst)
    for t in targets:
        args = []
        for n in needed(t):
            if n in names:
                args += ["--replace-needed", n, names[n]]
        if args:
            run("patchelf", *args, str(t))
        run("patchelf", "--set-rpath", "$ORIGIN", str(t))
    # check: every library of the bundle resolves its needs inside the bundle or the runtime, and
    # none keeps a process-wide (GNU_UNIQUE) symbol
    for t in targets:
        if " UNIQUE " in run("readelf", "--dyn-syms", "-W", str(t)):
            sys.exit(f"bundle.py: {t.name} still has GNU_UNIQUE symbols")
        for n in needed(t):
            if not RUNTIME.match(n) and not (libdir / n).exists():
                sys.exit(f"bundle.py: {t.name} still needs {n}, which the bundle lacks")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    out = subprocess.run(["ldd", str(private)], check=True, capture_output=True, text=True, env=env).stdout
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(\S+)", line)
        if m and not RUNTIME.match(m.group(1)) and not m.group(2).startswith(str(libdir.resolve())):
            sys.exit(f"bundle.py: {m.group(1)} resolves outside the bundle: {m.group(2)}")
    os.utime(binary / "hdrlift.ofx")  # newer than its inputs: the build's stamp of the bundle
    shutil.rmtree(a.out, ignore_errors=True)
    tmp.rename(a.out)
    print(f"{a.out} ({len(deps)} libraries bundled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
