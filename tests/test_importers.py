"""Importers: files written here in each supported format are read back joint for joint."""

import json

import numpy as np
import pytest

from reconstruction.importers import import_keypoints
from reconstruction.keypoints import KeypointFileError
from reconstruction.skeletons import convert, convert_confidence, get_format
from reconstruction.synthetic import make_scene

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def scene():
    return make_scene(num_frames=5, num_cameras=3, outlier_fraction=0.0, seed=1)


def _people(scene, skeleton):
    """Per camera and frame: the performer plus a smaller bystander, in ``skeleton``."""
    kp = scene.keypoints
    xy = convert(kp.xy, kp.skeleton, skeleton)
    conf = convert_confidence(kp.confidence, kp.skeleton, skeleton)
    other = xy * 0.5 + 20  # a second person, half the size
    return xy, conf, other


def _write_openpose(root, scene, skeleton):
    xy, conf, other = _people(scene, skeleton)
    for c, cam in enumerate(scene.keypoints.camera_names):
        folder = root / cam
        folder.mkdir(parents=True)
        for t in range(xy.shape[1]):
            people = []
            for pxy, pc in ((xy[c, t], conf[c, t]), (other[c, t], conf[c, t])):
                flat = np.concatenate([np.nan_to_num(pxy), pc[:, None]], 1)
                people.append({"person_id": [-1], "pose_keypoints_2d": flat.ravel().tolist()})
            if t == 2 and c == 1:
                people = []  # nobody detected in this frame of this camera
            text = json.dumps({"version": 1.3, "people": people})
            (folder / f"{cam}_{t:012d}_keypoints.json").write_text(text)
    return {cam: root / cam for cam in scene.keypoints.camera_names}, xy, conf


@pytest.mark.parametrize("skeleton", ["body25", "body25b", "coco18"])
def test_openpose(tmp_path, scene, skeleton):
    sources, xy, conf = _write_openpose(tmp_path, scene, skeleton)
    det = import_keypoints(sources, "openpose", skeleton=skeleton if skeleton == "body25b" else None)
    assert det.skeleton == skeleton and det.xy.shape == (3, 5, 2, get_format(skeleton).num_joints, 2)
    have = conf > 0
    np.testing.assert_allclose(det.xy[:, :, 0][have][[0, -1]], xy[have][[0, -1]], atol=1e-6)
    assert np.isnan(det.xy[:, :, 0][~have]).all()  # zero confidence -> NaN
    assert np.isnan(det.xy[1, 2]).all()  # the empty frame
    np.testing.assert_allclose(det.xy[0, 0, 1][have[0, 0]], (xy[0, 0] * 0.5 + 20)[have[0, 0]], atol=1e-6)


def test_openpose_wrong_skeleton_named(tmp_path, scene):
    sources, *_ = _write_openpose(tmp_path, scene, "coco18")
    with pytest.raises(KeypointFileError, match=r"18 joints but the skeleton has 25.*--skeleton"):
        import_keypoints(sources, "openpose", skeleton="body25")


@pytest.mark.parametrize("skeleton", ["coco17", "halpe26"])
def test_mmpose(tmp_path, scene, skeleton):
    xy, conf, other = _people(scene, skeleton)
    sources = {}
    for c, cam in enumerate(scene.keypoints.camera_names):
        frames = []
        for t in range(xy.shape[1]):
            inst = [{"keypoints": np.nan_to_num(p[c, t]).tolist(), "keypoint_scores": conf[c, t].tolist(),
                     "bbox": [[0, 0, 10, 10]]} for p in (xy, other)]  # fmt: skip
            frames.append({"frame_id": t, "instances": inst})
        sources[cam] = tmp_path / f"{cam}.json"
        sources[cam].write_text(json.dumps(frames))
    det = import_keypoints(sources, "mmpose")
    assert det.skeleton == skeleton and det.num_people == 2
    have = conf > 0
    np.testing.assert_allclose(det.xy[:, :, 0][have], xy[have], atol=1e-6)


def test_easymocap(tmp_path, scene):
    xy, conf, other = _people(scene, "body25")
    sources = {}
    for c, cam in enumerate(scene.keypoints.camera_names):
        folder = tmp_path / "annots" / cam
        folder.mkdir(parents=True)
        for t in range(xy.shape[1]):
            rows = [np.c_[np.nan_to_num(p[c, t]), conf[c, t]].tolist() for p in (other, xy)]
            annots = [{"personID": 1, "keypoints": rows[0]}, {"personID": 0, "keypoints": rows[1]}]
            (folder / f"{t:06d}.json").write_text(json.dumps({"filename": f"{t}.jpg", "annots": annots}))
        sources[cam] = folder
    det = import_keypoints(sources, "easymocap")
    have = conf > 0
    np.testing.assert_allclose(det.xy[:, :, 0][have], xy[have], atol=1e-6)  # personID 0 first


def test_npz_by_camera_name(tmp_path, scene):
    kp = scene.keypoints
    path = kp.save(tmp_path / "k.npz")
    names = list(reversed(kp.camera_names))
    det = import_keypoints({n: path for n in names}, "npz")
    assert det.camera_names == tuple(names)
    np.testing.assert_allclose(det.xy[0, :, 0], kp.xy[-1], rtol=1e-6)
    with pytest.raises(KeyError, match="cam_9"):
        import_keypoints({"cam_9": path}, "npz")


def test_bad_files_named(tmp_path):
    folder = tmp_path / "cam_1"
    folder.mkdir()
    (folder / "x_000000000000_keypoints.json").write_text("{not json")
    with pytest.raises(KeypointFileError, match="x_000000000000_keypoints.json"):
        import_keypoints({"cam_1": folder}, "openpose")
    with pytest.raises(ValueError, match="unknown keypoint format"):
        import_keypoints({"cam_1": folder}, "alphapose")
