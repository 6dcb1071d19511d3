"""The warping error (Lai et al. 2018) on synthetic motion whose answer is known: a translated
texture, the same clip with per-frame flicker, and an object that uncovers the background."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from hdrlift.engine.sample import _value_noise  # noqa: E402
from hdrlift.training import temporal as T  # noqa: E402

H, W = 96, 128


@pytest.fixture(scope="module")
def texture():
    rng = np.random.default_rng(1)
    n = _value_noise(rng, 200, 300, 8, 5)
    return np.stack([n, n ** 1.5, 0.5 * n + 0.3 * n[::-1]], -1).astype(np.float32)


def pan(texture, frames=6, dx=3, dy=2):
    """Camera moving right by dx and down by dy pixels per frame."""
    return [np.ascontiguousarray(texture[20 + dy * t:20 + dy * t + H, 30 + dx * t:30 + dx * t + W])
            for t in range(frames)]


def test_flow_of_a_pan_is_the_shift_and_the_entering_strip_is_masked(texture):
    pairs = T.input_flows(pan(texture))
    assert len(pairs) == 5
    for p in pairs:
        assert p.flow.shape == (H, W, 2)
        np.testing.assert_allclose(np.median(p.flow[p.mask], axis=0), (3.0, 2.0), atol=0.05)
        # the last 3 columns and 2 rows of frame t were outside frame t-1
        assert not p.mask[:, -3:].any() and not p.mask[-2:, :].any()
        assert p.mask[:-4, :-5].mean() > 0.95


def test_identity_model_scores_near_zero_and_flicker_scores_high(texture):
    frames = pan(texture)
    pairs = T.input_flows(frames)
    lin = [T.srgb_to_linear(f) for f in frames]
    steady, per = T.warping_error([T.pq_encode(x) for x in lin], pairs)
    assert len(per) == 5 and steady < 1e-6
    gains = [1.0, 1.05, 0.96, 1.04, 0.95, 1.05]  # +-5 % per-frame exposure flicker
    flicker, _ = T.warping_error([T.pq_encode(x * g) for x, g in zip(lin, gains)], pairs)
    assert flicker > 100 * steady and flicker > 1e-5
    # a constant exposure change (no flicker) costs nothing
    same, _ = T.warping_error([T.pq_encode(x * 2.0) for x in lin], pairs)
    assert same < 1e-6


def test_occlusion_mask_excludes_the_disoccluded_strip(texture):
    bg = texture[:H, :W].copy()
    obj = texture[100:132, 200:232][:, :, ::-1].copy()
    frames = []
    for t in range(2):
        f = bg.copy()
        x = 30 + 8 * t  # the object moves 8 px right: columns 30-37 are uncovered in frame 1
        f[30:62, x:x + 32] = obj
        frames.append(f)
    (pair,) = T.input_flows(frames)
    assert pair.mask[30:62, 30:38].mean() < 0.1
    assert pair.mask[34:58, 44:64].mean() > 0.95  # the object itself is tracked
    assert pair.mask[70:, 8:-8].mean() > 0.95  # and the static background
    # the forward-backward test alone lets part of the strip through; the motion-boundary test closes it
    fb_only = T.occlusion_mask(pair.flow, T.dis_flow(T.luma8(frames[0]), T.luma8(frames[1])),
                               motion_boundaries=False)
    assert fb_only[30:62, 30:38].mean() > pair.mask[30:62, 30:38].mean()


def test_error_definition_on_a_known_pair():
    """Zero flow, full mask: E_warp is the mean over pixels of the squared RGB distance."""
    cur = np.zeros((4, 4, 3), np.float32)
    prev = np.zeros((4, 4, 3), np.float32)
    prev[0, 0] = (0.1, 0.2, 0.2)  # ||d||^2 = 0.09 at one of 16 pixels
    pair = T.FlowPair(np.zeros((4, 4, 2), np.float32), np.ones((4, 4), bool))
    assert T.pair_warping_error(cur, prev, pair) == pytest.approx(0.09 / 16, rel=1e-5)
    pair.mask[0, 0] = False
    assert T.pair_warping_error(cur, prev, pair) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="flow pairs"):
        T.warping_error([cur, prev, cur], [pair])


def test_pq_encode_puts_white_at_203_nits():
    assert T.pq_encode(np.ones((1, 1, 3)))[0, 0, 0] == pytest.approx(0.5807, abs=1e-4)
    assert T.pq_encode(np.zeros((1, 1, 3)))[0, 0, 0] < 1e-6


def test_stabiliser_removes_injected_highlight_flicker_and_keeps_the_rest(texture):
    frames = pan(texture, frames=8)
    pairs = T.input_flows(frames)
    lin = [T.srgb_to_linear(f) for f in frames]
    rng = np.random.default_rng(3)
    outs = []
    for x in lin:  # a "model" that expands the bright half of the picture by a flickering gain
        gain = np.where((x @ T.LUMA709) > np.median(x @ T.LUMA709), 4.0 * (1 + 0.1 * rng.standard_normal()), 1.0)
        outs.append(x * gain[..., None].astype(np.float32))
    raw, _ = T.warping_error([T.pq_encode(o) for o in outs], pairs)
    fixed = T.stabilise_expansion(lin, outs, pairs, strength=0.6)
    stable, _ = T.warping_error([T.pq_encode(o) for o in fixed], pairs)
    assert stable < 0.5 * raw
    np.testing.assert_array_equal(fixed[0], outs[0])  # the first frame has no history
    dark = (lin[5] @ T.LUMA709) < 0.5 * np.median(lin[5] @ T.LUMA709)
    np.testing.assert_allclose(fixed[5][dark], outs[5][dark], rtol=1e-4)  # unexpanded pixels untouched
    with pytest.raises(ValueError, match="strength"):
        T.stabilise_expansion(lin, outs, pairs, strength=1.0)


def test_hdrlift_eval_video_reports_each_model_beside_the_input(sample_clip, tmp_path, capsys):
    """``hdrlift-eval --video``: the table has the input's own row; the inverse camera curve (no
    expansion) flickers exactly as the input does."""
    import json

    from hdrlift.training.evaluate import main

    out = tmp_path / "video.json"
    assert main(["--models", "inverse-crf,landis", "--video", str(sample_clip), "--video-frames", "6",
                 "--json", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "| input |" in text and "| landis |" in text
    table = json.loads(out.read_text())
    assert table["models"] == ["input", "inverse-crf", "landis"]
    mean = table["mean"]
    assert mean["inverse-crf"]["full"] == pytest.approx(mean["input"]["full"], rel=1e-5)
    assert mean["landis"]["full"] > 0
