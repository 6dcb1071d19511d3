"""``torch.compile`` behind an option (``--compile``, ``PipelineOptions(compile=True)``): the torch
back end's; on the CPU it works (inductor, with the machine's C++ compiler) and computes what
eager torch computes; the back ends that are not torch refuse it in one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hdrlift.engine.backends import create_backend
from hdrlift.engine.errors import ModelError


def test_other_back_ends_refuse_compile(tmp_path):
    with pytest.raises(ModelError, match="torch back end"):
        create_backend("inverse-crf", kind="onnxruntime", device="cpu", cache_dir=tmp_path, compile=True)


def test_auto_with_compile_is_the_torch_back_end(tmp_path):
    be = create_backend("inverse-crf", kind="auto", device="cpu", cache_dir=tmp_path, compile=True)
    assert be.name == "torch" and be.compiled and be.describe()["compiled"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C++ compiler")
def test_compiled_network_equals_eager_on_the_cpu(tmp_path):
    x = np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32)
    compiled = create_backend("inverse-crf", kind="torch", device="cpu", cache_dir=tmp_path, compile=True).run(x)
    eager = create_backend("inverse-crf", kind="torch", device="cpu", cache_dir=tmp_path).run(x)
    for a, b in zip(compiled, eager):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
