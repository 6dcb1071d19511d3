"""The OpenFX plug-in (nodes/ofx) loaded by a test host as a host loads it (dlopen,
OfxGetNumberOfPlugins/OfxGetPlugin, setHost, then the actions), rendering through real
hdrlift-serve processes on loopback. Run by `make test-ofx`, which builds the bundle first."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from ofx_helpers import ABI_DUMP, BINARY, BUILD, BUNDLE, HOST, PRIVATE, run_host

if not BUILD:
    pytest.skip("the OFX tests run through `make test-ofx` (it builds the bundle and sets HDRLIFT_OFX_BUILD)",
                allow_module_level=True)

HALF_RTOL = 2.0 ** -10  # two half-float steps: the EXRs of hdr-image are half
HDR_IMAGE = pathlib.Path(sys.executable).parent / "hdr-image"
RUNTIME = re.compile(r"^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux-x86-64)\.so")


# ------------------------------------------------------------------------------------ helpers
def straight_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Code values in [0, 1] with clipped highlights and rows that differ (orientation shows)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(1, w - 1), yy / max(1, h - 1), 0.3 + 0.0 * xx], -1)
    img = np.clip(0.6 * base + 0.6 * rng.random((h, w, 3), dtype=np.float32), 0.0, 1.0)
    img[: max(1, h // 4), : max(1, w // 4)] = 1.0  # a clipped block, top left
    return img.astype(np.float32)


def quantise(img: np.ndarray, depth: str) -> np.ndarray:
    scale = {"byte": 255.0, "short": 65535.0}[depth]
    return np.round(img * scale).astype(np.uint8 if depth == "byte" else np.uint16)


def write_png(path: pathlib.Path, codes: np.ndarray) -> None:
    import OpenImageIO as oiio

    fmt = oiio.UINT8 if codes.dtype == np.uint8 else oiio.UINT16
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), oiio.ImageSpec(codes.shape[1], codes.shape[0], codes.shape[2], fmt))
    out.write_image(codes)
    out.close()


def hdr_image(tmp_path: pathlib.Path, codes: np.ndarray, model: str, *extra: str) -> dict[str, np.ndarray]:
    """hdr-image on the same pixels (as a PNG): {"rgb": H x W x 3, "mask": H x W or None}."""
    import OpenImageIO as oiio

    tmp_path.mkdir(parents=True, exist_ok=True)
    png, exr = tmp_path / "ref.png", tmp_path / "ref.exr"
    write_png(png, codes)
    r = subprocess.run([str(HDR_IMAGE), str(png), str(exr), "--model", model, "--backend", "torch", "-q",
                        "--overwrite", *extra], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    buf = oiio.ImageBuf(str(exr))
    px = buf.get_pixels(oiio.FLOAT)
    names = list(buf.spec().channelnames)
    rgb = np.stack([px[..., names.index(c)] for c in "RGB"], -1)
    mask = px[..., names.index("mask.Y")] if "mask.Y" in names else None
    return {"rgb": rgb, "mask": mask}


def reference(server: str, rgb: np.ndarray, **kw):
    from hdrlift.plugin import Client

    with Client(server) as c:
        return c.reconstruct(rgb, **kw)


def close_to_half(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=HALF_RTOL, atol=1e-6)


# ------------------------------------------------------------------------------ the binary
def dynamic_symbols(path: pathlib.Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_the_bundle_exports_only_the_ofx_entry_points():
    assert BINARY.is_file() and (BUNDLE / "Contents" / "Resources" / "org.hdrlift.Reconstruct.png").is_file()
    assert dynamic_symbols(BINARY) == {"OfxGetNumberOfPlugins", "OfxGetPlugin"}
    assert dynamic_symbols(PRIVATE) == {"hdrlift_bridge_v1"}
    # the plug-in binary itself needs nothing but the C/C++ runtime: no gRPC, protobuf, absl
    dyn = subprocess.run(["readelf", "-d", str(BINARY)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"Shared library: \[([^\]]+)\]", dyn)
    assert needed and all(RUNTIME.match(n) for n in needed), needed
    # the bundled copies: renamed sonames, found through $ORIGIN, no process-wide symbols
    libdir = PRIVATE.parent
    for lib in libdir.iterdir():
        d = subprocess.run(["readelf", "-d", "--dyn-syms", "-W", str(lib)], capture_output=True, text=True,
                           check=True).stdout
        assert " UNIQUE " not in d, lib.name
        assert "Library runpath: [$ORIGIN]" in d, lib.name
        for n in re.findall(r"Shared library: \[([^\]]+)\]", d):
            assert RUNTIME.match(n) or (n.startswith("libhdrlift") and (libdir / n).exists()), (lib.name, n)


def test_the_api_declarations_dump_the_spec_values():
    """ofx_abi_dump prints what these headers declare; with -DOFX_INCLUDE_DIR the same program
    prints the official headers' values, and the two dumps are diffed (docs/ofx.md)."""
    out = subprocess.run([str(ABI_DUMP)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "<undefined>" not in "\n".join(out)
    want = [
        'macro kOfxImageEffectPropSupportsMultipleClipDepths "OfxImageEffectPropMultipleClipDepths"',
        'macro kOfxImageEffectPropProjectPixelAspectRatio "OfxImageEffectPropPixelAspectRatio"',
        'macro kOfxImagePreMultiplied "OfxImageAlphaPremultiplied"',
        'macro kOfxImageFieldNone "OfxFieldNone"',
        "macro kOfxStatReplyDefault 14",
        "macro kOfxStatErrImageFormat 1000",
        "struct OfxPlugin size 48 align 8",
        "struct OfxImageEffectSuiteV1 size 104 align 8",
        "struct OfxPropertySuiteV1 size 144 align 8",
        "struct OfxParameterSuiteV1 size 144 align 8",
        "member OfxParameterSuiteV1.paramGetValueAtTime offset 40 type PFiP14OfxParamStructdzE",
        "member OfxImageEffectSuiteV1.clipGetImage offset 40 type PFiP18OfxImageClipStructdPK8OfxRectDPP20OfxPropertySetStructE",
    ]
    for line in want:
        assert line in out, line


# ------------------------------------------------------------------------------ describe
def test_describe_declares_what_it_supports(tmp_path, server):
    run = run_host(tmp_path, None, params={"servers": server})
    r = run.report
    assert r["plugins"] == 1 and r["id"] == "org.hdrlift.Reconstruct" and r["version"] == [0, 1]
    assert (r["load"], r["describe"], r["describe_in_context"], r["unload"]) == (0, 0, 0, 0)
    d = r["descriptor"]
    assert d["contexts"] == ["OfxImageEffectContextFilter", "OfxImageEffectContextGeneral"]
    assert d["depths"] == ["OfxBitDepthByte", "OfxBitDepthShort", "OfxBitDepthFloat"]
    assert d["thread_safety"] == "OfxImageEffectRenderFullySafe"
    assert d["tiles"] == 1 and d["multiple_depths"] == 1 and d["grouping"] == "Color/HDR"
    assert d["icon"][1] == "org.hdrlift.Reconstruct.png"
    assert [c["name"] for c in d["clips"]] == ["Source", "Output"]
    assert set(d["params"]) >= {"servers", "modelMenu", "model", "inputSpace", "outputSpace", "tokenFile", "caFile",
                                "timeout", "maskInAlpha"}
    assert r["problems"] == []
    assert {"OfxPropertySuite/1", "OfxImageEffectSuite/1", "OfxParameterSuite/1"} <= set(r["suites"])
    # the model menu came from the server's ListModels when the instance was created
    opts = r["instances"][0]["params"]["modelMenu.options"]
    assert opts[0] == "Server default" and opts[-1] == "Other (typed name)"
    assert {"inverse-crf", "landis", "hdrcnn-lite"} <= set(opts[1:-1])
    assert opts[1:-1] == sorted(opts[1:-1])  # the server's (sorted) list, not the fallback's order


def test_model_menu_writes_the_model_name_and_falls_back_without_a_server(tmp_path, server, closed_port):
    run = run_host(tmp_path / "a", None, params={"servers": server})
    opts = run.report["instances"][0]["params"]["modelMenu.options"]
    run = run_host(tmp_path / "b", None, params={"servers": server}, edits={"modelMenu": opts.index("landis")})
    p = run.report["instances"][0]["params"]
    assert p["model"] == "landis" and p["modelMenu"] == opts.index("landis")
    # a typed name the menu does not know selects "Other"
    run = run_host(tmp_path / "c", None, params={"servers": server}, edits={"model": "my-model"})
    p = run.report["instances"][0]["params"]
    assert p["modelMenu"] == len(opts) - 1
    # no server: the fallback list, and no error (the typed name still works)
    run = run_host(tmp_path / "d", None, params={"servers": f"127.0.0.1:{closed_port}", "model": "landis"})
    p = run.report["instances"][0]["params"]
    assert p["modelMenu.options"][1] == "hdrcnn-lite" and p["model"] == "landis"  # the fallback list
    assert p["modelMenu.options"][p["modelMenu"]] == "landis"
    assert run.errors() == []


# ------------------------------------------------------------------------------ rendering
@pytest.mark.parametrize("model,depth,channels,layout", [
    ("inverse-crf", "short", 3, "tiles"),
    ("landis", "byte", 4, "full"),
    ("hdrcnn-lite", "float", 4, "tiles-negative"),
])
def test_render_equals_hdr_image_on_the_same_pixels(tmp_path, server, model, depth, channels, layout):
    h, w = (40, 56) if model == "hdrcnn-lite" else (90, 120)
    straight = straight_image(h, w, seed=3)
    codes = quantise(straight, "byte" if depth == "byte" else "short")  # what hdr-image reads
    values = codes.astype(np.float32) / (255.0 if depth == "byte" else 65535.0)
    if depth == "float":
        pixels = values
    else:
        pixels = codes
    premult = "opaque"
    alpha = None
    if channels == 4:
        rng = np.random.default_rng(7)
        if depth == "byte":  # 8-bit premultiplied would lose the colour: straight alpha
            alpha_codes = rng.integers(1, 256, (h, w, 1)).astype(np.uint8)
            pixels = np.concatenate([codes, alpha_codes], -1)
            alpha = alpha_codes[..., 0].astype(np.float32) / 255.0
            premult = "unpremult"
        else:
            alpha = (0.25 + 0.75 * rng.random((h, w, 1))).astype(np.float32)
            pixels = np.concatenate([values * alpha, alpha], -1)  # premultiplied float
            alpha = alpha[..., 0]
            premult = "premult"
    tiles = (32, 24) if layout.startswith("tiles") else None
    extra = ["negative_rows 1"] if layout.endswith("negative") else []
    run = run_host(tmp_path / "ofx", pixels, depth=depth, premult=premult, tiles=tiles, parallel=bool(tiles),
                   params={"servers": server, "model": model}, extra=extra + ["threads 3"])
    assert run.report["problems"] == [] and run.errors() == []
    assert set(run.render_status()) == {0}
    assert run.report["instances"][0]["roi"]["source"] == [0, 0, w, h]  # the whole frame is asked for
    assert run.report["live_allocations"] == 0 and run.report["live_images"] == 0
    out = run.output
    assert out.shape == (h, w, channels) and np.isfinite(out).all()
    ref = hdr_image(tmp_path / "ref", codes, model)
    rgb = out[..., :3]
    if channels == 4:
        np.testing.assert_array_equal(out[..., 3], alpha)  # alpha passes through untouched
        if premult == "premult":
            assert run.report["instances"][0]["clip_prefs"]["output_premult"] == "OfxImageAlphaPremultiplied"
            close_to_half(rgb, ref["rgb"] * alpha[..., None])
            return
    close_to_half(rgb, ref["rgb"])


def test_mask_in_alpha_is_the_reconstruction_mask_unpremultiplied(tmp_path, server):
    straight = straight_image(48, 64, seed=5)
    codes = quantise(straight, "short")
    run = run_host(tmp_path / "ofx", codes, depth="short", premult="opaque",
                   params={"servers": server, "model": "landis", "maskInAlpha": 1})
    assert set(run.render_status()) == {0} and run.errors() == []
    prefs = run.report["instances"][0]["clip_prefs"]
    assert prefs["output_components"] == "OfxImageComponentRGBA"  # RGB in, RGBA out: the mask needs a place
    assert prefs["output_premult"] == "OfxImageAlphaUnPremultiplied"
    ref = hdr_image(tmp_path / "ref", codes, "landis", "--mask-layer")
    close_to_half(run.output[..., :3], ref["rgb"])
    close_to_half(run.output[..., 3], ref["mask"])
    assert run.output[..., 3].max() > 0.5 and run.output[..., 3].min() == 0.0  # clipped block vs the rest


def test_tiles_in_parallel_equal_the_full_frame_and_output_spaces(tmp_path, server):
    img = straight_image(75, 101, seed=9)
    full = run_host(tmp_path / "full", img, premult="opaque",
                    params={"servers": server, "model": "inverse-crf", "outputSpace": 1})  # Linear Rec.709
    tiled = run_host(tmp_path / "tiles", img, premult="opaque", tiles=(16, 16), parallel=True,
                     params={"servers": server, "model": "inverse-crf", "outputSpace": 1}, extra=["threads 4"])
    assert set(full.render_status()) == {0} and set(tiled.render_status()) == {0}
    assert len(tiled.render_status()) == 7 * 5
    np.testing.assert_array_equal(tiled.output, full.output)
    want = reference(server, img, model="inverse-crf", output_space="lin_rec709").hdr
    np.testing.assert_array_equal(full.output, want)
    assert full.report["multithread_calls"] > 0 and full.report["max_threads"] > 1  # the host's threads did work


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (7, 1), (13, 11)])
def test_odd_sizes(tmp_path, server, h, w):
    img = straight_image(h, w, seed=h * 100 + w)
    run = run_host(tmp_path, img, premult="opaque", tiles=(4, 4), params={"servers": server, "model": "inverse-crf"})
    assert set(run.render_status()) == {0} and run.errors() == []
    np.testing.assert_array_equal(run.output, reference(server, img, model="inverse-crf").hdr)


def test_a_frame_larger_than_one_message_goes_through_the_stream(tmp_path, server):
    img = straight_image(420, 700, seed=11)  # 3.5 MB of float RGB: more than one 1 MiB message
    run = run_host(tmp_path, img, premult="opaque", params={"servers": server, "model": "inverse-crf"})
    assert set(run.render_status()) == {0} and run.errors() == []
    np.testing.assert_array_equal(run.output, reference(server, img, model="inverse-crf").hdr)


def test_input_space_from_the_host_and_a_host_without_multiple_depths(tmp_path, server):
    img = straight_image(24, 32, seed=13)
    codes = quantise(img, "byte")
    run = run_host(tmp_path, codes, depth="byte", premult="opaque", params={"servers": server, "model": "inverse-crf"},
                   extra=["colourspace lin_rec709", "multiple_depths 0"])
    assert set(run.render_status()) == {0} and run.errors() == [] and run.report["problems"] == []
    assert run.report["instances"][0]["clip_prefs"]["source_depth"] == "OfxBitDepthFloat"
    want = reference(server, codes.astype(np.float32) / 255.0, model="inverse-crf", input_space="lin_rec709").hdr
    np.testing.assert_allclose(run.output, want, rtol=1e-6, atol=1e-7)


def test_two_instances_render_at_once_in_the_general_context(tmp_path, server):
    img = straight_image(64, 80, seed=17)
    run = run_host(tmp_path, img, premult="opaque", instances=2, tiles=(40, 32), parallel=True,
                   params={"servers": server, "model": "landis"}, extra=["context general"])
    want = reference(server, img, model="landis").hdr
    for i in range(2):
        assert set(run.render_status(i)) == {0}
        np.testing.assert_array_equal(run.outputs[i], want)
    assert run.errors() == []


# ------------------------------------------------------------------------------ hostile cases
def one_error(run) -> str:
    errs = run.errors()
    assert len(errs) >= 1 and len(set(errs)) == 1, run.report["messages"]
    assert "\n" not in errs[0] and errs[0].startswith("hdrlift: ")
    return errs[0]


def test_server_down_fails_with_one_line_and_no_hang(tmp_path, closed_port):
    img = straight_image(16, 16)
    run = run_host(tmp_path, img, premult="opaque",
                   params={"servers": f"127.0.0.1:{closed_port}", "model": "inverse-crf", "timeout": 20})
    assert run.render_status() == [1]  # kOfxStatFailed
    assert f"server 127.0.0.1:{closed_port}: UNAVAILABLE" in one_error(run)
    assert run.seconds < 20
    assert (run.output == -7.0).all()  # nothing written


def test_several_servers_fail_over_to_the_one_that_answers(tmp_path, server, closed_port):
    """As the Python client: one channel round-robin over the addresses, a dead one skipped."""
    img = straight_image(20, 30, seed=19)
    servers = f"127.0.0.1:{closed_port},{server}"
    run = run_host(tmp_path, img, premult="opaque", instances=2,
                   params={"servers": servers, "model": "inverse-crf", "timeout": 30})
    want = reference(server, img, model="inverse-crf").hdr
    for i in range(2):
        assert run.render_status(i) == [0]
        np.testing.assert_array_equal(run.outputs[i], want)
    assert run.errors() == []


def test_unknown_model_and_unknown_colour_space(tmp_path, server):
    img = straight_image(8, 8)
    run = run_host(tmp_path / "m", img, premult="opaque", params={"servers": server, "model": "nope"})
    assert run.render_status() == [1] and "NOT_FOUND: unknown model 'nope'" in one_error(run)
    run = run_host(tmp_path / "c", img, premult="opaque",
                   params={"servers": server, "outputSpace": 5, "outputSpaceName": "no-such-space"})
    assert run.render_status() == [1] and "NOT_FOUND" in one_error(run)


def test_token_and_tls(tmp_path, secure_server):
    address, token, ca = secure_server
    img = straight_image(12, 10)
    good = run_host(tmp_path / "ok", img, premult="opaque",
                    params={"servers": address, "tokenFile": token, "caFile": ca, "model": "inverse-crf"})
    assert set(good.render_status()) == {0} and good.errors() == []
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token\n")
    bad = run_host(tmp_path / "bad", img, premult="opaque",
                   params={"servers": address, "tokenFile": wrong, "caFile": ca, "timeout": 20})
    assert bad.render_status() == [1] and "UNAUTHENTICATED" in one_error(bad)
    plain = run_host(tmp_path / "plain", img, premult="opaque",
                     params={"servers": address, "tokenFile": token, "timeout": 20})  # no CA: plaintext to TLS
    assert plain.render_status() == [1] and "UNAVAILABLE" in one_error(plain)
    missing = run_host(tmp_path / "missing", img, premult="opaque",
                       params={"servers": address, "tokenFile": tmp_path / "nope", "caFile": ca})
    assert missing.render_status() == [1] and "cannot read token file" in one_error(missing)


def test_timeout_fails_at_the_deadline(tmp_path, blackhole):
    img = straight_image(16, 16)
    run = run_host(tmp_path, img, premult="opaque", params={"servers": blackhole.address, "timeout": 1.5})
    assert run.render_status() == [1]
    assert "DEADLINE_EXCEEDED" in one_error(run)
    assert blackhole.arrived.is_set() and blackhole.ended.wait(30)
    assert 1.4 < run.report["instances"][0]["render_ms"] / 1000 < 1.5 + 3.0


@pytest.mark.parametrize("size", [(16, 16), (420, 700)])  # unary call; stream
def test_abort_mid_render_cancels_the_call(tmp_path, blackhole, size):
    trigger = tmp_path / "abort-now"
    blackhole.trigger = trigger  # the frame has reached the server: the host asks to abort
    img = straight_image(*size)
    run = run_host(tmp_path, img, premult="opaque", extra=[f"abort_file {trigger}"],
                   params={"servers": blackhole.address, "timeout": 120})
    assert run.render_status() == [0]  # abandoned at the host's request: no failure, no message
    assert run.errors() == []
    assert blackhole.ended.wait(30)  # the server saw the call cancelled
    assert run.report["instances"][0]["render_ms"] < 60_000
    assert (run.output == -7.0).all()


def test_host_own_grpc_and_protobuf_keep_working_beside_the_plugin(tmp_path, server):
    """The test host links the system's libgrpc++/libprotobuf (global symbols) and uses them
    before loading the bundle and after rendering; LD_DEBUG shows no symbol of either copy
    bound to the other."""
    img = straight_image(20, 24)
    log = tmp_path / "ld"
    run = run_host(tmp_path, img, premult="opaque", params={"servers": server, "model": "inverse-crf"},
                   extra=[f"host_grpc {server}"], env={"LD_DEBUG": "bindings", "LD_DEBUG_OUTPUT": str(log)})
    r = run.report
    assert r["host_grpc_before"] == "SERVING" and r["host_grpc_after"] == "SERVING"
    assert set(run.render_status()) == {0}
    np.testing.assert_array_equal(run.output, reference(server, img, model="inverse-crf").hdr)
    mapped = r["mapped"]
    system = [m for m in mapped if "/libgrpc++.so" in m and "hdrlift" not in m]
    ours = [m for m in mapped if m.endswith("/libhdrlift-grpc++.so.1.51")]
    assert system and ours  # two copies of gRPC in one process
    text = "".join(p.read_text(errors="replace") for p in tmp_path.glob("ld.*"))
    bundle_dir = str(PRIVATE.parent)
    rpc = re.compile(r"lib(grpc|gpr|upb|protobuf|absl_|ssl|crypto|re2|cares|address_sorting)")
    crossings = []
    bound = 0
    for m in re.finditer(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: \S+ symbol `([^']+)'", text):
        src, dst, sym = m.groups()
        src_ours, dst_ours = src.startswith(bundle_dir), dst.startswith(bundle_dir)
        bound += src_ours
        if src_ours and not dst_ours and rpc.search(pathlib.Path(dst).name):
            crossings.append((src, dst, sym))
        if not src_ours and dst_ours:
            crossings.append((src, dst, sym))
    assert bound > 100, "LD_DEBUG recorded no binding of the bundle's libraries"
    assert crossings == [], crossings[:5]


def test_the_test_host_links_the_system_grpc_and_protobuf():
    """The clash test above means something only if ofxtesthost really has the system's gRPC
    and protobuf loaded with global symbols."""
    dyn = subprocess.run(["readelf", "-d", str(HOST)], capture_output=True, text=True, check=True).stdout
    assert "libgrpc++.so.1.51" in dyn and "libprotobuf.so.32" in dyn
