"""The hands' knuckles from MediaPipe's hand landmarker (reconstruction/hands.py) against the virtual studio's truth."""

from __future__ import annotations

import numpy as np
import pytest
from mocap_studio.reconstruction.detect2d import DetectionConfig, PoseLandmarker
from mocap_studio.reconstruction.hands import BLAZEPOSE_HANDS, hand_crop, hand_model_path

pytestmark = pytest.mark.skipif(not hand_model_path().exists(),
                                reason="the hand landmarker is not built (make, or tools/build_pose_landmarker.py "
                                       "--variant hand)")


def test_hand_crop_around_the_pose_hand():
    """A hand's crop is centred on the pose's wrist, index and pinky, scaled by the wrist-to-index span, and there
    is none where the wrist is missing or unsure."""
    xy = np.full((33, 2), np.nan)
    conf = np.zeros(33)
    left = BLAZEPOSE_HANDS["left"]
    xy[left["wrist"]], xy[left["index"]], xy[left["pinky"]] = (100.0, 200.0), (106.0, 200.0), (103.0, 212.0)
    conf[left["wrist"]] = 0.9
    x0, y0, size = hand_crop(xy, conf, "left", 2.0, 16.0, 0.3)
    assert (x0 + size / 2, y0 + size / 2) == pytest.approx((103.0, 204.0))
    assert size == pytest.approx(2 * 16.0)  # the span (6 px) times 2 is under the least half-size
    xy[left["index"]] = (130.0, 200.0)
    assert hand_crop(xy, conf, "left", 2.0, 16.0, 0.3)[2] == pytest.approx(2 * 2.0 * 30.0)
    assert hand_crop(xy, conf, "right", 2.0, 16.0, 0.3) is None
    conf[left["wrist"]] = 0.1
    assert hand_crop(xy, conf, "left", 2.0, 16.0, 0.3) is None


def _palm_normals(points: np.ndarray, wrist: int, index: int, pinky: int) -> np.ndarray:
    n = np.cross(points[..., index, :] - points[..., wrist, :], points[..., pinky, :] - points[..., wrist, :])
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def test_the_hand_landmarker_tells_which_way_the_palms_face():
    """A performer of the virtual studio (held-out seed 23, squats then jumping jacks) rendered by the ring4
    rig at 1280x720, every 6th frame of 2 s: the palms' normals (wrist, index and pinky knuckles) triangulated
    from the pose landmarker's keypoints with the hand landmarker's knuckles lie within 16 degrees of the true
    ones (median; measured 10.7). BlazePose's own knuckles do as well for this performer (9.0), not for others:
    on studio takes 101 and 104 they were 43-61 degrees off where the hand landmarker's were 8-15 (README,
    "Hands"), so the bound against them is only that the hand landmarker is not worse by more than 4."""
    anny_model = pytest.importorskip("mocap_studio.reconstruction.body.anny_model")
    pytest.importorskip("open3d")
    if not anny_model.anny_cache_ready():
        pytest.skip("the Anny body model cache is not built (see reconstruction/body/cache.py)")
    from mocap_studio.export.rig import load_rig
    from mocap_studio.reconstruction.keypoints import Keypoints2D
    from mocap_studio.reconstruction.triangulate import triangulate
    from mocap_studio.studio import exercise_motion, load_rig_preset, perform
    from mocap_studio.studio.render import BodyRenderer, region_colours

    body = anny_model.AnnyBody()
    shape = body.random_shape(np.random.default_rng(23))
    perf = perform(body, shape, exercise_motion(["squat", "jumping_jack"], 2.0, seed=23, rate_hz=30.0),
                   load_rig("smpl24"))
    frames = np.arange(0, len(perf.pose_rotvec), 6)
    out = body.evaluate(shape, perf.pose_rotvec[frames], perf.trans[frames])
    colours = region_colours(body.joint_names, body.skinning_weights(), body.rest_mesh(shape))
    rig = load_rig_preset("ring4")
    C, T = len(rig.cameras), len(frames)
    xy = {k: np.full((C, T, 33, 2), np.nan) for k in ("pose", "hands")}
    conf = {k: np.zeros((C, T, 33)) for k in ("pose", "hands")}
    with PoseLandmarker(DetectionConfig(num_poses=1, hands=False), video=False) as poses, \
            PoseLandmarker(DetectionConfig(num_poses=1), video=False) as with_hands:
        for c, sc in enumerate(rig.cameras):
            renderer = BodyRenderer(sc.camera, body.faces, colours)
            for t in range(T):
                image, _ = renderer.render(out.vertices[t])
                for kind, landmarker in (("pose", poses), ("hands", with_hands)):
                    p_xy, p_conf = landmarker.detect(image)
                    xy[kind][c, t], conf[kind][c, t] = p_xy[0], p_conf[0]
        assert with_hands.hands_tried >= 2 * C * T - 4 and poses.hands_tried == 0
        assert with_hands.hands_found > 0.6 * with_hands.hands_tried, (with_hands.hands_found, with_hands.hands_tried)
    truth_rig = rig.rig
    names = list(body.joint_names)
    errors = {}
    for side, idx in BLAZEPOSE_HANDS.items():
        s = side[0].upper()
        joints = [names.index(f"wrist.{s}"), names.index(f"finger2-1.{s}"), names.index(f"finger5-1.{s}")]
        true_n = _palm_normals(out.joints[:, joints], 0, 1, 2)
        for kind in ("pose", "hands"):
            k3 = triangulate(truth_rig, Keypoints2D(xy[kind], conf[kind], truth_rig.names, "blazepose33"))
            n = _palm_normals(k3.xyz, idx["wrist"], idx["index"], idx["pinky"])
            errors.setdefault(kind, []).append(np.degrees(np.arccos(np.clip((n * true_n).sum(-1), -1, 1))))
    median = {k: float(np.nanmedian(np.concatenate(v))) for k, v in errors.items()}
    assert median["hands"] < 16.0 and median["hands"] < median["pose"] + 4.0, median
