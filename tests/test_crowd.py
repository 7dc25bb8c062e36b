"""Each person detected again in a crop around where the other cameras place them (reconstruction/crowd.py):
the crop's pose that lies on the person's projection is taken, one lying on somebody else's or far from any is
not, a person the whole-image pass missed in a camera is added there, each person's 3D points bridge short
gaps, and a view in which a nearer person hides someone is dropped for them, not for the nearer one. A stand-in
landmarker sees, in any crop, the true bodies that fall in it (as a detector would)."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
from mocap_studio.reconstruction.crowd import (
    _one_each,
    drop_occluded,
    occlusion_cover,
    paint_others_grey,
    person_points,
    refine_in_crops,
)
from mocap_studio.reconstruction.keypoints import Keypoints2D
from mocap_studio.reconstruction.synthetic import ring_rig, walking_skeleton


def _scene(frames: int = 20):
    rig = ring_rig(4, size=(1280, 720), focal_px=1000.0, seed=3)
    a = walking_skeleton(frames, 30.0, seed=1)
    b = a + np.array([0.7, 0.0, 0.0])  # a second person 0.7 m to one side
    truth = {"p0": rig.project(a), "p1": rig.project(b)}  # (C, T, J, 2)
    return rig, (a, b), truth


def _keypoints(xy: np.ndarray, names) -> Keypoints2D:  # noqa: ANN001
    conf = np.where(np.isfinite(xy).all(-1), 0.9, 0.0)
    return Keypoints2D(xy, conf, tuple(names), "blazepose33", np.arange(xy.shape[1]) / 30.0)


class _Landmarker:
    """Sees every true body whose joints mostly fall in the crop, plus (``wrong``) a pose 200 px off."""

    def __init__(self, truth: dict, where: dict, wrong: bool = False):
        self.truth, self.where, self.wrong = truth, where, wrong

    def detect(self, crop: np.ndarray):  # noqa: ANN201
        c, t, x0, y0 = crop[0, 0, 0], crop[0, 0, 1], *self.where["origin"]
        side = crop.shape[0]
        poses = []
        for xy in self.truth.values():
            body = xy[int(c), int(t)] - (x0, y0)
            if ((body >= 0) & (body < side)).all(-1).mean() > 0.8:
                poses.append(body + np.random.default_rng(int(t)).normal(0, 1.0, body.shape))
        if self.wrong:
            poses = [p + 200.0 for p in poses]
        poses = poses[:2]
        out = np.full((2, 33, 2), np.nan)
        conf = np.zeros((2, 33))
        for k, p in enumerate(poses):
            out[k], conf[k] = p, 0.9
        return out, conf


def _run(rig, truth, people, wrong=False, max_cover=1.0, **options):  # noqa: ANN001, ANN202
    where = {"origin": (0, 0)}
    names = rig.names
    landmarker = _Landmarker(truth, where, wrong)

    def frames(path):  # noqa: ANN001, ANN202 - the camera index and frame index painted in the first pixel
        c = names.index(path)
        for t in range(truth["p0"].shape[1]):
            image = np.zeros((720, 1280, 3), np.uint8)
            yield SimpleNamespace(index=t, image=_Marked(image, c, t, where))

    @contextmanager
    def factory():  # noqa: ANN202
        yield landmarker

    import mocap_studio.reconstruction.crowd as crowd

    original = crowd._crop

    def marked_crop(image, x0, y0, side):  # noqa: ANN001, ANN202
        where["origin"] = (x0, y0)
        out = original(image.image, x0, y0, side)
        out[0, 0, :2] = (image.c, image.t)
        return out

    crowd._crop = marked_crop
    options.setdefault("follow", False)  # the batch rounds alone, unless a test follows the people
    try:
        return refine_in_crops({n: n for n in names}, rig, people, factory, frames, max_cover=max_cover, **options)
    finally:
        crowd._crop = original


class _Marked:
    def __init__(self, image, c, t, where):  # noqa: ANN001
        self.image, self.c, self.t, self.where = image, c, t, where
        self.shape = image.shape


def test_person_points_bridge_short_gaps():
    rig, (a, _), truth = _scene()
    xy = truth["p0"].copy()
    xy[:, 5:8] = np.nan  # nobody saw the person for 3 frames
    xy[1:, 12:] = np.nan  # one camera only from frame 12: no 3D there
    X = person_points(rig, _keypoints(xy, rig.names), max_gap_frames=5)
    assert np.nanmax(np.linalg.norm(X[:12] - a[:12], axis=-1)) < 0.05  # the gap filled along the walk
    assert np.isnan(X[13:]).all()


def test_person_points_carried_towards_the_takes_ends():
    rig, (a, _), truth = _scene(frames=30)
    xy = truth["p0"].copy()
    xy[:, :3] = np.nan  # the take starts and ends without the person
    xy[:, 24:] = np.nan
    kp = _keypoints(xy, rig.names)
    assert np.isnan(person_points(rig, kp)[24:]).all()  # not carried unless asked
    X = person_points(rig, kp, extend_frames=4)
    assert np.isnan(X[28:]).all() and np.isfinite(X[:28]).all()  # 4 frames at the end, all 3 at the start
    drift = np.linalg.norm(X[24:28].mean(1) - a[24:28].mean(1), axis=-1)
    assert drift.max() < 0.05  # the body carried at its walking velocity: within a few cm of where it went
    held = np.linalg.norm(a[23].mean(0) - a[27].mean(0))
    assert drift[-1] < 0.7 * held  # ... nearer than holding the last pose still would be
    part = xy.copy()
    part[:, 3:9, 23:] = np.nan  # first seen without the legs for 6 frames: carried all the same, legs and all
    X = person_points(rig, _keypoints(part, rig.names), extend_frames=4)
    assert np.isfinite(X[:3]).all() and np.isnan(X[3:9, 23:]).all()
    assert np.linalg.norm(X[:3].mean(1) - a[:3].mean(1), axis=-1).max() < 0.05  # the body where it went
    uv, true_uv = rig.project(X[:3]), rig.project(a[:3])  # the crop it places (1.3 times its projected body)
    centre, side = (uv.min(-2) + uv.max(-2)) / 2, 1.3 * (uv.max(-2) - uv.min(-2)).max(-1)
    assert (np.abs(true_uv - centre[..., None, :]) <= side[..., None, None] / 2).all()  # holds the whole body
    gap = xy.copy()
    gap[1:, 10:12] = np.nan  # a frame seen by one camera is not empty: nothing carried into it
    assert np.isnan(person_points(rig, _keypoints(gap, rig.names), max_gap_frames=0, extend_frames=4)[10:12]).all()


def test_crops_replace_missing_and_misplaced_detections():
    rig, _, truth = _scene()
    p0 = truth["p0"].copy()
    p0[2, 4:10] = np.nan  # the whole-image pass missed p0 in camera 2
    p0[1, 10:14] = truth["p1"][1, 10:14]  # and took p1's detection for p0's in camera 1
    p0[0] += 30.0  # and places p0's joints 30 px off in camera 0
    people = {"p0": _keypoints(p0, rig.names), "p1": _keypoints(truth["p1"].copy(), rig.names)}
    out, figures = _run(rig, truth, people)
    err = np.linalg.norm(out["p0"].xy - truth["p0"], axis=-1)
    assert np.nanmax(err) < 6.0 and (out["p0"].confidence > 0).all()  # every view of p0 is now p0's
    assert figures["added"] >= 6 and figures["replaced"] > 0 and figures["hidden_views_dropped"] == 0
    assert np.nanmax(np.linalg.norm(out["p1"].xy - truth["p1"], axis=-1)) < 6.0


def test_crops_then_drop_the_views_a_nearer_person_hides():
    rig, (a, b), truth = _scene()  # 0.7 m apart along x: cameras on that axis see one behind the other
    people = {"p0": _keypoints(truth["p0"].copy(), rig.names), "p1": _keypoints(truth["p1"].copy(), rig.names)}
    out, figures = _run(rig, truth, people, max_cover=0.3)
    cover = occlusion_cover(rig, {"p0": a, "p1": b}, rig.names)
    for pid in ("p0", "p1"):
        hidden = cover[pid] > 0.3
        assert ((out[pid].confidence > 0).any(-1) == ~hidden).all()
    hidden = sum(int((c > 0.3).sum()) for c in cover.values())
    rounds = len(figures["rounds"])
    assert [r["hidden_views_dropped"] for r in figures["rounds"]] == [hidden] * rounds and hidden > 0
    assert figures["hidden_views_dropped"] == rounds * hidden  # each round's crops find them again; each drops them


def test_rounds_and_progress():
    rig, _, truth = _scene(frames=6)
    people = {"p0": _keypoints(truth["p0"].copy(), rig.names), "p1": _keypoints(truth["p1"].copy(), rig.names)}
    told = []
    out, figures = _run(rig, truth, people, rounds=3, progress=lambda m, d, n: told.append((m, d, n)))
    assert len(figures["rounds"]) == 3 and figures["crops"] == sum(r["crops"] for r in figures["rounds"]) > 0
    assert told[0] == ("detecting every person again in crops (round 1 of 3)", 0, 4)
    assert told[-1] == ("detecting every person again in crops (round 3 of 3)", 4, 4) and len(told) == 15
    with pytest.raises(ValueError, match="rounds"):
        _run(rig, truth, people, rounds=0)


def test_poses_far_from_the_projection_are_not_taken():
    rig, _, truth = _scene()
    people = {"p0": _keypoints(truth["p0"].copy(), rig.names), "p1": _keypoints(truth["p1"].copy(), rig.names)}
    out, figures = _run(rig, truth, people, wrong=True)
    assert figures["replaced"] == figures["added"] == 0
    assert np.allclose(out["p0"].xy, truth["p0"], equal_nan=True)


def _hiding_scene(frames: int = 10):
    """p1 stands 1.2 m in front of p0 on the line to camera 1 (the first camera): there it hides p0; camera 3,
    across the ring, sees p1 behind p0."""
    rig = ring_rig(4, size=(1280, 720), focal_px=1000.0, seed=3)
    a = walking_skeleton(frames, 30.0, seed=1)
    centre = a.mean((0, 1))
    eye = rig[rig.names[0]].center
    toward = (eye - centre) * np.array([1.0, 1.0, 0.0])
    b = a + 1.2 * toward / np.linalg.norm(toward)
    return rig, {"p0": a, "p1": b}


def test_occlusion_cover_knows_who_hides_whom():
    rig, points = _hiding_scene()
    cover = occlusion_cover(rig, points, rig.names)
    assert cover["p0"].shape == (4, 10)
    assert cover["p0"][0].min() > 0.6  # camera 1: p1 is in front of p0 and covers most of p0's box
    assert cover["p1"][0].max() == 0.0  # ... and nobody is in front of p1 there
    assert cover["p1"][2].min() > 0.3 and cover["p0"][2].max() == 0.0  # camera 3, across: the other way round
    far = {"p0": points["p0"], "p1": points["p1"] + np.array([0.0, 0.0, 50.0])}  # p1 far off every picture
    assert np.nanmax(occlusion_cover(rig, far, rig.names)["p0"]) == 0.0
    gone = {"p0": points["p0"], "p1": np.where(np.arange(10)[:, None, None] < 5, points["p1"], np.nan)}
    partly = occlusion_cover(rig, gone, rig.names)
    assert np.isnan(partly["p1"][:, 5:]).all() and partly["p0"][0, 5:].max() == 0.0  # p1 gone: p0 not hidden


def test_hidden_views_are_dropped_and_no_others():
    rig, points = _hiding_scene()
    cover = occlusion_cover(rig, points, rig.names)
    kp = _keypoints(rig.project(points["p0"]), rig.names)
    out, dropped = drop_occluded(kp, cover["p0"], 0.3)
    hidden = cover["p0"] > 0.3
    assert dropped == hidden.sum() > 0 and (out.confidence[hidden] == 0).all()
    assert np.array_equal(out.confidence[~hidden], kp.confidence[~hidden])
    kept, _ = drop_occluded(kp, cover["p0"], 0.3, keep=4)  # the least hidden views kept whatever hides them
    assert np.array_equal(kept.confidence, kp.confidence)


def test_the_others_are_painted_out_of_a_persons_crop():
    # three upright sticks (one bone each) in a 400 px crop at (100, 50): p0 the person looked for, 4 m away;
    # p1 behind p0 (5 m) crossing it; p2 in front (3 m) crossing it; focal 1000 px
    bones = ((0, 1),)
    stick = lambda x: np.array([[[x, 60.0], [x, 400.0]]])  # noqa: E731  (T=1, J=2, 2), picture pixels
    proj = {"p0": stick(300.0), "p1": stick(330.0), "p2": stick(200.0)}
    proj["p2"][0, 1] = (420.0, 400.0)  # p2 leans across p0
    depth = {"p0": np.array([4.0]), "p1": np.array([5.0]), "p2": np.array([3.0])}
    image = np.full((400, 400, 3), 200, np.uint8)
    painted = paint_others_grey(image, (100, 50), "p0", proj, depth, 0, 1000.0, bones)
    assert (image[painted] == 127).all() and (image[~painted] == 200).all()
    assert not painted[260:340, 200].any()  # p0's own body (x 300 in the picture: 200 in the crop) stays
    assert painted[300, 200 + 50]  # ... p1 beside it, where p0 is not, goes (p1 is 0.22 m * 1000 / 5 = 44 px wide)
    assert not painted[300, 200 + 20]  # p1 where it overlaps p0 is p0's (p0 is in front)
    assert painted[164, 200]  # p2, in front, is painted where it crosses p0: (100, 10) to (320, 350) in the crop
    assert paint_others_grey(image.copy(), (100, 50), "p0", proj, {**depth, "p0": np.array([np.nan])}, 0, 1000.0,
                             bones).sum() == 0  # p0's depth unknown: nothing painted


def _crossing(frames: int = 60):
    """Two people walking past each other 0.6 m apart (a along +y at 0.5 m/s, b the other way): their centres
    come within 0.6 m halfway through."""
    rig = ring_rig(4, size=(1280, 720), focal_px=1000.0, seed=3)
    a = walking_skeleton(frames, 30.0, seed=1)
    b = a[::-1] + np.array([0.6, 0.0, 0.0])
    return rig, (a, b), {"p0": rig.project(a), "p1": rig.project(b)}


def _on(kp: Keypoints2D, truth: np.ndarray) -> np.ndarray:
    """(T,) bool: frames in which ``kp`` is seen in two or more cameras, every view within 6 px of ``truth``."""
    seen = (kp.confidence > 0).any(-1)
    err = np.nanmax(np.where(seen[..., None], np.linalg.norm(kp.xy - truth, axis=-1), 0.0), axis=(0, 2))
    return (seen.sum(0) >= 2) & (err < 6.0)


def test_following_keeps_who_is_who_where_the_seeds_change_places():
    rig, _, truth = _crossing()
    swapped = {"p0": truth["p0"].copy(), "p1": truth["p1"].copy()}
    swapped["p0"][:, 30:], swapped["p1"][:, 30:] = truth["p1"][:, 30:], truth["p0"][:, 30:]  # the association's swap
    people = {pid: _keypoints(xy, rig.names) for pid, xy in swapped.items()}
    told = []
    out, figures = _run(rig, truth, people, follow=True, rounds=1, paint_others=False,
                        progress=lambda m, d, n: told.append((m, d, n)))
    assert _on(out["p0"], truth["p0"]).all() and _on(out["p1"], truth["p1"]).all()  # every frame, on their own body
    assert figures["taken_up"] == 2 and figures["given_up"] == 0 and figures["crops"] == 2 * 4 * 60
    assert told[0] == ("following every person in crops (round 1 of 1)", 0, 60) and told[-1][1:] == (60, 60)
    batch, _ = _run(rig, truth, people, rounds=1, paint_others=False)  # crops placed from the seeds keep the swap
    assert _on(batch["p0"], truth["p1"])[30:].all()


def test_a_person_the_seeds_lost_is_taken_up_from_another_track():
    rig, _, truth = _crossing()
    people = {"p0": _keypoints(truth["p0"].copy(), rig.names),  # both kept tracks on a: b was lost
              "p1": _keypoints(truth["p0"].copy(), rig.names)}
    late = truth["p1"].copy()
    late[:, :5] = np.nan  # another track, not kept, on b from frame 5
    out, figures = _run(rig, truth, people, follow=True, rounds=1, paint_others=False,
                        candidates=[_keypoints(late, rig.names)])
    assert _on(out["p0"], truth["p0"]).all()
    found = _on(out["p1"], truth["p1"])
    assert found[5:].all() and not (out["p1"].confidence[:, :5] > 0).any()  # p1 is b from frame 5, nobody before
    assert figures["taken_up"] == 2
    out, _ = _run(rig, truth, people, follow=True, rounds=1, paint_others=False)
    assert not (out["p1"].confidence > 0).any()  # nowhere to take p1 up from: not put on a's body


def test_two_people_found_on_one_body_are_one():
    torso = np.arange(33)
    body = np.zeros((33, 3))
    found = {"p0": body, "p1": body + 0.1, "p2": body + 2.0}
    expected = {"p0": body, "p1": body + 0.5, "p2": body + 2.0}
    assert _one_each(found, expected, set(), 0.3, torso) == 1 and set(found) == {"p0", "p2"}  # p1 strayed farther
    found = {"p0": body, "p1": body + 0.1}
    assert _one_each(found, {"p0": body + 0.5, "p1": body}, {"p1"}, 0.3, torso) == 1 and set(found) == {"p0"}


def test_a_person_is_not_taken_up_on_a_body_away_from_their_seed():
    """The association's pose for b at the take's start lies between a and b (its cameras paired from both), 0.4 m
    from a along the line of two opposite cameras, which see a there within the gate and nobody else: taken up
    there, b's crops would land on a and stay (a, not yet seeded, could then not be taken up within 0.45 m of
    them). A take-up whose body lies over 0.3 m from the seed is refused; b is taken up where the seed is good."""
    rig = ring_rig(4, size=(1280, 720), focal_px=1000.0, seed=3)
    a = walking_skeleton(30, 30.0, seed=1)
    axis = rig.cameras[0].center - rig.cameras[2].center
    axis[2] = 0.0
    axis /= np.linalg.norm(axis)
    side = np.cross([0.0, 0.0, 1.0], axis)
    b = a + 1.0 * side
    truth = {"p0": rig.project(a), "p1": rig.project(b)}
    seed_a, seed_b = truth["p0"].copy(), truth["p1"].copy()
    seed_a[:, :10] = np.nan  # a: not seeded before frame 10
    seed_b[:, :10] = rig.project(a[:10] + 0.4 * axis)  # b: between the two, 0.4 m from a
    people = {"p0": _keypoints(seed_a, rig.names), "p1": _keypoints(seed_b, rig.names)}
    out, figures = _run(rig, truth, people, follow=True, rounds=1, paint_others=False)
    assert _on(out["p0"], truth["p0"])[10:].all() and _on(out["p1"], truth["p1"])[10:].all()
    assert not _on(out["p1"], truth["p0"]).any() and figures["refused"] >= 10
    out, _ = _run(rig, truth, people, follow=True, rounds=1, paint_others=False, take_up_m=np.inf)
    assert _on(out["p1"], truth["p0"])[:10].all()  # without it b is taken up on a


class _Anatomical:
    """A stand-in landmarker that knows the crop's true pose (J, 2) and labels joints by their looks, as a detector
    does: in the mirrored picture the left wrist looks like a right one, so each place comes back under its
    mirror joint's label, at x -> W - x. ``errors`` (plain, mirrored): offsets (J, 2) each pass adds."""

    def __init__(self, image: np.ndarray, pose: np.ndarray, errors: tuple[np.ndarray, np.ndarray]):
        self.image, self.pose, self.errors = image, pose, errors
        self.calls = []

    def detect(self, image: np.ndarray):  # noqa: ANN201
        from mocap_studio.reconstruction.skeletons import get_format

        mirrored = not np.array_equal(image, self.image)
        assert not mirrored or np.array_equal(image, self.image[:, ::-1])
        self.calls.append(mirrored)
        pose = self.pose.copy()
        if mirrored:
            pose[:, 0] = image.shape[1] - pose[:, 0]
            pose = pose[get_format("blazepose33").flip_permutation]
        pose = pose + self.errors[mirrored]
        out, conf = np.full((2, 33, 2), np.nan), np.zeros((2, 33))
        out[0], conf[0] = pose, 0.9
        return out, conf


def test_the_flip_test_averages_what_both_passes_see_and_doubts_what_they_do_not():
    """FlipTest looks at the crop and at its mirror image and brings the mirrored pose back (x -> W - x, left and
    right swapped): a perfect detector's two passes then agree to the pixel. Where each pass is off by its own
    few pixels, the joint is their average; where the mirrored pass takes the left wrist for the right one (a
    mix-up the plain pass does not make), the plain pass's place stays at a lower confidence."""
    from mocap_studio.reconstruction.crowd import FlipTest
    from mocap_studio.reconstruction.skeletons import get_format

    fmt = get_format("blazepose33")
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (300, 300, 3), np.uint8)
    pose = walking_skeleton(1, 30.0, seed=2)[0][:, [0, 2]] * (-150.0, -150.0) + (150.0, 150.0)  # front view, 1.5 m ~ 225 px
    zero = np.zeros((33, 2))
    with FlipTest(_Anatomical(image, pose, (zero, zero)), fmt.flip_permutation) as flip:
        xy, conf = flip.detect(image)
    assert flip.landmarker.calls == [False, True]
    np.testing.assert_allclose(xy[0], pose, atol=1e-9)
    np.testing.assert_allclose(conf[0], 0.9)

    plain, mirrored = rng.normal(0, 3.0, (33, 2)), rng.normal(0, 3.0, (33, 2))
    left, right = fmt.joints.index("left_wrist"), fmt.joints.index("right_wrist")
    swapped = pose.copy()
    swapped[:, 0] = 300 - swapped[:, 0]
    swapped = swapped[fmt.flip_permutation]
    mirrored[fmt.flip_permutation[left]] += swapped[fmt.flip_permutation[right]] - swapped[fmt.flip_permutation[left]]
    xy, conf = FlipTest(_Anatomical(image, pose, (plain, mirrored)), fmt.flip_permutation).detect(image)
    back = mirrored[fmt.flip_permutation] * (-1.0, 1.0)  # the mirrored pass's errors, seen in the plain picture
    others = np.setdiff1d(np.arange(33), [left])
    np.testing.assert_allclose(xy[0, others], pose[others] + (plain[others] + back[others]) / 2, atol=1e-9)
    assert np.linalg.norm(xy[0, others] - pose[others], axis=-1).mean() < \
        0.8 * np.linalg.norm(plain[others], axis=-1).mean()
    np.testing.assert_allclose(xy[0, left], pose[left] + plain[left])  # the plain pass's left wrist
    assert np.linalg.norm(xy[0, left] - pose[right]) > 20  # ... not the right one, where the mirror put it
    assert conf[0, left] < 0.9 and (conf[0, others] == 0.9).all()
    assert np.isnan(xy[1]).all() and (conf[1] == 0).all()


def test_a_hidden_view_can_stay_as_a_weak_view():
    rig, points = _hiding_scene()  # camera 1: p1 in front of p0, covering most of p0's box
    kp = _keypoints(rig.project(points["p0"]), rig.names)
    conf = kp.confidence.copy()
    conf[0, :, 5] = 0.0  # a joint camera 1 did not detect
    kp = Keypoints2D(kp.xy, conf, kp.camera_names, kp.skeleton, kp.frame_times)
    cover = occlusion_cover(rig, points, rig.names)
    hidden = cover["p0"] > 0.3
    out, dropped = drop_occluded(kp, cover["p0"], 0.3, keep=0, hidden_confidence=0.1)
    assert dropped == hidden.sum() > 0 and hidden[0].all()
    weak = out.confidence[hidden]  # (views, J): every detected joint of a hidden view at 0.1, the others 0
    assert np.array_equal(weak, np.where(kp.confidence[hidden] > 0, 0.1, 0.0)) and (out.confidence[0, :, 5] == 0).all()
    assert np.array_equal(out.confidence[~hidden], kp.confidence[~hidden]) and np.array_equal(out.xy, kp.xy)
    plain, n = drop_occluded(kp, cover["p0"], 0.3, keep=0)  # without it, the whole view goes
    assert n == dropped and (plain.confidence[hidden] == 0).all()
