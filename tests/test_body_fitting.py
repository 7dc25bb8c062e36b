"""Sequence fitting on synthetic takes with known truth (200 frames, 60 fps, 10 mm noise, 5 % outliers,
missing points), both models, bad inputs, and ``mocap fit`` end to end.

Acceptance numbers of issue 3 that the fitter does not reach yet are kept as strict xfail tests, so that
they flip to failures (and get promoted) the day they pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from body_fixtures import (
    crowd_keypoints,
    make_synthetic_smpl_arrays,
    noisy_keypoints,
    plausible_motion,
    write_synthetic_smpl,
)
from mocap_studio.reconstruction.body.anny_model import AnnyBody
from mocap_studio.reconstruction.body.fit_signals import _fill_nan
from mocap_studio.reconstruction.body.fitting import FitConfig, FitError, fit_sequence, foot_sliding_mm_s
from mocap_studio.reconstruction.body.measurements import measure_body
from mocap_studio.reconstruction.keypoints import Keypoints3D
from scipy.signal import butter, filtfilt

FPS = 60.0


@pytest.fixture(scope="module")
def anny() -> AnnyBody:
    torch.set_num_threads(2)
    return AnnyBody()


def _take(model, seed: int = 3, noise: float = 0.01, outliers: float = 0.05):  # noqa: ANN001, ANN202
    rng = np.random.default_rng(seed)
    shape = model.random_shape(rng)
    pose, trans, sole = plausible_motion(model, shape, 200, FPS, seed)
    clean = model.keypoints(shape, pose, trans, "blazepose33")
    kp = noisy_keypoints(clean, seed, noise_m=noise, outliers=outliers, missing=0.03 if noise else 0.0)
    return shape, pose, trans, clean, kp


def _scores(model, take, res) -> dict:  # noqa: ANN001
    shape, pose, trans, clean, kp = take
    fit = model.keypoints(res.shape, res.pose_rotvec, res.trans, "blazepose33")
    vt = model.evaluate(shape, pose, trans).vertices
    vf = model.evaluate(res.shape, res.pose_rotvec, res.trans).vertices
    mt, mf = measure_body(model, shape), measure_body(model, res.shape)
    girths = ("chest_circumference", "waist_circumference", "hip_circumference", "thigh_circumference",
              "neck_circumference")

    def acc(x: np.ndarray) -> np.ndarray:
        return x[2:] - 2 * x[1:-1] + x[:-2]

    b, a = butter(4, 6.0 / (FPS / 2))
    filtered = filtfilt(b, a, _fill_nan(kp.xyz), axis=0)
    # the left foot is planted for the whole take (heel and toe keypoints)
    feet = [kp.format.joints.index(n) for n in ("left_heel", "left_foot_index")]
    return {
        "mpjpe_mm": np.linalg.norm(fit - clean, axis=-1).mean() * 1000,
        "pve_mm": np.linalg.norm(vt - vf, axis=-1).mean() * 1000,
        "height_mm": abs(mf.height - mt.height) * 1000,
        "girth_mm": max(abs(getattr(mf, g) - getattr(mt, g)) for g in girths) * 1000,
        "jitter_fit": np.linalg.norm(acc(fit) - acc(clean), axis=-1).mean() * FPS**2,
        "jitter_butterworth": np.linalg.norm(acc(filtered) - acc(clean), axis=-1).mean() * FPS**2,
        "sliding_mm_s": foot_sliding_mm_s(fit[:, feet], np.ones((len(fit), 2), bool), FPS),
        "sliding_truth_mm_s": foot_sliding_mm_s(clean[:, feet], np.ones((len(fit), 2), bool), FPS),
    }


@pytest.fixture(scope="module")
def anny_scores(anny) -> dict:
    take = _take(anny)
    return _scores(anny, take, fit_sequence(anny, take[4], FitConfig(), frame_rate=FPS))


@pytest.fixture(scope="module")
def smpl_model(anny, tmp_path_factory):  # noqa: ANN001, ANN201
    from mocap_studio.reconstruction.body.smpl_model import load_smpl

    root = tmp_path_factory.mktemp("models")
    write_synthetic_smpl(root / "smpl" / "SMPL_NEUTRAL.pkl", make_synthetic_smpl_arrays(anny))
    return load_smpl(root)


def test_anny_fit_pose_accuracy(anny_scores):
    # measured 4.5 mm MPJPE, 8.8 mm per vertex (acceptance 15 and 20)
    assert anny_scores["mpjpe_mm"] <= 15.0, anny_scores
    assert anny_scores["pve_mm"] <= 20.0, anny_scores


@pytest.fixture(scope="module")
def anny_clean_scores(anny) -> dict:
    take = _take(anny, noise=0.0, outliers=0.0)
    return _scores(anny, take, fit_sequence(anny, take[4], FitConfig(), frame_rate=FPS))


def test_anny_fit_shape_noise_free(anny_clean_scores):
    # measured: height 1.0 mm, girths within 7.1 mm, 1.6 mm per vertex
    assert anny_clean_scores["height_mm"] <= 2.0 and anny_clean_scores["girth_mm"] <= 10.0, anny_clean_scores


@pytest.mark.xfail(
    strict=True,
    reason="the shape prior pulls muscle (which keypoints hardly see) towards the average: girths 7.1 mm off",
)
def test_anny_fit_shape_noise_free_acceptance(anny_clean_scores):
    assert anny_clean_scores["girth_mm"] <= 2.0, anny_clean_scores


@pytest.mark.xfail(
    strict=True,
    reason="below the Cramer-Rao bound of 3D keypoints with 10 mm noise and unknown poses (benchmarks/"
    "shape_information.py: sd 14-38 mm of height, 74-270 mm of girth): measured (seeds 3, 5, 7, 9) height 12, 15, "
    "27, 2 mm, girths 95-125 mm",
)
def test_anny_fit_shape_acceptance(anny_scores):
    assert anny_scores["height_mm"] <= 5.0 and anny_scores["girth_mm"] <= 10.0, anny_scores


def test_anny_fit_jitter(anny_scores):
    # the fit is no jerkier than the noisy keypoints after the reference Butterworth filter
    assert anny_scores["jitter_fit"] <= anny_scores["jitter_butterworth"], anny_scores


def test_anny_fit_foot_sliding_acceptance(anny_scores):
    # the planted foot's heel and toe keypoints: measured 2.8 mm/s (seeds 5, 7, 9: 1.1, 3.2, 0.4); 68 mm/s
    # before the knee and ankle limits held the shin's twist
    assert anny_scores["sliding_mm_s"] <= 5.0 + anny_scores["sliding_truth_mm_s"], anny_scores


def test_smpl_fit_pose_accuracy(smpl_model):
    take = _take(smpl_model)
    res = fit_sequence(smpl_model, take[4], FitConfig(model="smpl"), frame_rate=FPS)
    s = _scores(smpl_model, take, res)
    assert res.model == "smpl" and res.pose_rotvec.shape == (200, 24, 3)
    assert s["mpjpe_mm"] <= 15.0, s


def test_foot_sliding_measure():
    pts = np.zeros((61, 1, 3))
    pts[:, 0, 0] = np.arange(61) * 0.001  # 1 mm per frame at 60 fps: 60 mm/s
    assert foot_sliding_mm_s(pts, np.ones((61, 1), bool), 60.0) == pytest.approx(60.0)
    assert foot_sliding_mm_s(pts, np.zeros((61, 1), bool), 60.0) == 0.0
    with pytest.raises(ValueError, match="contact"):
        foot_sliding_mm_s(pts, np.ones((5, 1), bool), 60.0)


def _kp(xyz: np.ndarray) -> Keypoints3D:
    T, K, _ = xyz.shape
    return Keypoints3D(xyz, np.ones((T, K)), np.ones((T, K, 2), bool), ("a", "b"), "blazepose33", np.arange(T) / FPS)


def test_bad_inputs(anny):
    with pytest.raises(FitError, match="no frame"):
        fit_sequence(anny, _kp(np.full((10, 33, 3), np.nan)), frame_rate=FPS)
    smpl24 = Keypoints3D(np.zeros((5, 24, 3)), np.ones((5, 24)), np.ones((5, 24, 1), bool), ("a",), "smpl24")
    with pytest.raises(FitError, match="skeleton"):
        fit_sequence(anny, smpl24, frame_rate=FPS)
    with pytest.raises(TypeError, match="Keypoints3D"):
        fit_sequence(anny, np.zeros((5, 33, 3)), frame_rate=FPS)  # type: ignore[arg-type]


def _session(tmp_path: Path, xyz: np.ndarray) -> Path:
    root = tmp_path / "take"
    root.mkdir()
    (root / "session.toml").write_text("[session]\nframe_rate = 60.0\n")
    _kp(xyz).save(root / "keypoints3d.npz")
    return root


def test_fit_command_end_to_end(anny, tmp_path):
    from mocap_studio.cli import main

    take = _take(anny, seed=5)
    root = _session(tmp_path, take[4].xyz[:80])
    assert main(["fit", str(root)]) == 0
    for name in ("body.npz", "body_rest.obj", "body_rest.ply", "measurements.json"):
        assert (root / name).exists(), name
    with np.load(root / "body.npz") as d:
        assert d["pose_rotvec"].shape == (80, anny.num_joints, 3) and str(d["model"]) == "anny"


def test_fit_command_bad_inputs_leave_no_outputs(tmp_path):
    from mocap_studio.cli import main

    root = _session(tmp_path, np.full((20, 33, 3), np.nan))
    assert main(["fit", str(root)]) != 0
    assert not (root / "body.npz").exists() and not (root / "measurements.json").exists()
    assert main(["fit", str(root), "--model", "smpl", "--model-dir", str(tmp_path / "none")]) != 0
    assert not (root / "body.npz").exists()


@pytest.mark.parametrize("seed", [2, 3])
def test_a_crowds_keypoints_are_fitted_with_the_tighter_kernel(anny, seed):
    """A crowd's keypoints err in runs (a hidden limb placed 8-25 cm off for up to 20 frames): the crowd's kernel
    (``crowd_robust_scale``) lets them go where the lone performer's pulls the body towards them."""
    rng = np.random.default_rng(seed)
    shape = anny.random_shape(rng)
    pose, trans, _ = plausible_motion(anny, shape, 90, 30.0, seed)
    clean = anny.keypoints(shape, pose, trans, "blazepose33")
    kp = crowd_keypoints(clean, seed)
    true_vertices = anny.evaluate(shape, pose, trans).vertices
    errors = {}
    for name, scale in (("lone", FitConfig().robust_scale), ("crowd", FitConfig().crowd_robust_scale)):
        res = fit_sequence(anny, kp, FitConfig(robust_scale=scale), frame_rate=30.0)
        fitted = anny.evaluate(res.shape, res.pose_rotvec, res.trans).vertices
        errors[name] = 1000 * np.linalg.norm(fitted - true_vertices, axis=-1).mean()
    errors["keypoints"] = 1000 * np.nanmean(np.linalg.norm(kp.xyz - clean, axis=-1))
    # measured per vertex, lone -> crowd kernel: seed 2 20.3 -> 14.9 mm, seed 3 25.4 -> 21.2 (keypoints 28.2 and
    # 30.1 mm off)
    assert errors["crowd"] <= errors["lone"] - 1.0, errors
    assert errors["crowd"] <= 25.0, errors


def test_joint_limits_leave_knee_flexion_free(anny):
    # the limit terms see a knee's twist and sideways bend and a foot's turn about the shin, not flexion
    # within its range (straight to 150 degrees); a knee bent backwards is penalised beyond 0.1 rad
    from mocap_studio.common.rotations import rotvec_to_rotmat as rv2m
    from mocap_studio.reconstruction.body.fit_skeleton import _fit_setup
    from mocap_studio.reconstruction.body.fit_solver import _residual_blocks, _Targets

    red, _ = _fit_setup(anny, "blazepose33")
    assert len(red.limit_joint) == 14 and len(red.cone_joint) == 4  # per leg: 7 axes; wrists, neck, head
    lateral = anny.model_to_world_rest.T @ np.array([1.0, 0.0, 0.0])
    knee = red.sem["left_knee"]
    jf = len(red.free)

    def limit_cost(rotvec: np.ndarray) -> float:
        rot = np.tile(np.eye(3), (1, jf, 1, 1))
        rot[0, knee] = rv2m(rotvec)
        tg = _Targets(torch.zeros(1, 1, 3, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64), limits=1.0)
        cfg = FitConfig(pose_prior_weight=0.0)
        blocks = _residual_blocks(red, torch.zeros(1, 1, 3, dtype=torch.float64), torch.as_tensor(rot), tg,
                                  torch.zeros(1, 1, dtype=torch.float64), None, cfg)
        return float((blocks[-1] ** 2).sum())

    assert limit_cost(1.5 * lateral) < 1e-12
    assert limit_cost(-0.5 * lateral) == pytest.approx(0.16, rel=1e-6)  # 0.4 rad beyond straight
    up = anny.model_to_world_rest.T @ np.array([0.0, 0.0, 1.0])
    assert limit_cost(0.5 * up) == pytest.approx(0.25, rel=0.02)  # a twist of 0.5 rad about the shin


def test_fit_command_adds_the_sessions_2d_keypoints(anny, tmp_path):
    # with the 2D keypoints triangulation used (keypoints2d_synced.npz) and calibration.toml in the session,
    # `mocap fit` fits them too (reprojection term); 2D keypoints that do not line up with the 3D ones are left
    # out with a warning, not an error
    from mocap_studio.calibration.camera import CameraRig
    from mocap_studio.calibration.formats import write_calibration
    from mocap_studio.cli import main
    from mocap_studio.reconstruction.keypoints import (
        Keypoints2D,
        SynchronizedKeypoints2D,
        save_synchronized_keypoints2d,
    )
    from mocap_studio.studio.rigs import load_rig_preset

    T = 80
    take = _take(anny, seed=5)
    root = _session(tmp_path, take[4].xyz[:T])
    rig = CameraRig(tuple(c.camera for c in load_rig_preset("ring4").cameras))
    write_calibration(rig, root / "calibration.toml")
    clean = take[3][:T]
    xy = rig.project(clean) + np.random.default_rng(0).normal(scale=1.0, size=(len(rig.cameras), *clean.shape[:2], 2))
    names = tuple(c.name for c in rig.cameras)

    def fit_with_2d(frames: int) -> tuple[dict, float]:
        times = np.arange(frames) / FPS
        kp2d = Keypoints2D(xy[:, :frames], np.ones(xy.shape[:3])[:, :frames], names, "blazepose33", times)
        kp2d.save(root / "keypoints2d.npz")
        synced = SynchronizedKeypoints2D(kp2d, dict.fromkeys(names, times), dict.fromkeys(names, 0.0))
        save_synchronized_keypoints2d(root / "keypoints2d_synced.npz", synced)
        assert main(["fit", str(root)]) == 0
        report = json.loads((root / "report" / "fit.json").read_text())
        with np.load(root / "body.npz") as d:
            fit = anny.keypoints(d["shape"], d["pose_rotvec"], d["trans"], "blazepose33")
        return report, float(np.linalg.norm(fit - clean, axis=-1).mean() * 1000)

    report, mpjpe = fit_with_2d(T)
    assert not any("line up" in w for w in report["warnings"]), report["warnings"]
    assert mpjpe <= 15.0, mpjpe
    report, mpjpe_3d_only = fit_with_2d(T - 10)
    assert any("line up" in w and "keypoints2d_synced.npz" in w for w in report["warnings"]), report["warnings"]
    assert mpjpe_3d_only <= 15.0
    print(f"MPJPE with 2D: {mpjpe:.1f} mm, 3D only: {mpjpe_3d_only:.1f} mm")
