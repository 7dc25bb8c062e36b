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


@pytest.mark.parametrize("skeleton", ["body25", "body25b", "coco18", "halpe26", "coco17"])
def test_openpose(tmp_path, scene, skeleton):
    """Read back joint for joint; the skeleton told from the data (BODY_25B too, with no --skeleton)."""
    sources, xy, conf = _write_openpose(tmp_path, scene, skeleton)
    det = import_keypoints(sources, "openpose")
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
    imported = session.read_stage_report("import-keypoints")["figures"]
    assert imported["people_slots"] == 2 and imported["skeleton_choice"]["skeleton"] == "body25"
    association = imported["association"]  # per camera: frames found and the threshold used
    assert association["adaptive_threshold"] and set(association["per_camera"]) == set(k3.camera_names)
    for row in association["per_camera"].values():
        assert row["found"] >= 0.95 and 14 < row["threshold_px"] < 74 and row["median_error_px"] < 10
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


# ------------------------------------------------------------------------------------------------
# Same-count layouts told apart from the data (BODY_25 vs BODY_25B)
# ------------------------------------------------------------------------------------------------
def _named_joints_3d(truth):
    """Every joint name any detector layout uses, in 3D, from a BlazePose-33 motion (T, 33, 3)."""
    from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33

    j = {n: truth[:, i] for i, n in enumerate(BLAZEPOSE_33.joints)}
    shoulders = (j["left_shoulder"] + j["right_shoulder"]) / 2
    ears = (j["left_ear"] + j["right_ear"]) / 2
    up = (ears - shoulders) / np.linalg.norm(ears - shoulders, axis=-1, keepdims=True)
    j.update(neck=shoulders, mid_hip=(j["left_hip"] + j["right_hip"]) / 2, upper_neck=shoulders + 0.6 * (ears - shoulders),
             head_top=ears + 0.12 * up)
    for side in ("left", "right"):
        toe, heel = j[f"{side}_foot_index"], j[f"{side}_heel"]
        outward = j[f"{side}_hip"] - j["mid_hip"]
        j[f"{side}_big_toe"] = toe
        j[f"{side}_small_toe"] = 0.75 * toe + 0.25 * heel + 0.4 * outward
    return j


def _detector_output(layout, seed, T=40, rolled=False):
    """What a detector writing ``layout`` would give for a walking performer and a bystander seen by four
    cameras: 3 px noise, 15 % of joints missed, people missed now and then, left/right swapped on 8 % of
    detections (legs only or the whole body), and with ``rolled`` two cameras turned 90 degrees (portrait
    phones whose rotation flag the detector ignored). Returns xy (C, T, 2, J, 2), confidence (C, T, 2, J)."""
    from mocap_studio.reconstruction.skeletons import get_format
    from mocap_studio.reconstruction.synthetic import ring_rig, walking_skeleton

    fmt = get_format(layout)
    rng = np.random.default_rng(seed)
    rig = ring_rig(4, size=(1280, 720), seed=seed)
    bodies = [walking_skeleton(T, seed=seed), walking_skeleton(T, radius_m=2.4, seed=seed + 50, phase=2.0)]
    xy = []
    for body in bodies:
        named = _named_joints_3d(body)
        xy.append(rig.project(np.stack([named[n] for n in fmt.joints], 1)))  # (C, T, J, 2)
    xy = np.stack(xy, 2) + rng.normal(0, 3.0, (4, T, 2, fmt.num_joints, 2))
    conf = rng.uniform(0.3, 1.0, xy.shape[:-1])
    conf[rng.random(conf.shape) < 0.15] = 0
    conf[rng.random(conf.shape[:3]) < 0.1] = 0  # a person missed in a frame
    legs = np.array([i for i, n in enumerate(fmt.joints) if any(k in n for k in ("hip", "knee", "ankle", "toe", "heel"))])
    perm_all, perm_legs = fmt.flip_permutation, np.arange(fmt.num_joints)
    perm_legs[legs] = fmt.flip_permutation[legs]
    swap = rng.random(conf.shape[:3])
    for cond, perm in ((swap < 0.04, perm_all), ((swap >= 0.04) & (swap < 0.08), perm_legs)):
        xy[cond], conf[cond] = xy[cond][:, perm], conf[cond][:, perm]
    if rolled:
        w = rig.cameras[0].size[0]
        xy[:2] = np.stack([xy[:2, ..., 1], w - xy[:2, ..., 0]], -1)  # portrait: 90 degrees
    return xy, conf


def _write_openpose_people(root, xy, conf):
    """One OpenPose folder per camera, cam_1..; people with no detected joint are left out."""
    sources = {}
    for c in range(xy.shape[0]):
        folder = root / f"cam_{c + 1}"
        folder.mkdir(parents=True)
        for t in range(xy.shape[1]):
            people = []
            for p in range(xy.shape[2]):
                if (conf[c, t, p] > 0).any():
                    flat = np.concatenate([np.where(conf[c, t, p, :, None] > 0, xy[c, t, p], 0), conf[c, t, p, :, None]], 1)
                    people.append({"person_id": [-1], "pose_keypoints_2d": flat.round(3).ravel().tolist()})
            (folder / f"take_{t:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
        sources[folder.name] = folder
    return sources


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("layout", ["body25", "body25b"])
def test_same_count_layouts_told_apart(tmp_path, layout, seed):
    """BODY_25 and BODY_25B (Pose2Sim's default) both have 25 joints in different orders: the importer must
    pick the right one from the detections, with noise, missed joints and people, left/right swaps and a
    bystander, and with two cameras rolled to portrait on odd seeds, and put its evidence in the result."""
    from mocap_studio.reconstruction.importers import read_keypoints

    xy, conf = _detector_output(layout, seed, rolled=seed % 2 == 1)
    imported = read_keypoints(_write_openpose_people(tmp_path, xy, conf), "openpose", frame_rate=30.0)
    assert imported.detections.skeleton == layout
    choice = imported.layout
    assert choice.skeleton == layout and set(choice.candidates) == {"body25", "body25b"}
    other = "body25b" if layout == "body25" else "body25"
    assert choice.evidence[layout]["preferred"] > 0.9 > 0.1 > choice.evidence[other]["preferred"]
    assert choice.evidence[layout]["order"] > choice.evidence[other]["order"]
    assert choice.evidence[layout]["asymmetry"] < choice.evidence[other]["asymmetry"]
    assert choice.detections > 100 and not imported.warnings
    assert "told" not in choice.reason and layout in choice.reason


@pytest.mark.parametrize("layout", ["halpe26", "coco17", "coco18"])
def test_unique_count_layouts(tmp_path, layout):
    """No other detector layout shares these counts (HALPE-26 has no 26-joint rival here): taken by count,
    still scored, from OpenPose JSON as Pose2Sim writes RTMPose results."""
    from mocap_studio.reconstruction.importers import read_keypoints
    from mocap_studio.reconstruction.skeletons import DETECTOR_FORMATS, get_format, layouts_with

    assert all(len(layouts_with(get_format(n).num_joints)) == (2 if n in ("body25", "body25b") else 1)
               for n in DETECTOR_FORMATS)
    xy, conf = _detector_output(layout, 3)
    imported = read_keypoints(_write_openpose_people(tmp_path, xy, conf), "openpose", frame_rate=30.0)
    assert imported.layout.skeleton == layout and imported.layout.candidates == (layout,)
    assert imported.layout.evidence[layout]["order"] > 0.9


def test_undecidable_layout_asks_for_the_skeleton(tmp_path):
    """Too few people with enough joints, or points that look like no body under either reading: stop and ask."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 700, (2, 30, 1, 25, 2))  # no body at all
    conf = np.ones(xy.shape[:-1])
    with pytest.raises(KeypointFileError, match=r"cam_1.*body25 or body25b.*pass --skeleton body25 or --skeleton body25b"):
        import_keypoints(_write_openpose_people(tmp_path / "noise", xy, conf), "openpose")
    body, bconf = _detector_output("body25b", 0, T=2)
    with pytest.raises(KeypointFileError, match=r"only \d+ detection\(s\).*--skeleton"):
        import_keypoints(_write_openpose_people(tmp_path / "short", body[:, :, :1], bconf[:, :, :1]), "openpose")
    # told which: read as told, joint for joint
    det = import_keypoints(_write_openpose_people(tmp_path / "told", xy, conf), "openpose", skeleton="body25b")
    assert det.skeleton == "body25b"


def test_given_skeleton_that_the_data_contradict_is_a_warning(tmp_path):
    from mocap_studio.reconstruction.importers import read_keypoints

    xy, conf = _detector_output("body25b", 1)
    imported = read_keypoints(_write_openpose_people(tmp_path, xy, conf), "openpose", skeleton="body25")
    assert imported.detections.skeleton == "body25" and imported.layout.reason == "given (body25)"
    assert len(imported.warnings) == 1 and "look like body25b" in imported.warnings[0]


def test_unknown_joint_count_named(tmp_path):
    xy, conf = np.full((1, 3, 1, 21, 2), 50.0), np.ones((1, 3, 1, 21))
    with pytest.raises(KeypointFileError, match="21 joints per person is none of the layouts"):
        import_keypoints(_write_openpose_people(tmp_path, xy, conf), "openpose")


# ------------------------------------------------------------------------------------------------
# The stage: frame rate (--fps, session.toml, the recordings, else ask) and the report
# ------------------------------------------------------------------------------------------------
def _write_video(path, fps, frames=3):
    """A tiny recording: only its frame rate matters here."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for k in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), k, np.uint8), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _one_person_openpose(root, layout="body25b", T=12):
    xy, conf = _detector_output(layout, 2, T=T)
    return _write_openpose_people(root, xy[:, :, :1], conf[:, :, :1])


def _step(session):
    from mocap_studio.reconstruction.keypoints import Keypoints2D

    return float(np.diff(Keypoints2D.load(session.keypoints2d_path).frame_times).mean())


def test_import_frame_rate_precedence_and_fingerprint(tmp_path):
    from mocap_studio.cli import main
    from mocap_studio.session import Session
    from mocap_studio.stages_keypoints import ImportConfig, run_import_keypoints

    _one_person_openpose(tmp_path / "op")
    root = tmp_path / "take"
    root.mkdir()
    session = Session(root)
    source = str(tmp_path / "op")
    # nothing says the frame rate: stop and ask, never assume 30
    with pytest.raises(ValueError, match=r"no frame rate.*give --fps"):
        run_import_keypoints(session, ImportConfig(source=source, format="openpose"))
    assert not session.keypoints2d_path.exists()
    args = ["import-keypoints", str(root), source, "--format", "openpose"]
    assert main(args) == 1
    # --fps
    assert main(args + ["--fps", "25"]) == 0
    assert _step(session) == pytest.approx(1 / 25)
    figures = session.read_stage_report("import-keypoints")["figures"]
    assert figures["frame_rate"] == 25 and "--fps" in figures["frame_rate_from"]["from"]
    assert figures["skeleton"] == "body25b" and figures["skeleton_choice"]["evidence"]["body25b"]["preferred"] > 0.9
    # unchanged: skipped; another --fps: the stage runs again
    mtime = session.keypoints2d_path.stat().st_mtime_ns
    assert main(args + ["--fps", "25"]) == 0
    assert session.keypoints2d_path.stat().st_mtime_ns == mtime
    assert main(args + ["--fps", "50"]) == 0
    assert _step(session) == pytest.approx(1 / 50)
    assert main(args + ["--fps", "-3"]) == 1  # blamed on --fps
    # the recordings of the same cameras
    for name in ("cam_1", "cam_2"):
        _write_video(root / "videos" / f"{name}.mp4", 15)
    report = run_import_keypoints(session, ImportConfig(source=source, format="openpose"))
    assert _step(session) == pytest.approx(1 / 15)
    assert report.figures["frame_rate_from"]["from"] == "the recording of camera cam_1"
    # session.toml's frame rate before the recordings; [import-keypoints] frame_rate (--fps) before both
    (root / "session.toml").write_text("[session]\nframe_rate = 24.0\n")
    run_import_keypoints(session, ImportConfig(source=source, format="openpose"))
    assert _step(session) == pytest.approx(1 / 24)
    (root / "session.toml").write_text(f"[session]\nframe_rate = 24.0\n\n[import-keypoints]\nsource = '{source}'\n"
                                       "format = 'openpose'\nframe_rate = 48.0\n")
    run_import_keypoints(session)
    assert _step(session) == pytest.approx(1 / 48)
    assert main(args + ["--fps", "12"]) == 0  # the option over the table
    assert _step(session) == pytest.approx(1 / 12)


def test_one_person_in_every_frame_is_the_performer_without_a_warning(tmp_path):
    """Two person slots (MediaPipe's num_poses 2, a studio take's setting) but one person in every camera and
    frame: that person is the performer and no warning says nobody was found (every single-performer studio take
    said so before)."""
    from mocap_studio.reconstruction.keypoints import Detections2D
    from mocap_studio.session import Session
    from mocap_studio.stages_keypoints import _choose_performer

    scene = make_scene(num_frames=10, num_cameras=3, outlier_fraction=0.0, seed=6)
    kp = scene.keypoints
    xy = np.full((*kp.xy.shape[:2], 2, *kp.xy.shape[2:]), np.nan)
    conf = np.zeros(xy.shape[:-1])
    xy[:, :, 0], conf[:, :, 0] = kp.xy, kp.confidence
    detections = Detections2D(xy, conf, kp.camera_names, kp.skeleton)
    warnings, figures = [], {}
    chosen = _choose_performer(Session(_session_with_calibration(tmp_path, scene)), detections, warnings, figures)
    assert warnings == [], warnings
    np.testing.assert_array_equal(chosen.xy, kp.xy)
    assert all(row["found"] == 1.0 for row in figures["association"]["per_camera"].values()), figures
