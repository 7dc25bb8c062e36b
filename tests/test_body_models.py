"""Body models: Anny and the SMPL path (synthetic SMPL-format file), the safe loader, regressors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from body_fixtures import make_synthetic_smpl_arrays, write_synthetic_smpl
from mocap_studio.reconstruction.body.anny_model import AnnyBody
from mocap_studio.reconstruction.body.measurements import measure_body
from mocap_studio.reconstruction.body.model import BodyModel
from mocap_studio.reconstruction.body.smpl_model import ModelFileMissing, load_smpl, smpl_model_path
from mocap_studio.reconstruction.body.smpl_pkl import UnsafeModelFileError, load_model_file


@pytest.fixture(scope="module")
def anny() -> AnnyBody:
    return AnnyBody()


@pytest.fixture(scope="module")
def smpl_dir(anny, tmp_path_factory) -> Path:  # noqa: ANN001
    root = tmp_path_factory.mktemp("models")
    write_synthetic_smpl(root / "smpl" / "SMPL_NEUTRAL.pkl", make_synthetic_smpl_arrays(anny))
    return root


def test_anny_matches_anny_forward(anny):
    rng = np.random.default_rng(0)
    shape = anny.random_shape(rng)
    pose = np.zeros((2, anny.num_joints, 3))
    pose[:, list(anny.free_joints)] = rng.normal(0, 0.3, (2, len(anny.free_joints), 3))
    ours = anny.evaluate(shape, pose, np.zeros((2, 3))).vertices
    core = anny._core
    from mocap_studio.reconstruction.body.lbs import forward_kinematics
    from mocap_studio.reconstruction.body.torch_rotations import rotvec_to_rotmat

    with torch.no_grad():
        ph = torch.tensor(shape)[None]
        ref = core(phenotype_kwargs=ph)
        rj = anny.rest_joints_torch(torch.tensor(shape, dtype=torch.float32)).double()
        rg, tg = forward_kinematics(rotvec_to_rotmat(torch.tensor(pose)), rj, anny._levels)
        A = torch.zeros(2, anny.num_joints, 4, 4, dtype=torch.float64)
        A[..., :3, :3], A[..., 3, 3] = rg, 1
        A[..., :3, 3] = tg - (rg @ rj[..., None])[..., 0]
        out = core(pose_parameters=A @ ref["rest_bone_poses"][0], phenotype_kwargs=ph.expand(2, -1),
                   pose_parameterization="world")
    assert np.abs(out["vertices"].numpy() - ours).max() < 1e-5
    assert isinstance(anny, BodyModel)


def test_keypoint_regressors(anny):
    for fmt in ("blazepose33", "coco17", "halpe26"):
        reg = anny.keypoint_regressor(fmt)
        assert reg.supported.all(), fmt
        assert np.allclose(reg.matrix.sum(1), 1.0)
    kp = anny.keypoints(anny.default_shape(), np.zeros((1, anny.num_joints, 3)), np.zeros((1, 3)), "blazepose33")
    names = anny.keypoint_regressor("blazepose33").joint_names
    z = {n: kp[0, i, 2] for i, n in enumerate(names)}
    assert z["left_heel"] < z["left_knee"] < z["left_hip"] < z["left_shoulder"] < z["left_eye"]


def test_smpl_synthetic_file_loads_and_matches_smplx(smpl_dir):
    data = load_model_file(smpl_dir / "smpl" / "SMPL_NEUTRAL.pkl")
    assert data["shapedirs"].shape == (6890, 3, 10) and data["J_regressor"].shape == (24, 6890)
    model = load_smpl(smpl_dir)
    rng = np.random.default_rng(1)
    shape = model.random_shape(rng)
    pose = np.zeros((2, 24, 3))
    pose[:, list(model.free_joints)] = rng.normal(0, 0.3, (2, len(model.free_joints), 3))
    trans = rng.normal(0, 1, (2, 3))
    ours = model.evaluate(shape, pose, trans)
    with torch.no_grad():
        o = model.smplx_module()(betas=torch.tensor(shape)[None].expand(2, -1), global_orient=torch.tensor(pose[:, 0]),
                                 body_pose=torch.tensor(pose[:, 1:].reshape(2, -1)), transl=torch.tensor(trans))
    assert np.abs(o.vertices.numpy() - ours.vertices).max() < 1e-5
    assert model.keypoint_regressor("blazepose33").supported.all()


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "SMPL_NEUTRAL.pkl"
    bad.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(UnsafeModelFileError, match="refuses to load"):
        load_model_file(bad)
    assert not marker.exists()
    import os

    bad.write_bytes(pickle.dumps(os.system, protocol=2))
    with pytest.raises(UnsafeModelFileError):
        load_model_file(bad)


def test_missing_smpl_file_message(tmp_path):
    (tmp_path / "smpl").mkdir()
    (tmp_path / "smpl" / "smpl_model.pkl").write_bytes(b"x")
    with pytest.raises(ModelFileMissing, match=r"SMPL_NEUTRAL\.pkl.*smpl_model\.pkl.*Licence.*anny"):
        smpl_model_path(tmp_path, "smpl", "neutral")


def test_measurements_plausible(anny):
    m = measure_body(anny, anny.default_shape())
    assert 1.6 < m.height < 2.0
    assert 0.6 < m.waist_circumference < m.hip_circumference < 1.3
    assert 0.3 < m.neck_circumference < 0.55 and 0.4 < m.thigh_circumference < 0.75
    assert 0.6 < m.inseam < 1.0


def test_spread_shapes_cover_the_random_bodies_range_evenly(anny, smpl_dir):
    """The silhouette fit's starts (``spread_shapes``): 24 bodies inside random_shape's range, spread evenly over
    each phenotype. Cut each phenotype's range in 12 equal slices: the Sobol set leaves none of the 72 empty and puts
    at most 3 bodies in one; 200 sets of 24 random draws left 4-12 empty (mean 9.2) and put 4-8 in one (mean 5.8). In
    six dimensions 24 points cannot cover the box much closer than random ones (the farthest of 4000 random bodies
    from its nearest start: 1.88 box half-widths, random sets 1.75-2.07); the even spread along each phenotype is
    what the fit gains (README, "The starts spread over the phenotypes")."""
    spread = 1.5
    starts = anny.spread_shapes(24, spread)
    d = anny.default_shape()
    half = np.full(anny.num_shape, 0.3 * spread)
    half[anny.shape_names.index("age")] = 0.12 * spread
    assert starts.shape == (24, anny.num_shape)
    assert np.all(np.abs(starts - d) <= half + 1e-12) and np.all((starts >= 0) & (starts <= 1))
    assert np.array_equal(starts, anny.spread_shapes(24, spread))
    assert np.array_equal(starts[:5], anny.spread_shapes(5, spread))  # fewer starts: the same set's first ones

    def slices(s: np.ndarray) -> np.ndarray:  # (S, 12) bodies per slice of each phenotype's range
        k = np.floor(12 * (s - d + half) / (2 * half)).clip(0, 11).astype(int)
        return np.stack([np.bincount(k[:, j], minlength=12) for j in range(anny.num_shape)])

    ours = slices(starts)
    assert (ours == 0).sum() == 0 and ours.max() <= 3, ours
    rng = np.random.default_rng(7)
    drawn = [slices(np.stack([anny.random_shape(rng, spread) for _ in range(24)])) for _ in range(50)]
    assert min((c == 0).sum() for c in drawn) >= 2 and np.mean([c.max() for c in drawn]) > 4
    smpl = load_smpl(smpl_dir)
    betas = smpl.spread_shapes(24, 1.0)
    assert betas.shape == (24, smpl.num_shape) and np.all(np.abs(betas) <= 3.0 + 1e-9)
    assert abs(betas.std() - 1.0) < 0.2 and abs(betas.mean()) < 0.1, (betas.mean(), betas.std())
    assert anny.spread_shapes(0).shape == (0, anny.num_shape)
