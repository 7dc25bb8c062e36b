"""Skeleton formats, conversion by name, and the keypoint data types and files."""

import numpy as np
import pytest
from mocap_studio.reconstruction.keypoints import KeypointFileError, Keypoints2D, Keypoints3D
from mocap_studio.reconstruction.skeletons import (
    BLAZEPOSE_33,
    BODY_25,
    COCO_17,
    FORMATS,
    SMPL_24,
    convert,
    convert_confidence,
    flip_name,
    get_format,
)

EXPECTED_SIZES = {"blazepose33": 33, "coco17": 17, "halpe26": 26, "body25": 25, "body25b": 25,
                  "coco18": 18, "smpl24": 24}


@pytest.mark.parametrize("name", list(FORMATS))
def test_formats_are_trees_with_mirrored_pairs(name):
    fmt = FORMATS[name]
    assert fmt.num_joints == EXPECTED_SIZES[name]
    assert sum(p < 0 for p in fmt.parents) == 1
    for left, right in fmt.left_right_pairs:
        assert flip_name(fmt.joints[left]) == fmt.joints[right]
    perm = fmt.flip_permutation
    assert np.array_equal(perm[perm], np.arange(fmt.num_joints))
    sided = [j for j in fmt.joints if "left" in j or "right" in j]
    assert len(sided) == 2 * len(fmt.left_right_pairs)


def test_known_indices():
    assert BLAZEPOSE_33.index("left_heel") == 29 and BLAZEPOSE_33.index("right_foot_index") == 32
    assert BODY_25.index("mid_hip") == 8 and BODY_25.index("right_heel") == 24
    assert COCO_17.index("right_ankle") == 16
    assert SMPL_24.parents[SMPL_24.index("left_wrist")] == SMPL_24.index("left_elbow")
    assert get_format("BODY_25") is BODY_25 and get_format("coco-17") is COCO_17
    with pytest.raises(ValueError, match="unknown skeleton"):
        get_format("body99")


def test_convert_by_name_with_derived_joints():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(2, 3, 33, 2))
    conf = rng.uniform(0.2, 1, size=(2, 3, 33))
    out = convert(pts, "blazepose33", "body25")
    assert out.shape == (2, 3, 25, 2)
    np.testing.assert_allclose(out[..., BODY_25.index("left_knee"), :], pts[..., 25, :])
    np.testing.assert_allclose(out[..., BODY_25.index("mid_hip"), :], pts[..., [23, 24], :].mean(-2))
    np.testing.assert_allclose(out[..., BODY_25.index("left_big_toe"), :], pts[..., 31, :])
    assert np.isnan(out[..., BODY_25.index("left_small_toe"), :]).all()
    c = convert_confidence(conf, "blazepose33", "body25")
    np.testing.assert_allclose(c[..., BODY_25.index("neck")], conf[..., [11, 12]].min(-1))
    assert (c[..., BODY_25.index("left_small_toe")] == 0).all()
    # round trip through a superset keeps every joint
    back = convert(convert(pts[..., :17, :], "coco17", "halpe26"), "halpe26", "coco17")
    np.testing.assert_allclose(back, pts[..., :17, :])
    smpl = convert(pts, "blazepose33", "smpl24")
    np.testing.assert_allclose(smpl[..., SMPL_24.index("pelvis"), :], pts[..., [23, 24], :].mean(-2))
    assert np.isnan(smpl[..., SMPL_24.index("spine1"), :]).all()
    with pytest.raises(ValueError, match=r"\(\.\.\., 33, D\)"):
        convert(pts[..., :17, :], "blazepose33", "coco17")


def _kp2d(names=("cam_1", "cam_2", "cam_10"), T=4, J=17):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, size=(len(names), T, J, 2))
    xy[0, 1, 3] = np.nan
    return Keypoints2D(xy, rng.uniform(size=xy.shape[:3]), names, "COCO_17", np.arange(T) / 30)


def test_keypoints2d_checks_and_round_trip(tmp_path):
    kp = _kp2d()
    assert kp.skeleton == "coco17" and kp.confidence[0, 1, 3] == 0
    with pytest.raises(ValueError, match="xy must have shape"):
        Keypoints2D(np.zeros((2, 3, 17)), np.zeros((2, 3, 17)), ("a", "b"), "coco17")
    with pytest.raises(ValueError, match="17 joints"):
        Keypoints2D(np.zeros((2, 3, 18, 2)), np.zeros((2, 3, 18)), ("a", "b"), "coco17")
    with pytest.raises(ValueError, match="camera names"):
        Keypoints2D(np.zeros((2, 3, 17, 2)), np.zeros((2, 3, 17)), ("a",), "coco17")
    path = kp.save(tmp_path / "k2.npz")
    back = Keypoints2D.load(path, cameras=["cam_10", "cam_1"])
    assert back.camera_names == ("cam_10", "cam_1")
    np.testing.assert_allclose(back.xy[0], kp.xy[2], rtol=1e-6)
    with pytest.raises(KeyError, match="cam_3"):
        Keypoints2D.load(path, cameras=["cam_3"])
    with pytest.raises(KeypointFileError, match="keypoints3d"):
        Keypoints3D.load(path)


def test_keypoints3d_round_trip(tmp_path):
    T, J = 5, 25
    xyz = np.random.default_rng(2).normal(size=(T, J, 3))
    kp = Keypoints3D(xyz, np.ones((T, J)), np.ones((T, J, 3), bool), ("a", "b", "c"), "body25")
    back = Keypoints3D.load(kp.save(tmp_path / "k3.npz"), cameras=["c", "a"])
    np.testing.assert_array_equal(back.xyz, xyz)
    assert back.camera_names == ("c", "a") and back.cameras_used.shape == (T, J, 2)
    with pytest.raises(ValueError, match="error must have shape"):
        Keypoints3D(xyz, np.ones((T, 3)), np.ones((T, J, 3), bool), ("a", "b", "c"), "body25")


def test_layout_cues_and_identification():
    """A body read in its own layout has short, symmetric segments in anatomical order; read in another
    25-joint layout it does not, whatever the camera roll."""
    from mocap_studio.reconstruction.skeletons import identify_layout, layout_cues, layouts_with
    from mocap_studio.reconstruction.synthetic import make_scene

    assert layouts_with(25) == ("body25", "body25b") and layouts_with(17) == ("coco17",) and layouts_with(21) == ()
    kp = make_scene(num_frames=10, num_cameras=3, outlier_fraction=0.0, seed=2).keypoints
    body = convert(kp.xy, kp.skeleton, "body25").reshape(-1, 25, 2)
    rolled = body[..., ::-1] * [1, -1]  # the image turned 90 degrees
    for xy in (body, rolled):
        right, wrong = layout_cues(xy, "body25"), layout_cues(xy, "body25b")
        assert np.nanmedian(right[:, 0]) < 0.7 * np.nanmedian(wrong[:, 0])  # segment length
        assert np.nanmedian(right[:, 1]) < 0.5 * np.nanmedian(wrong[:, 1])  # left/right asymmetry
        assert right[:, 2].mean() > 0.95 > 0.6 > wrong[:, 2].mean()  # anatomical order
        choice = identify_layout(xy, ["body25", "body25b"])
        assert choice.skeleton == "body25" and choice.evidence["body25"]["preferred"] == 1.0
        assert choice.as_report()["candidates"] == ["body25", "body25b"]
    assert identify_layout(body[:3], ["body25", "body25b"]).skeleton == ""  # too few to tell
    with pytest.raises(ValueError, match=r"\(N, 25, 2\)"):
        layout_cues(body[..., :1], "body25")
    with pytest.raises(ValueError, match="one size"):
        identify_layout(body, ["body25", "coco17"])
