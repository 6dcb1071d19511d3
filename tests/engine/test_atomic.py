"""engine/atomic.py: the one write-then-rename helper every non-EXR writer uses."""

from __future__ import annotations

import pytest

from hdrlift.engine.atomic import atomic_write_bytes, atomic_write_text, replacing


def test_write_creates_folder_and_leaves_no_temporary(tmp_path):
    out = atomic_write_text(tmp_path / "a" / "b.json", "{}\n")
    assert out.read_text() == "{}\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["b.json"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "plan.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with replacing(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.bin"]


def test_written_files_get_the_usual_permissions(tmp_path):
    """Like any new file (0666 less the umask), not mkstemp's 0600: an exported model or shipped
    weights on a shared farm disk stay readable by the other users."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = atomic_write_bytes(tmp_path / "model.onnx", b"x")
        with replacing(tmp_path / "plan.engine") as tmp:
            tmp.write_bytes(b"y")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "plan.engine").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "plan.engine"]
