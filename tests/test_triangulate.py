"""Triangulation: exactness on clean data, robustness to outliers against the inlier-only DLT, swaps,
gaps, camera matching by name, and errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mocap_studio.reconstruction.keypoints import Keypoints2D
from mocap_studio.reconstruction.synthetic import make_scene, ring_rig
from mocap_studio.reconstruction.triangulate import (
    TriangulationConfig,
    fill_gaps,
    triangulate,
    triangulate_with_diagnostics,
    weighted_dlt,
)


def _extrinsics(rig):
    return np.stack([np.hstack([c.R, c.t[:, None]]) for c in rig.cameras])


def _mpjpe_mm(xyz, truth):
    return float(np.nanmean(np.linalg.norm(xyz - truth, axis=-1)) * 1000)


@pytest.fixture(scope="module")
def scene():
    return make_scene(num_frames=40, seed=3)


def test_weighted_dlt_exact_on_clean_projections():
    rig = ring_rig(4, seed=1)
    pts = np.random.default_rng(0).uniform([-1, -1, 0], [1, 1, 2], (50, 3))
    xy = rig.undistort_points(rig.project(pts))
    X = weighted_dlt(_extrinsics(rig), xy, np.ones(xy.shape[:2]))
    np.testing.assert_allclose(X, pts, atol=1e-9)
    xy[1:, 0] = np.nan  # only one view of point 0 left
    X = weighted_dlt(_extrinsics(rig), xy, np.ones(xy.shape[:2]))
    assert np.isnan(X[0]).all() and np.isfinite(X[1:]).all()
    with pytest.raises(ValueError, match="xy must have shape"):
        weighted_dlt(_extrinsics(rig), xy[..., :1], np.ones(xy.shape[:2]))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.5, 3.0))
def test_project_then_triangulate_returns_points(seed, spread):
    rig = ring_rig(5, seed=2)
    half = spread / 2
    pts = np.random.default_rng(seed).uniform([-half, -half, 0], [half, half, 2], (17, 3))
    uv = rig.project(pts[None])  # (C, 1, 17, 2)
    k3 = triangulate(rig, Keypoints2D(uv, np.ones(uv.shape[:3]), rig.names, "coco17"))
    np.testing.assert_allclose(k3.xyz[0], pts, atol=1e-6)
    assert np.nanmax(k3.error) < 1e-3
    uv[:, 0, 4] = np.nan  # NaN passes through
    k3 = triangulate(rig, Keypoints2D(uv, np.ones(uv.shape[:3]), rig.names, "coco17"))
    assert np.isnan(k3.xyz[0, 4]).all() and not k3.cameras_used[0, 4].any()


def test_robust_within_bound_of_inlier_only_dlt(scene):
    """Acceptance: 8 cameras, 2 px noise, 10 % outliers: MPJPE <= 1.2x the inlier-only weighted DLT."""
    rig, kp = scene.rig, scene.keypoints
    C, T, J = kp.confidence.shape
    xy = rig.undistort_points(kp.xy).reshape(C, -1, 2)
    inlier_only = weighted_dlt(
        _extrinsics(rig), xy, np.where(scene.inliers, kp.confidence, 0).reshape(C, -1)
    ).reshape(T, J, 3)
    naive = weighted_dlt(_extrinsics(rig), xy, kp.confidence.reshape(C, -1)).reshape(T, J, 3)
    k3, diag = triangulate_with_diagnostics(rig, kp)
    ours, ref = _mpjpe_mm(k3.xyz, scene.truth), _mpjpe_mm(inlier_only, scene.truth)
    assert ours <= 1.2 * ref, (ours, ref)
    assert ours < 12.0 and _mpjpe_mm(naive, scene.truth) > 100  # the outliers matter
    assert np.isfinite(k3.xyz).all()
    # the views used are nearly exactly the true inliers, the noise estimate is close to 2 px
    assert (k3.cameras_used.transpose(2, 0, 1) == scene.inliers).mean() > 0.97
    assert 1.5 < diag.noise_px < 2.5
    assert np.nanmedian(k3.error) < 3.0


def test_whole_view_left_right_swap_is_fixed(scene):
    rig, kp = scene.rig, scene.keypoints
    flip = kp.format.flip_permutation
    xy = np.array(kp.xy)
    xy[2, 5:15] = xy[2, 5:15][:, flip]  # camera 3 labels sides the wrong way round for 10 frames
    swapped = Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton, kp.frame_times)
    k3, diag = triangulate_with_diagnostics(rig, swapped)
    limbs = [kp.format.index(n) for n in ("left_knee", "left_ankle", "left_wrist", "left_elbow", "left_hip")]
    # a pair can be exchanged when both its observations are true detections (not synthetic outliers)
    clean = scene.inliers[2, 5:15][:, limbs] & scene.inliers[2, 5:15][:, flip[limbs]]
    assert diag.swapped[2, 5:15][:, limbs][clean].mean() > 0.9
    assert diag.swapped[:, :5].mean() < 0.01
    assert _mpjpe_mm(k3.xyz, scene.truth) < 12.0


def test_cameras_matched_by_name_and_missing_camera_named(scene):
    rig, kp = scene.rig, scene.keypoints
    order = list(reversed(kp.camera_names))
    k_rev = kp.select_cameras(order)
    a = triangulate(rig, kp, TriangulationConfig(refine=False))
    b = triangulate(rig, k_rev, TriangulationConfig(refine=False))
    np.testing.assert_allclose(a.xyz, b.xyz, atol=1e-9)
    assert b.camera_names == tuple(order)
    bad = Keypoints2D(kp.xy, kp.confidence, kp.camera_names[:-1] + ("cam_99",), kp.skeleton)
    with pytest.raises(KeyError, match="cam_99"):
        triangulate(rig, bad)


def test_min_cameras_and_all_nan_frames(scene):
    rig, kp = scene.rig, scene.keypoints
    xy = np.array(kp.xy)
    xy[:, 3] = np.nan  # a frame nobody saw
    xy[2:, 7, 0] = np.nan  # the nose of frame 7 seen by two cameras only
    kp2 = Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton)
    k3 = triangulate(rig, kp2, TriangulationConfig(min_cameras=3, max_gap_frames=0))
    assert np.isnan(k3.xyz[3]).all() and np.isnan(k3.xyz[7, 0]).all()
    assert (k3.cameras_used[k3.valid].sum(-1) >= 3).all()
    k3 = triangulate(rig, kp2, TriangulationConfig(max_gap_frames=2))
    assert np.isfinite(k3.xyz[3]).all() and k3.interpolated[3].all()
    with pytest.raises(ValueError, match="min_cameras"):
        TriangulationConfig(min_cameras=1)


def test_fill_gaps_short_and_long():
    T = 30
    xyz = np.repeat(np.linspace(0, 1, T)[:, None, None], 3, -1).repeat(2, 1)
    xyz[5:8, 0] = np.nan  # short
    xyz[10:25, 1] = np.nan  # long
    xyz[:2, 0] = np.nan  # at the start: never filled
    out, interp, gaps = fill_gaps(xyz, 5)
    np.testing.assert_allclose(out[5:8, 0, 0], np.linspace(0, 1, T)[5:8])
    assert interp[5:8, 0].all() and not interp[10:25, 1].any()
    assert (1, 10, 15) in gaps and (0, 0, 2) in gaps


def test_association_picks_the_performer_among_bystanders():
    from mocap_studio.reconstruction.associate import associate
    from mocap_studio.reconstruction.keypoints import Detections2D
    from mocap_studio.reconstruction.synthetic import walking_skeleton

    scene = make_scene(num_frames=30, num_cameras=6, outlier_fraction=0.0, seed=5)
    rig, kp = scene.rig, scene.keypoints
    rng = np.random.default_rng(0)
    others = [walking_skeleton(30, radius_m=r, seed=s, phase=s) for r, s in ((2.4, 11), (0.3, 12))]
    people = np.stack([kp.xy] + [rig.project(o) + rng.normal(0, 2, kp.xy.shape) for o in others], 2)
    # the bystanders are each out of one camera's view, so the performer is the most seen person even though
    # camera 2 misses him for 4 frames (association chooses the take's most-seen track)
    people[4, :, 1] = np.nan
    people[5, :, 2] = np.nan
    C, T, P = people.shape[:3]
    order = np.argsort(rng.random((C, T, P)), axis=-1)  # detectors list people in any order
    xy = np.take_along_axis(people, order[..., None, None], axis=2)
    conf = np.ones(xy.shape[:4])
    xy[1, 10:14, np.argmax(order[1, 10:14] == 0, axis=-1)] = np.nan  # the performer missed in camera 2
    det = Detections2D(xy, conf, kp.camera_names, kp.skeleton, kp.frame_times)
    chosen, slots = associate(rig, det)
    truth_slot = np.argmax(order == 0, axis=-1)  # where the performer went
    seen = np.ones((C, T), bool)
    seen[1, 10:14] = False
    assert (slots[seen] == truth_slot[seen]).mean() > 0.97
    assert (slots[~seen] == -1).all()
    k3 = triangulate(rig, chosen)
    assert _mpjpe_mm(k3.xyz, scene.truth) < 10


def test_both_labels_on_one_leg_in_several_views(scene):
    """A detector that marks the hidden right knee on the left knee in half the views must not pull the right
    knee onto the left one."""
    rig, kp = scene.rig, scene.keypoints
    fmt = kp.format
    lk, rk = fmt.index("left_knee"), fmt.index("right_knee")
    xy = np.array(kp.xy)
    xy[[0, 2, 4, 6], 5:15, rk] = xy[[0, 2, 4, 6], 5:15, lk]  # half the views: a tie without the fix
    k3 = triangulate(rig, Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton))
    err = np.linalg.norm(k3.xyz[5:15, rk] - scene.truth[5:15, rk], axis=-1) * 1000
    assert np.median(err) < 15 and err.max() < 40


@pytest.mark.parametrize("seed", [3, 4])
def test_mirrored_views_on_four_cameras_found_and_fixed(seed):
    """Four cameras (a phone rig): one view mirrored for 30 of 100 frames, another for 10, as MediaPipe does on
    real footage. The mirrored frames are found from the other views and fixed; no clean frame is touched."""
    scene = make_scene(num_frames=100, num_cameras=4, noise_px=2.0, outlier_fraction=0.0, frame_rate=60.0, seed=seed)
    kp, flip = scene.keypoints, scene.keypoints.format.flip_permutation
    xy = np.array(kp.xy)
    truth = np.zeros(xy.shape[:2], bool)
    truth[1, 20:50] = True
    truth[3, 70:80] = True
    xy[truth] = xy[truth][:, flip]
    k3, diag = triangulate_with_diagnostics(scene.rig, Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton,
                                                                    kp.frame_times))
    found = diag.view_swapped
    print("mirrored views: recall", found[truth].mean(), "false", found[~truth].mean())
    assert found[truth].mean() >= 0.9
    assert found[~truth].mean() <= 0.01
    limbs = [kp.format.index(n) for s in ("left", "right") for n in (f"{s}_wrist", f"{s}_elbow", f"{s}_knee",
                                                                      f"{s}_ankle", f"{s}_shoulder")]
    err = 1000 * np.linalg.norm(k3.xyz[:, limbs] - scene.truth[:, limbs], axis=-1)
    print("limb error mm: mean", np.nanmean(err), "max", np.nanmax(err))
    assert np.nanmean(err) < 15 and np.nanmax(err) < 60


def test_gross_segment_outliers_removed_before_filtering():
    """Two cameras put the left wrist 1.2 m off for 5 frames while the others miss it: the raw triangulation
    has a 1.4 m forearm there. It is removed (counted in the diagnostics) and the gap is filled, not hidden."""
    scene = make_scene(num_frames=100, num_cameras=4, noise_px=2.0, outlier_fraction=0.0, frame_rate=60.0, seed=5)
    kp = scene.keypoints
    wrist = kp.format.index("left_wrist")
    xy = np.array(kp.xy)
    wrong = scene.truth[40:45, wrist] + np.array([1.2, 0.3, 0.2])
    for c in (0, 1):
        xy[c, 40:45, wrist] = scene.rig.cameras[c].project(wrong)
    xy[2:, 40:45, wrist] = np.nan
    k3, diag = triangulate_with_diagnostics(scene.rig, Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton,
                                                                    kp.frame_times), TriangulationConfig(temporal=False))
    removed = diag.bone_outliers.removed
    assert removed[40:45, wrist].all()
    assert removed.sum() <= 8  # the elbow and the other joints are not blamed
    assert diag.bone_outliers.worst[0] == "left_elbow-left_wrist" and diag.bone_outliers.worst[1] > 1.0
    assert diag.bone_outliers.raw_variation < 0.05  # a robust spread: five bad frames barely move it
    err = 1000 * np.linalg.norm(k3.xyz[40:45, wrist] - scene.truth[40:45, wrist], axis=-1)
    assert k3.interpolated[40:45, wrist].all() and err.max() < 80


@pytest.mark.parametrize("seed", [6, 7, 8, 9])
def test_hidden_wrist_placed_by_the_camera_that_sees_it(seed):
    """A wrist hidden from two of four cameras for 20 frames, which both place it 25 cm off in agreement (a
    detector guessing alike), a third camera missing it: frame by frame the wrong pair wins; chosen over the
    take (temporal = true) the wrist follows the one camera that sees it, at the forearm's length. Where that
    camera's ray meets the forearm's sphere a second time near one wrong view (seed 7), the second cut fits two
    views and only the wrist's motion speaks against it: there it is off by about 10 cm, not 25."""
    scene = make_scene(num_frames=100, num_cameras=4, noise_px=2.0, outlier_fraction=0.0, frame_rate=60.0, seed=seed)
    kp = scene.keypoints
    wrist = kp.format.index("left_wrist")
    xy = np.array(kp.xy)
    wrong = scene.truth[40:60, wrist] + np.array([0.15, -0.2, 0.05])
    for c in (1, 2):
        xy[c, 40:60, wrist] = scene.rig.cameras[c].project(wrong)
    xy[3, 40:60, wrist] = np.nan
    kp2 = Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton, kp.frame_times)
    errors = {}
    for temporal in (False, True):
        k3 = triangulate(scene.rig, kp2, TriangulationConfig(temporal=temporal))
        errors[temporal] = 1000 * np.linalg.norm(k3.xyz[40:60, wrist] - scene.truth[40:60, wrist], axis=-1)
    print("hidden wrist error mm: frame by frame", np.nanmean(errors[False]), "over time", np.nanmean(errors[True]),
          "max", np.nanmax(errors[True]))
    assert np.isnan(errors[False]).all() or np.nanmean(errors[False]) > 150  # wrong, or removed and missing
    assert np.isfinite(errors[True]).all() and np.nanmax(errors[True]) < 150
    assert np.nanmean(errors[True]) < (100 if seed == 7 else 40)
    clean = triangulate(scene.rig, kp, TriangulationConfig(temporal=True))
    assert _mpjpe_mm(clean.xyz, scene.truth) < 1.05 * _mpjpe_mm(triangulate(scene.rig, kp, TriangulationConfig(
        temporal=False)).xyz, scene.truth)


def test_half_mirrored_view_beside_an_occluded_camera():
    """Like a real phone take: camera 0 loses the performer behind a bystander for 20 frames while camera 2
    labels only the upper body mirrored for 26 frames (legs right). The half-body check finds it from epipolar
    distances (no 3D point needed, though the two remaining cameras fix little depth) and the arms stay close."""
    scene = make_scene(num_frames=100, num_cameras=4, noise_px=2.0, outlier_fraction=0.0, frame_rate=60.0, seed=11)
    kp = scene.keypoints
    fmt, flip = kp.format, kp.format.flip_permutation
    upper = np.array([j for j, n in enumerate(fmt.joints) if flip[j] != j and not any(
        p in n for p in ("hip", "knee", "ankle", "heel", "foot"))])
    xy = np.array(kp.xy)
    xy[2, 40:66, upper] = kp.xy[2, 40:66][:, flip[upper]].transpose(1, 0, 2)
    xy[0, 40:60] = np.nan
    k3, diag = triangulate_with_diagnostics(scene.rig, Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton,
                                                                    kp.frame_times))
    found = diag.swapped[2, :, upper].T  # (T, upper joints)
    print("half mirror: frames found", found.all(1)[40:66].mean(), "false frames", found.any(1)[np.r_[0:40, 66:100]].sum())
    assert found.all(1)[40:66].mean() >= 0.9 and found.any(1)[np.r_[0:40, 66:100]].sum() <= 2
    lower = [j for j in range(fmt.num_joints) if flip[j] != j and j not in upper]
    assert not diag.swapped[2, 40:66, lower].any()
    arms = [fmt.index(f"{s}_{j}") for s in ("left", "right") for j in ("shoulder", "elbow", "wrist")]
    err = 1000 * np.linalg.norm(k3.xyz[:, arms] - scene.truth[:, arms], axis=-1)
    print("arms mm: mean", np.nanmean(err), "max", np.nanmax(err))
    assert np.nanmean(err) < 20 and np.nanmax(err) < 100


def _half(fmt, lower):
    """The left/right joints of the lower (legs) or upper half."""
    legs = ("hip", "knee", "ankle", "heel", "foot")
    return np.array([j for j, n in enumerate(fmt.joints) if fmt.flip_permutation[j] != j
                     and any(p in n for p in legs) == lower])


@pytest.mark.parametrize("seed", [5, 6])
def test_half_mirrored_in_most_views_is_turned_back(seed):
    """Three cameras: the legs labelled mirrored in two of them for 20 frames (a walker's legs crossed in two
    side views), later the upper body in another two for 15 (a body seen from behind taken for one from the
    front). The views agree with each other, so only the body's own continuity can tell: the half would be
    triangulated mirrored, its left-to-right axis reversed between two frames and against the other half's."""
    scene = make_scene(num_frames=120, num_cameras=3, noise_px=2.0, outlier_fraction=0.0, seed=seed)
    kp = scene.keypoints
    fmt, flip = kp.format, kp.format.flip_permutation
    lower, upper = _half(fmt, True), _half(fmt, False)
    xy = np.array(kp.xy)
    for views, frames, group in (([1, 2], slice(40, 60), lower), ([0, 1], slice(80, 95), upper)):
        for c in views:
            xy[c, frames, group] = kp.xy[c, frames][:, flip[group]].transpose(1, 0, 2)
    mirrored = Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton, kp.frame_times)
    legs = [fmt.index(f"{s}_{j}") for s in ("left", "right") for j in ("hip", "knee", "ankle")]
    arms = [fmt.index(f"{s}_{j}") for s in ("left", "right") for j in ("shoulder", "elbow", "wrist")]
    errors = {}
    for orient in (False, True):
        k3 = triangulate(scene.rig, mirrored, TriangulationConfig(orient_halves=orient))
        err = 1000 * np.linalg.norm(k3.xyz - scene.truth, axis=-1)
        errors[orient] = (np.nanmean(err[40:60][:, legs]), np.nanmean(err[80:95][:, arms]), np.nanmean(err[:, legs + arms]))
    print("legs / arms in their mirrored frames, all limbs (mm): views only", errors[False], "oriented", errors[True])
    assert min(errors[False][:2]) > 80  # without it each half is triangulated mirrored
    assert max(errors[True]) < 15


def test_a_spinning_performer_is_not_turned():
    """A performer spinning 1.5 turns a second (a pirouette; 18 degrees a frame at 30 fps), every label right:
    nothing is turned and the limbs stay where they are."""
    scene = make_scene(num_frames=90, num_cameras=4, noise_px=2.0, outlier_fraction=0.0, seed=8)
    kp, truth = scene.keypoints, scene.truth
    angle = 2 * np.pi * 1.5 * np.arange(len(truth)) / 30.0
    centre = truth.mean(1, keepdims=True)
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    d = truth - centre
    spun = centre + np.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1], d[..., 2]], -1)
    rng = np.random.default_rng(8)
    xy = scene.rig.project(spun) + rng.normal(0, 2.0, (len(scene.rig.cameras),) + spun.shape[:2] + (2,))
    spinning = Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton, kp.frame_times)
    k3, diag = triangulate_with_diagnostics(scene.rig, spinning)
    _, views_only = triangulate_with_diagnostics(scene.rig, spinning, TriangulationConfig(orient_halves=False))
    err = 1000 * np.linalg.norm(k3.xyz - spun, axis=-1)
    print("spinning: observations read mirrored", int(diag.swapped.sum()), "by the views alone",
          int(views_only.swapped.sum()), "error mm", np.nanmean(err))
    assert (diag.swapped == views_only.swapped).all()
    assert np.nanmean(err) < 12


def test_one_pair_read_the_other_way_round_does_not_turn_a_half():
    """Two of three views swap only the shoulders in a few frames (a single left/right pair, as a harsh phone take
    showed): the half's other parts (elbows, face) still say which way it faces, so the arms are not turned."""
    scene = make_scene(num_frames=90, num_cameras=3, noise_px=2.0, outlier_fraction=0.0, seed=5)
    kp = scene.keypoints
    fmt = kp.format
    ls, rs = fmt.index("left_shoulder"), fmt.index("right_shoulder")
    xy = np.array(kp.xy)
    frames = [30, 31, 50, 70]
    for c in (0, 1):
        xy[c, frames, ls], xy[c, frames, rs] = kp.xy[c, frames, rs], kp.xy[c, frames, ls]
    k3 = triangulate(scene.rig, Keypoints2D(xy, kp.confidence, kp.camera_names, kp.skeleton, kp.frame_times))
    arms = [fmt.index(f"{s}_{j}") for s in ("left", "right") for j in ("elbow", "wrist")]
    err = 1000 * np.linalg.norm(k3.xyz[frames][:, arms] - scene.truth[frames][:, arms], axis=-1)
    print("arms in the frames with swapped shoulders (mm): mean", err.mean(), "max", err.max())
    assert err.max() < 40


def _facing_cameras_scene(seed: int, noise_px: float = 6.0, frames: int = 60):
    """A shoulder and an elbow swinging under it; cameras A and B face each other across the performer (160
    degrees apart) and see the elbow with 6 px of noise, camera C from the side sees it exactly but below the
    trusted confidence. Returns truth (T, 2, 3), the A-B points as the robust ones, normalized observations
    (3, T, 2, 2), the views seen and the weak ones, extrinsics and focal lengths."""
    from mocap_studio.calibration.camera import look_at
    from mocap_studio.reconstruction.triangulate import weighted_dlt

    rng = np.random.default_rng(seed)
    eyes = [np.array([4.0, 0.7, 2.2]), np.array([-4.0, 0.7, 2.2]), np.array([0.0, -4.0, 2.2])]
    extrinsics = np.stack([np.hstack([R, t[:, None]]) for R, t in (look_at(e, np.array([0.0, 0.0, 1.3])) for e in eyes)])
    focal = np.full(3, 1000.0)
    t = np.arange(frames) / 30.0
    shoulder = np.stack([0.1 * np.sin(t), 0.05 * t, np.full(frames, 1.45)], -1)
    arm = np.stack([0.4 * np.cos(0.8 * t), 0.4 * np.sin(0.8 * t), np.full(frames, -0.9)], -1)
    truth = np.stack([shoulder, shoulder + 0.3 * arm / np.linalg.norm(arm, axis=-1, keepdims=True)], 1)
    cam = np.einsum("cij,tkj->ctki", extrinsics[:, :, :3], truth) + extrinsics[:, None, None, :, 3]
    xy = cam[..., :2] / cam[..., 2:3]
    xy[:2, :, 1] += rng.normal(0, noise_px / focal[0], (2, frames, 2))
    seen = np.ones((3, frames, 2), bool)
    seen[2, :, 1] = False
    robust = weighted_dlt(extrinsics[:2], xy[:2].reshape(2, -1, 2), np.ones((2, frames * 2))).reshape(frames, 2, 3)
    robust[:, 0] = shoulder
    return truth, robust, xy, seen, ~seen, extrinsics, focal


def test_weak_views_offer_the_points_facing_cameras_cannot_fix():
    from mocap_studio.reconstruction.temporal import choose_over_time

    joints = ("left_shoulder", "left_elbow")
    errors = {"robust": [], "confident": [], "weak too": []}
    for seed in range(5):
        truth, robust, xy, seen, weak, extrinsics, focal = _facing_cameras_scene(seed)
        for name, points in (
                ("robust", robust),
                ("confident", choose_over_time(robust, xy, seen, extrinsics, focal, 12.0, joints).xyz),
                ("weak too", choose_over_time(robust, xy, seen, extrinsics, focal, 12.0, joints, weak=weak).xyz)):
            errors[name].append(1000 * np.linalg.norm(points[:, 1] - truth[:, 1], axis=-1).mean())
    mean = {k: float(np.mean(v)) for k, v in errors.items()}
    # measured: the facing pair's points 59.0 mm off, chosen over time 53.6, with the weak views' candidates 45.9
    assert mean["weak too"] <= 0.9 * mean["confident"], mean
    assert mean["confident"] < mean["robust"], mean


def test_weak_views_scoring_at_half_a_views_say_helps_even_where_they_guess():
    """The crowd's weak views (a hidden view kept at a low confidence) score the candidates at half a trusted
    view's say: the side camera of the facing-cameras scene right in 70 % of the frames and a guess 40-80 px off in
    the rest."""
    from mocap_studio.reconstruction.temporal import choose_over_time

    joints = ("left_shoulder", "left_elbow")
    errors = {"confident": [], "offered": [], "scored": []}
    for seed in range(5):
        truth, robust, xy, seen, weak, extrinsics, focal = _facing_cameras_scene(seed)
        rng = np.random.default_rng(100 + seed)
        guess = rng.random(xy.shape[1]) < 0.3
        way = rng.normal(0, 1, (xy.shape[1], 2))
        off = way / np.linalg.norm(way, axis=-1, keepdims=True) * rng.uniform(40, 80, (xy.shape[1], 1)) / focal[2]
        xy[2, guess, 1] += off[guess]
        for name, options in (("confident", {}), ("offered", {"weak": weak}),
                              ("scored", {"weak": weak, "weak_weight": 0.5})):
            points = choose_over_time(robust, xy, seen, extrinsics, focal, 12.0, joints, **options).xyz
            errors[name].append(1000 * np.linalg.norm(points[:, 1] - truth[:, 1], axis=-1).mean())
    mean = {k: float(np.mean(v)) for k, v in errors.items()}
    # measured: chosen from the confident views 53.6 mm off, the weak views' candidates offered 48.6, scored 45.4
    assert mean["scored"] <= 0.96 * mean["offered"] and mean["offered"] < mean["confident"], mean
