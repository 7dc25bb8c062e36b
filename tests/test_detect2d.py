"""MediaPipe detection on a real photograph (matplotlib's sample portrait of Grace Hopper), video and
image-folder sources, the worker pool, and undecodable input."""

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from mocap_studio.capture.frames import FrameSourceError
from mocap_studio.reconstruction.detect2d import (
    ASSET_PATH,
    DetectionConfig,
    PoseLandmarker,
    ProcessExecutor,
    SerialExecutor,
    crop_model_path,
    detect_sources,
    heavy_model_path,
)
from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33

PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
pytestmark = pytest.mark.skipif(not ASSET_PATH.exists(), reason="pose landmarker asset not built")


@pytest.fixture(scope="module")
def portrait():
    image = cv2.imread(str(PORTRAIT))
    assert image is not None, PORTRAIT
    return image


def _video(path: Path, image: np.ndarray, frames: int) -> Path:
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for i in range(frames):
        writer.write(np.roll(image, 2 * i, axis=1))  # the person drifts right by 2 px a frame
    writer.release()
    return path


def test_asset_origin_recorded():
    origin = (ASSET_PATH.parent / "ORIGIN.txt").read_text()
    assert "mediapipe==0.10.21" in origin and "Apache" in origin
    assert (ASSET_PATH.parent / "LICENSE-mediapipe.txt").exists()
    assert ASSET_PATH.stat().st_size < 12e6


def test_landmarker_finds_the_face_and_shoulders(portrait):
    with PoseLandmarker(DetectionConfig(), video=False) as lm:
        xy, conf = lm.detect(portrait)
    P = DetectionConfig().num_poses  # person slots (2: a bystander is kept apart for association)
    assert xy.shape == (P, 33, 2) and conf.shape == (P, 33)
    assert np.isnan(xy[1:]).all() and (conf[1:] == 0).all()  # one person in the photograph, one slot filled
    idx = BLAZEPOSE_33.index
    nose, left_eye, right_eye = xy[0, idx("nose")], xy[0, idx("left_eye")], xy[0, idx("right_eye")]
    # hand-checked on the photograph: nose near (273, 229), eyes above it, her left eye on the image right
    assert np.linalg.norm(nose - (273, 229)) < 25
    assert left_eye[1] < nose[1] and right_eye[1] < nose[1] and left_eye[0] > right_eye[0]
    assert xy[0, idx("left_shoulder"), 0] > xy[0, idx("right_shoulder"), 0]
    assert conf[0, idx("nose")] > 0.8


def test_crop_model_chosen_and_a_missing_heavy_model_said(tmp_path, monkeypatch):
    assert crop_model_path(DetectionConfig(crop_model="full")) == (ASSET_PATH, None)
    own = tmp_path / "mine.task"
    own.write_bytes(ASSET_PATH.read_bytes())
    assert crop_model_path(DetectionConfig(crop_model=str(own))) == (own, None)
    with pytest.raises(FileNotFoundError, match="crop_model = .*no such file"):
        crop_model_path(DetectionConfig(crop_model=str(tmp_path / "absent.task")))
    monkeypatch.setenv("MOCAP_CACHE_DIR", str(tmp_path / "empty-cache"))
    path, warning = crop_model_path(DetectionConfig())  # heavy asked for, not built in this cache
    assert path == ASSET_PATH and "not built" in warning and "--variant heavy" in warning


@pytest.mark.skipif(not heavy_model_path().exists(), reason="the heavy pose landmarker is not built (`make pose-models`)")
def test_heavy_landmarker_finds_what_the_full_one_finds(portrait):
    assert crop_model_path(DetectionConfig()) == (heavy_model_path(), None)
    origin = (heavy_model_path().parent / "ORIGIN-heavy.txt").read_text()
    assert "@mediapipe/pose@0.5.1675469404" in origin and "Apache" in origin
    found = {}
    for name, path in (("full", ASSET_PATH), ("heavy", heavy_model_path())):
        with PoseLandmarker(DetectionConfig(model_path=str(path)), video=False) as lm:
            found[name] = lm.detect(portrait)
    idx = BLAZEPOSE_33.index
    face = [idx(n) for n in ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder")]
    assert np.linalg.norm(found["heavy"][0][0, idx("nose")] - (273, 229)) < 25  # as hand-checked above
    # the two networks agree on the face and shoulders within a few percent of the 512 px photograph
    assert np.linalg.norm(found["heavy"][0][0, face] - found["full"][0][0, face], axis=-1).max() < 25
    assert (found["heavy"][1][1:] == 0).all()  # one person, one slot


def test_video_and_image_folder_sources_in_worker_processes(tmp_path, portrait):
    video = _video(tmp_path / "cam_1.mp4", portrait, 6)
    folder = tmp_path / "cam_2"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"frame_{i}.png"), portrait)
    sources = {"cam_1": video, "cam_2": folder}
    # video mode, tracking within chunks (MediaPipe tracks and smooths only with one pose per frame)
    config = DetectionConfig(chunk_frames=3, frame_rate=30.0, tracking=True, num_poses=1)
    calls = []
    det = detect_sources(sources, config, ProcessExecutor(2), progress=lambda *a: calls.append(a))
    assert det.xy.shape == (2, 6, 1, 33, 2) and det.camera_names == ("cam_1", "cam_2")
    assert len(calls) == 4 and calls[-1][:2] == (4, 4)
    nose = det.xy[:, :, 0, 0]
    assert np.isfinite(nose).all()
    # the drifting video moves the nose about 2 px a frame; the still folder keeps it in place
    assert 5 < nose[0, 5, 0] - nose[0, 0, 0] < 15
    assert np.abs(nose[1] - nose[1, 0]).max() < 3
    serial = detect_sources({"cam_2": folder}, config, SerialExecutor())
    np.testing.assert_allclose(serial.xy[0], det.xy[1], atol=1e-3)


def test_undecodable_video_is_named(tmp_path):
    bad = tmp_path / "cam_1.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(FrameSourceError, match="cam_1.mp4"):
        detect_sources({"cam_1": bad}, DetectionConfig(workers=1))


def test_the_flip_test_brings_the_mirrored_pass_back(portrait):
    """The crowd's flip test (reconstruction/crowd.py) around the real landmarker: the mirrored pass's pose comes
    back on the photograph's own side and labels (her left eye still on the image right, the nose where the
    plain pass puts it), and the joints both passes see are fused."""
    from mocap_studio.reconstruction.crowd import FlipTest
    from mocap_studio.reconstruction.skeletons import get_format

    idx = BLAZEPOSE_33.index
    with PoseLandmarker(DetectionConfig(), video=False) as lm:
        plain, _ = lm.detect(portrait)
        mirrored, _ = lm.detect(np.ascontiguousarray(portrait[:, ::-1]))
        xy, conf = FlipTest(lm, get_format("blazepose33").flip_permutation).detect(portrait)
    # the detector labels by looks: in the mirror image too the eye on the image right is called her left one,
    # though it is the one on the photograph's left, so the labels must be swapped back
    assert mirrored[0, idx("left_eye"), 0] > mirrored[0, idx("right_eye"), 0]
    nose, left_eye, right_eye = xy[0, idx("nose")], xy[0, idx("left_eye")], xy[0, idx("right_eye")]
    assert np.linalg.norm(nose - (273, 229)) < 25 and np.linalg.norm(nose - plain[0, idx("nose")]) < 10
    assert left_eye[0] > right_eye[0]
    face = [idx(n) for n in ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder")]
    assert (conf[0, face] > 0.5).all() and not np.allclose(xy[0, face], plain[0, face])  # averaged, not copied


def test_detect_stage_on_a_session(tmp_path, portrait):
    from mocap_studio.cli import main
    from mocap_studio.reconstruction.keypoints import Keypoints2D
    from mocap_studio.session import Session

    root = tmp_path / "take"
    (root / "videos").mkdir(parents=True)
    _video(root / "videos" / "cam_1.mp4", portrait, 4)
    _video(root / "videos" / "cam_2.mp4", portrait, 4)
    assert main(["detect", str(root), "--workers", "1"]) == 0
    session = Session(root)
    kp = Keypoints2D.load(session.keypoints2d_path)
    assert kp.camera_names == ("cam_1", "cam_2") and kp.skeleton == "blazepose33" and kp.num_frames == 4
    figures = session.read_stage_report("detect")["figures"]
    assert figures["per_camera"]["cam_1"]["frames_detected"] == 1.0 and figures["detection_frames_per_second"] > 0
    from mocap_studio.reconstruction.hands import hand_model_path

    if hand_model_path().exists():  # a portrait: the hands are out of the picture, none looked for
        assert set(figures["hands_found"]) == {"cam_1", "cam_2"}, figures.get("hands_found")
    # a damaged recording: the command fails with the file's name and the good keypoints stay
    good = session.keypoints2d_path.read_bytes()
    (root / "videos" / "cam_2.mp4").write_bytes(b"\x00broken" * 50)
    assert main(["detect", str(root), "--workers", "1"]) == 1
    assert session.keypoints2d_path.read_bytes() == good


def test_a_missing_hand_landmarker_is_said_and_blazepose_hands_kept(tmp_path, portrait, monkeypatch):
    """Without the hand landmarker's bundle the detect stage keeps BlazePose's hand keypoints, writes no hands figure
    and its report says what is missing and how to build it."""
    import mocap_studio.reconstruction.hands as hands
    from mocap_studio.cli import main
    from mocap_studio.session import Session

    monkeypatch.setattr(hands, "hand_model_path", lambda: tmp_path / "nowhere" / hands.HAND_TASK_NAME)
    root = tmp_path / "take"
    (root / "videos").mkdir(parents=True)
    _video(root / "videos" / "cam_1.mp4", portrait, 2)
    assert main(["detect", str(root), "--workers", "1"]) == 0
    report = Session(root).read_stage_report("detect")
    assert "hands_found" not in report["figures"]
    assert any("hand landmarker is not built" in w and "--variant hand" in w for w in report["warnings"]), report


def _render(camera, vertices, faces):
    """A shaded body (painter's algorithm, faces far to near) on a grey background, (720, 1280, 3) BGR.
    Stands in for the virtual studio until it lands."""
    w, h = camera.size
    image = np.full((h, w, 3), (90, 100, 110), np.uint8)
    uv = camera.project(vertices)
    depth = camera.to_camera(vertices)[:, 2]
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    view = camera.center - tri.mean(1)
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    shade = np.abs((normal * view).sum(1)) * 0.75 + 0.25
    points = np.round(uv[faces] * 16).astype(np.int32)
    for f in np.argsort(-depth[faces].mean(1)):
        colour = tuple(int(v) for v in np.array([120.0, 150.0, 200.0]) * shade[f])
        cv2.fillConvexPoly(image, points[f], colour, lineType=cv2.LINE_AA, shift=4)
    return image


def test_rendered_body_detected_and_triangulated_within_30_mm():
    """Acceptance stand-in: the open body model rendered by 4 cameras at 1280x720, MediaPipe detections,
    triangulation: body joints within 30 mm of the model's own BlazePose landmarks."""
    anny = pytest.importorskip("mocap_studio.reconstruction.body.anny_model")
    if not anny.anny_cache_ready():
        pytest.skip("the Anny body model cache is not built (see reconstruction/body/cache.py)")
    from mocap_studio.calibration.camera import Camera, CameraRig, look_at
    from mocap_studio.reconstruction.keypoints import Keypoints2D
    from mocap_studio.reconstruction.triangulate import triangulate

    body = anny.AnnyBody()
    shape = body.default_shape()
    T, J = 3, len(body.joint_names)
    pose = np.zeros((T, J, 3))
    legs = [i for i, n in enumerate(body.joint_names) if n in ("upperleg01.L", "upperleg01.R")]
    pose[:, legs, 0] = np.array([[0.0, 0.0], [0.3, -0.2], [-0.2, 0.3]])  # stepping
    trans = np.zeros((T, 3))
    vertices = body.evaluate(shape, pose, trans).vertices
    truth = body.keypoints(shape, pose, trans, "blazepose33")
    K = np.array([[900.0, 0, 640], [0, 900, 360], [0, 0, 1]])
    cams = []
    for c in range(4):
        a = 2 * np.pi * c / 4 + 0.4
        R, t = look_at(np.array([3.2 * np.cos(a), 3.2 * np.sin(a), 0.6]), np.zeros(3))
        cams.append(Camera(f"cam_{c + 1}", (1280, 720), K, np.zeros(5), R, t))
    rig = CameraRig(tuple(cams))
    xy = np.full((4, T, 33, 2), np.nan)
    conf = np.zeros((4, T, 33))
    with PoseLandmarker(DetectionConfig(), video=False) as landmarker:
        for c, cam in enumerate(rig.cameras):
            for t in range(T):
                found_xy, found_conf = landmarker.detect(_render(cam, vertices[t], body.faces))
                xy[c, t], conf[c, t] = found_xy[0], found_conf[0]
    k3 = triangulate(rig, Keypoints2D(xy, conf, rig.names, "blazepose33"))
    body_joints = [BLAZEPOSE_33.index(f"{s}_{j}") for s in ("left", "right")
                   for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]
    err = np.linalg.norm(k3.xyz - truth, axis=-1)[:, body_joints] * 1000
    assert np.isfinite(err).all()
    assert err.mean() < 30.0, err.mean(0)
