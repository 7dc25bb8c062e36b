"""Importers: files written here in each supported format are read back joint for joint."""

import json

import numpy as np
import pytest
from mocap_studio.reconstruction.importers import import_keypoints
from mocap_studio.reconstruction.keypoints import KeypointFileError
from mocap_studio.reconstruction.skeletons import convert, convert_confidence, get_format
from mocap_studio.reconstruction.synthetic import make_scene

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
                     "bbox": [[0, 0, 10, 10]]} for p in (xy, other)]
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


def _session_with_calibration(tmp_path, scene):
    from mocap_studio.calibration.formats import write_calibration

    root = tmp_path / "take"
    root.mkdir()
    write_calibration(scene.rig, root / "calibration.toml")
    (root / "session.toml").write_text("[session]\nframe_rate = 30.0\n")
    return root


def test_import_then_triangulate_through_the_cli(tmp_path):
    """End to end on a session folder: OpenPose files with a bystander -> keypoints2d -> keypoints3d."""
    from mocap_studio.cli import main
    from mocap_studio.reconstruction.keypoints import Keypoints3D
    from mocap_studio.session import Session

    scene = make_scene(num_frames=20, num_cameras=4, outlier_fraction=0.0, seed=4)
    root = _session_with_calibration(tmp_path, scene)
    sources, *_ = _write_openpose(tmp_path / "openpose", scene, "body25")
    assert main(["import-keypoints", str(root), str(tmp_path / "openpose"), "--format", "openpose"]) == 0
    assert main(["triangulate", str(root)]) == 0
    session = Session(root)
    k3 = Keypoints3D.load(session.keypoints3d_path)
    assert k3.skeleton == "body25" and k3.camera_names == scene.keypoints.camera_names
    truth = convert(scene.truth, "blazepose33", "body25")
    have = np.isfinite(truth).all(-1) & k3.valid
    # BODY_25's mid_hip and neck are midpoints here too, so the body joints compare directly (frame 2 of
    # camera 2 had nobody: three views remain)
    err = np.linalg.norm(k3.xyz - truth, axis=-1)[have] * 1000
    assert np.mean(err) < 6.0
    report = session.read_stage_report("triangulate")
    figures = report["figures"]
    assert figures["fraction_triangulated"] > 0.8 and set(figures["per_camera"]) == set(k3.camera_names)
    assert figures["mean_reprojection_error_px"] < 4.0 and "left_knee-left_ankle" in figures["bones"]
    assert session.read_stage_report("import-keypoints")["figures"]["people_slots"] == 2
    # unchanged inputs: skipped, output untouched
    mtime = session.keypoints3d_path.stat().st_mtime_ns
    assert main(["triangulate", str(root)]) == 0
    assert session.keypoints3d_path.stat().st_mtime_ns == mtime


def test_bad_session_inputs_keep_good_outputs(tmp_path):
    from mocap_studio.calibration.formats import write_calibration
    from mocap_studio.cli import main
    from mocap_studio.reconstruction.keypoints import Keypoints2D
    from mocap_studio.session import Session
    from mocap_studio.stages_keypoints import run_triangulate

    scene = make_scene(num_frames=10, num_cameras=3, outlier_fraction=0.0, seed=6)
    root = _session_with_calibration(tmp_path, scene)
    session = Session(root)
    scene.keypoints.save(session.keypoints2d_path)
    run_triangulate(session)
    good = session.keypoints3d_path.read_bytes()
    # a camera the calibration lacks: named, and the good result stays
    write_calibration(scene.rig.subset(["cam_1", "cam_2"]), session.calibration_path)
    with pytest.raises(KeyError, match="cam_3"):
        run_triangulate(session)
    assert session.keypoints3d_path.read_bytes() == good
    assert main(["triangulate", str(root)]) == 1  # the CLI prints the message and fails
    # every frame empty
    write_calibration(scene.rig, session.calibration_path)
    kp = scene.keypoints
    Keypoints2D(np.full(kp.xy.shape, np.nan), kp.confidence, kp.camera_names, kp.skeleton).save(session.keypoints2d_path)
    with pytest.raises(RuntimeError, match="no joint could be triangulated"):
        run_triangulate(session, overwrite=True)
    assert session.keypoints3d_path.read_bytes() == good
