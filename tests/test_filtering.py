"""Filters on triangulated synthetic walking: error against truth, jitter, NaN handling, bone lengths."""

import numpy as np
import pytest
from mocap_studio.reconstruction.filtering import FilterConfig, bone_lengths, butterworth, kalman_rts, one_euro, smooth
from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33
from mocap_studio.reconstruction.synthetic import make_scene
from mocap_studio.reconstruction.triangulate import triangulate

FPS = 30.0


@pytest.fixture(scope="module")
def walk():
    scene = make_scene(num_frames=120, frame_rate=FPS, seed=2)
    return triangulate(scene.rig, scene.keypoints).xyz, scene.truth


def _mpjpe(xyz, truth):
    return float(np.nanmean(np.linalg.norm(xyz - truth, axis=-1)) * 1000)


def _jitter(xyz, truth):
    """Mean acceleration error in m/s^2."""
    return float(np.nanmean(np.linalg.norm(np.diff(xyz - truth, 2, axis=0), axis=-1)) * FPS**2)


def test_filters_reduce_error_and_jitter(walk):
    xyz, truth = walk
    raw_err, raw_jit = _mpjpe(xyz, truth), _jitter(xyz, truth)
    results = {
        "butterworth": butterworth(xyz, FPS),
        "kalman": kalman_rts(xyz, FPS),
        "one_euro": one_euro(xyz, FPS),
        "default": smooth(xyz, FPS, "blazepose33"),
    }
    assert _mpjpe(results["butterworth"], truth) < 0.8 * raw_err
    assert _mpjpe(results["kalman"], truth) < 0.85 * raw_err
    assert _mpjpe(results["default"], truth) < 0.75 * raw_err
    # One-Euro is causal and adaptive: it trades less smoothing for no look-ahead
    bounds = {"butterworth": 0.3, "kalman": 0.6, "one_euro": 0.8, "default": 0.3}
    for name, out in results.items():
        assert out.shape == xyz.shape
        assert _jitter(out, truth) < bounds[name] * raw_jit, name


def test_missing_points_stay_missing(walk):
    xyz = np.array(walk[0])
    xyz[40:60, 3] = np.nan
    xyz[:, 5] = np.nan
    for f in (butterworth, kalman_rts, one_euro):
        out = f(xyz, FPS)
        assert np.isnan(out[40:60, 3]).all() and np.isnan(out[:, 5]).all()
        assert np.isfinite(out[:40, 3]).all() and np.isfinite(out[60:, 3]).all()


def test_bone_lengths_become_constant(walk):
    xyz, truth = walk
    seg = np.array(BLAZEPOSE_33.rigid_segments)
    spread = lambda x: np.nanstd(np.linalg.norm(x[:, seg[:, 1]] - x[:, seg[:, 0]], axis=-1), axis=0).mean()  # noqa: E731
    out = bone_lengths(xyz, "blazepose33")
    assert spread(out) < 0.2 * spread(xyz)
    assert _mpjpe(out, truth) < _mpjpe(xyz, truth)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\(T, J, 3\)"):
        butterworth(np.zeros((10, 3)), FPS)
    with pytest.raises(ValueError, match="method"):
        FilterConfig(method="median")
    with pytest.raises(ValueError, match="33"):
        bone_lengths(np.zeros((5, 17, 3)), "blazepose33")
