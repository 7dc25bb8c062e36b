"""Calibration refinement from a moving subject's keypoints: synthetic truth and the real 12-camera mouse
recording from aniposelib."""

from pathlib import Path

import numpy as np
import pytest
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.calibration.compare import compare_rigs
from mocap_studio.calibration.formats import read_calibration
from mocap_studio.calibration.refine import RefineConfig, refine_with_keypoints
from mocap_studio.calibration.simulate import ring_rig
from mocap_studio.cli import main
from mocap_studio.common.rotations import rotvec_to_rotmat
from mocap_studio.stages_calibration import dlt_triangulator

MOUSE = Path(__file__).resolve().parents[2] / "shared" / "data" / "aniposelib_mouse_12cam"


def _perturbed(rig: CameraRig, seed: int, deg: float, metres: float) -> CameraRig:
    rng = np.random.default_rng(seed)
    cams = [rig.cameras[0]]
    for cam in rig.cameras[1:]:
        dR = rotvec_to_rotmat(np.radians(deg) * rng.normal(size=3) / np.sqrt(3))
        cams.append(cam.replace(R=dR @ cam.R, t=cam.t + metres * rng.normal(size=3)))
    return CameraRig(tuple(cams))


def test_refinement_recovers_a_perturbed_rig_from_a_moving_subject():
    truth = ring_rig(6, seed=4)
    rng = np.random.default_rng(0)
    # a subject moving through the volume: 3000 points between 0.1 and 1.9 m high
    points = np.c_[rng.uniform(-1, 1, (3000, 2)), rng.uniform(0.1, 1.9, 3000)]
    uv = truth.project(points) + rng.normal(0, 1.0, (6, 3000, 2))
    uv[:, rng.random(3000) < 0.3] = np.nan  # not every camera sees every point
    uv[~truth.cameras[0].in_image(uv[0])[None].repeat(6, 0)] = np.nan
    start = _perturbed(truth, seed=1, deg=2.0, metres=0.05)
    result = refine_with_keypoints(start, uv, dlt_triangulator, RefineConfig(max_points=2000))
    assert result.median_error_before_px > 5
    assert result.median_error_after_px < 1.2  # ~ the 1 px noise
    # keypoints fix no scale: the refined rig keeps the starting rig's (slightly wrong) scale
    before = compare_rigs(start, truth, with_scale=True)
    after = compare_rigs(result.rig, truth, with_scale=True)
    assert after.rotation_error_deg.max() < before.rotation_error_deg.max() / 5
    assert after.centre_error_m.max() < 0.01


def test_refinement_needs_shared_observations():
    truth = ring_rig(3, seed=4)
    uv = np.full((3, 100, 2), np.nan)
    with pytest.raises(ValueError, match="fewer than 50 keypoints"):
        refine_with_keypoints(truth, uv, dlt_triangulator)
    with pytest.raises(ValueError, match="uv must have shape"):
        refine_with_keypoints(truth, np.zeros((2, 100, 2)), dlt_triangulator)


@pytest.mark.skipif(not MOUSE.exists(), reason=f"real data not present at {MOUSE} (../shared/data)")
def test_mouse_12_cameras_refine_from_keypoints(tmp_path, capsys):
    calibration = MOUSE / "calibration_right_4_10_2026_adjusted.toml"
    out = tmp_path / "refined.toml"
    assert main(["calibrate", "--refine", str(MOUSE / "points_right_4_10_2026_sub.npz"), "--intrinsics",
                 str(calibration), "--out", str(out), "--max-points", "2000"]) == 0
    text = capsys.readouterr().out
    assert "median reprojection error" in text
    start, refined = read_calibration(calibration), read_calibration(out)
    assert refined.names == start.names  # 12 cameras, names kept, natural order
    uv = np.load(MOUSE / "points_right_4_10_2026_sub.npz")["p2d"]
    err_before = np.linalg.norm(start.project(dlt_triangulator(start, uv)) - uv, axis=-1)
    err_after = np.linalg.norm(refined.project(dlt_triangulator(refined, uv)) - uv, axis=-1)
    # measured here: median 32.4 px before, about 1.6 px after
    assert np.nanmedian(err_before) > 20
    assert np.nanmedian(err_after) < 3.0
    per_camera_after = np.nanmedian(err_after, axis=1)
    assert (per_camera_after < 10).sum() >= 9
    # the refinement keeps the world frame and scale of the starting calibration
    assert np.abs(refined.centers - start.centers).max() < 0.5
