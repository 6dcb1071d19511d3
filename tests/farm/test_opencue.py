"""OpenCue: a pyoutline job with one Shell layer per chunk, serialised by pyoutline's own
serialiser into Cuebot's job spec XML. Cuebot (Java, PostgreSQL) is not run here; instead each
layer's command is run as RQD would run it (through a shell), and the frames must equal one plain
hdr-video run byte for byte."""

from __future__ import annotations

import shlex
import subprocess
import xml.etree.ElementTree as ET

import pytest
from farm_helpers import assert_same_bytes, exe

pytest.importorskip("outline", reason="opencue-pyoutline is not installed (pip install -e '.[farm]')")

from hdrlift.engine.farm.cli import main  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def test_outline_has_one_layer_per_chunk_and_its_commands_reproduce_hdr_video(
        clip, reference_icrf, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # pyoutline must leave no session folder behind
    out = tmp_path / "out" / "shot.####.exr"
    spec_file = tmp_path / "job.xml"
    rc = main(["opencue", str(clip), str(out), "--chunk", "7", "--model", "inverse-crf", "--show", "demo",
               "--shot", "sh010", "--user", "artist", "--service", "hdrlift", "--tags", "gpu | linux",
               "--hdr-video", exe("hdr-video"), "-o", str(spec_file)])
    assert rc == 0, capsys.readouterr().err
    assert "2 layers, frames 1-12" in capsys.readouterr().out
    text = spec_file.read_text()
    assert text.startswith('<?xml version="1.0"?><!DOCTYPE spec PUBLIC "SPI Cue  Specification Language"')
    assert "cjsl-1.15.dtd" in text
    assert not (tmp_path / "home").exists()

    spec = ET.fromstring(text.split("?>", 1)[1].split(">", 1)[1])  # past the XML and DOCTYPE lines
    assert (spec.findtext("show"), spec.findtext("shot"), spec.findtext("user")) == ("demo", "sh010", "artist")
    job = spec.find("job")
    assert job.get("name") == f"hdrlift_{clip.stem}"
    layers = job.findall("layers/layer")
    assert [layer.get("name") for layer in layers] == ["frames_0001_0007", "frames_0008_0012"]
    for layer, (first, last) in zip(layers, [(1, 7), (8, 12)]):
        assert layer.get("type") == "Render"
        # one dispatched frame per layer: the layer's range in one chunk
        assert layer.findtext("range") == f"{first}-{last}"
        assert layer.findtext("chunk") == str(last - first + 1)
        assert layer.findtext("services/service") == "hdrlift"
        assert layer.findtext("tags") == "gpu | linux"
        argv = shlex.split(layer.findtext("cmd"))
        assert argv[:3] == [exe("hdr-video"), str(clip), str(out)]
        assert argv[argv.index("--frames") + 1] == f"{first}-{last}" and "--resume" in argv
        assert argv[argv.index("--model") + 1] == "inverse-crf" and "--server" not in argv
    assert job.find("layers/layer/cmd").text.count("pycuerun") == 0  # commands run as they are

    for layer in layers:  # as RQD runs a frame: the command through a shell
        r = subprocess.run(["/bin/sh", "-c", layer.findtext("cmd")], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    assert_same_bytes(out.parent, reference_icrf, 12)


def test_outline_with_servers_and_refusals(clip, tmp_path, capsys):
    from hdrlift.engine.farm import opencue, plan

    conv = plan(clip, tmp_path / "o", frames="3-4", chunk=10, model="inverse-crf", server="gpu1:50051,gpu2:50051",
                session_allowed=False)
    ol = opencue.build_outline(conv, gpus=1, memory="8g", cores=2)
    spec = opencue.serialize(ol, pause=True, priority=50)
    job = ET.fromstring(spec.split("?>", 1)[1].split(">", 1)[1]).find("job")
    assert job.findtext("paused") == "True" and job.findtext("priority") == "50"
    (layer,) = job.findall("layers/layer")
    assert layer.get("name") == "frames_0003_0004" and layer.findtext("range") == "3-4"
    assert (layer.findtext("gpus"), layer.findtext("memory"), layer.findtext("cores")) == ("1", "8g", "2.0")
    argv = shlex.split(layer.findtext("cmd"))
    assert argv[argv.index("--server") + 1] == "gpu1:50051,gpu2:50051" and "--device" not in argv
    assert argv[2] == str(tmp_path / "o" / f"{clip.stem}.####.exr")

    # OpenCue has no worker sessions: no session server
    assert main(["opencue", str(clip), str(tmp_path / "o"), "--server", "session"]) == 2
    err = capsys.readouterr().err
    assert err == "hdrlift-farm: error: --server session needs worker sessions (OpenJD); give HOST:PORT " \
                  "addresses or none\n"
