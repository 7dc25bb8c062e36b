"""Several people in a crowd: each person's 2D keypoints detected again in a crop around where the other cameras
place them.

A pose detector run on the whole image (MediaPipe's multi-pose mode) misses people who overlap in a view and
misplaces the joints of those it finds there (its person detector sees the whole frame at 224 px and scores
overlapping people low). Once the people are associated and followed (:mod:`.associate`), each person is
triangulated per frame from their own views (gaps up to ``max_gap_s`` bridged linearly), projected into every
camera, and the landmarker is run again on a square crop around the projection (``margin`` times the projected
body's larger side, at least ``min_side_px``), with everybody else painted out of the crop
(:func:`paint_others_grey`), asked for two poses. The pose nearest the projection is taken
when its joints lie within ``gate`` of the projected body's height of it (median over the confident joints) and
nearer it than any other person's projection (a crop of two overlapping people can find the other one); it
replaces the person's detection in that camera and frame, or adds one where the whole-image pass found nobody.
Elsewhere the association's detection stays.

The crop is painted because the landmarker mixes up people who overlap in it, whichever is in front: it puts
a hidden person's joints on the limbs of whoever hides them, and takes the limbs of someone standing behind a
person for that person's own. So every other person's body, as their triangulation projects it (their bones drawn
0.22 m wide at their depth), is painted grey: a person nearer the camera whole, one farther away except where the
person looked for covers them. Measured on the studio's three crossing performers (a round of crops from the
same detections, painted or not): MPJPE 62 / 83 / 48 -> 42 / 54 / 48 mm and found 100 / 100 / 92.5 ->
100 / 100 / 100 %; painting only those farther away 52 / 67 / 46 mm.

Then the views in which a person is hidden are dropped. Painting a nearer person out leaves the landmarker
nothing of the hidden parts to see, so it guesses them. Every person's body box and depth is projected from
their triangulation into every camera (:func:`occlusion_cover`), and a person's view whose box a nearer person's
covers more than ``max_cover`` of is dropped (:func:`drop_occluded`); a frame left with fewer than two views stays
missing (the triangulate stage bridges short gaps). Before the painting this was the larger gain (views covered
over half are 28-31 % of the studio take's, their joints 20-47 px off against 6-10 px; MPJPE 105 / 130 / 68 ->
78 / 88 / 60 mm with 30 %); with it, a third round from the same detections gave 36 / 55 / 45 mm dropping none,
39 / 55 / 39 mm over 50 % and 46 / 57 / 39 mm over 30 %.

A dropped view is not all guesses, though: the joints there that no nearer person's body covers are seen, past
the nearer person's shoulder or beside their legs. On the studio's seed 0 (body joints against the truth's
projection) they lie 8.9 px from the truth (median; 22 % over 40 px), the covered ones 35.3 px (45 %), the kept
views' 5.1 px (8 %). So with ``hidden_confidence`` a dropped view stays, every joint at that confidence: a weak
view, which the triangulation does not trust but takes candidate points from and lets score them at a fraction
of a trusted view's say (``[triangulate] crowd_weak_view_weight``). Keeping only the joints nobody covers (the
joint and its detection off the nearer people's painted bones) did no better on two takes and worse once the
weak views scored; dropping the covered joints of the views kept (20.3 px, 29 % over 40) cost more than it
gained (seed 0's body MPJPE 27.1 / 34.7 / 26.1 -> 30.2 / 39.4 / 28.0 mm: it often leaves a joint one view).
Figures in the README ("Several people in one take").

The first round follows the people (:func:`follow_in_crops`): the association's tracks can change places where
people cross (the whole-image pass mixes up the people who overlap in a view, so a track's centre slides from one
person onto the other through mixed pairings), and crops placed from a track that did follow it. So the first
round reads every camera side by side, frame by frame, and looks for each person where their own last pose, moved
at their recent velocity, projects; the association only says where to take a person up: at the start, and where
they were lost for ``max_gap_s`` (from their own track, else from any track not kept, at a place nobody else is
looked for). Two people found on one body are one (the one just taken up, else the one farther from where they
were expected, gives it up). On a held-out studio take (seed 7) whose association joined two performers' pieces
across a crossing, one round with the full model: found 72 / 94 / 63 -> 100 / 100 / 100 %, MPJPE
85 / 73 / 182 -> 40 / 42 / 36 mm, no frame nearer another performer.

Crops, painting and drop run ``rounds`` times: each round places its crops and paints the others from the people
as the last round left them, so its projections are nearer the truth, its painting fits the bodies better and it
finds more. Measured from the whole-image pass: two rounds found 99.2 / 95 / 96.7 %, MPJPE 47 / 64 / 51 mm; three
100 / 100 / 96.7 %, 42 / 59 / 40 mm; a fourth from there gained nothing (38 / 52 / 43 mm). Each round costs a
landmarker run per person, camera and frame: 45 s for the 4 s studio take's 1430 crops on 2 cores.
``max_gap_s`` (2 s) bridges a person lost for up to that long with a straight line, to look for them there: a
crop that misses still takes nothing, as the gate holds (the third performer found in 78 -> 90 % of frames
against a 0.5 s bridge). A person the take starts or ends without is looked for up to ``extend_s`` further
out, their first and last poses carried at the body's velocity (89.2 -> 90.8 %), also where the first frames
saw them only in part (a held-out take's performer, seen whole only from her 38th frame, was missed for her first 12).

Every crop can be looked at mirrored as well (:class:`FlipTest`, the stage's default): what the detector sees
comes out the same both ways and its guesses do not, so the joints the two passes agree on are averaged and the
others kept at a lower confidence; the people are followed and the crops placed from steadier poses (figures in
its docstring).

Arrays: cameras C, frames T, joints J; pixels; each person a :class:`Keypoints2D` (C, T, J) in the cameras'
order, frame k of every camera being its k-th recorded frame.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.reconstruction.keypoints import Detections2D, Keypoints2D
from mocap_studio.reconstruction.tracks import make_views, triangulate_views
from mocap_studio.reconstruction.triangulate import match_rig

log = logging.getLogger(__name__)

__all__ = ["FlipTest", "drop_occluded", "fuse_flip_test", "occlusion_cover", "paint_others_grey",
           "person_points", "refine_in_crops"]


def person_points(rig: CameraRig, kp: Keypoints2D, min_confidence: float = 0.3, max_gap_frames: int = 15,
                  outlier_px: float = 20.0, extend_frames: int = 0) -> np.ndarray:
    """(T, J, 3) the person's joints triangulated per frame from every camera that saw them (NaN where fewer than
    two did), from the largest set of views that agree within ``outlier_px`` (another person's detection taken for
    this one's, or joints misplaced where people overlap, left out), each joint's gaps of up to ``max_gap_frames``
    frames filled linearly; with ``extend_frames``, the first and last poses (each joint they lack from its
    nearest frame) carried up to that many frames further out, towards the take's ends, at the body's velocity
    over their 5 nearest frames (where to look for a person the take starts or ends without)."""
    C, T, J = kp.confidence.shape
    rig = match_rig(rig, kp.camera_names, "keypoints")
    det = Detections2D(kp.xy[:, :, None], kp.confidence[:, :, None], kp.camera_names, kp.skeleton, kp.frame_times)
    views = make_views(rig, det, min_confidence, 1)
    obs = views.xy[:, :, 0].transpose(1, 2, 0, 3).reshape(T * J, C, 2)
    # per frame the largest set of views that agree: every pair of views triangulated, the views whose detections
    # lie within outlier_px of the pair's point (median over the joints) counted, the most (then the closest) kept
    best_count, best_error = np.zeros(T), np.full(T, np.inf)
    keep = np.ones((T, C), bool)
    for i, j in itertools.combinations(range(C), 2):
        pair = np.full_like(obs, np.nan)
        pair[:, [i, j]] = obs[:, [i, j]]
        proj = triangulate_views(views, pair)[1]
        err = np.nanmedian((np.linalg.norm(proj - obs, axis=-1) * views.focal[None]).reshape(T, J, C), axis=1)
        agree = np.nan_to_num(err, nan=np.inf) < outlier_px  # (T, C)
        count = agree.sum(1)
        spread = np.where(agree, err, 0.0).sum(1) / np.maximum(count, 1)
        better = (count > best_count) | ((count == best_count) & (spread < best_error))
        better &= count >= 2
        keep[better], best_count[better], best_error[better] = agree[better], count[better], spread[better]
    obs = np.where(np.repeat(keep[:, None, :, None], J, axis=1).reshape(T * J, C, 1), obs, np.nan)
    X = triangulate_views(views, obs)[0].reshape(T, J, 3)
    frames = np.arange(T)
    for j in range(J):
        good = np.isfinite(X[:, j]).all(-1)
        if good.sum() < 2:
            continue
        idx = np.flatnonzero(good)
        gap = np.diff(idx)
        for a, g in zip(idx[:-1], gap, strict=True):
            if 1 < g <= max_gap_frames + 1:
                span = frames[a + 1:a + g]
                for k in range(3):
                    X[span, j, k] = np.interp(span, [a, a + g], [X[a, j, k], X[a + g, j, k]])
    if extend_frames > 0:
        _extend_ends(X, extend_frames)
    return X


def _extend_ends(X: np.ndarray, frames: int, window: int = 5) -> None:
    """Carry the person's pose at each end of ``X`` (T, J, 3), in place, up to ``frames`` frames towards the
    take's ends (only into frames with no joint at all), moving rigidly at the body's velocity over the ``window``
    frames with joints nearest that end (the median of the joints' steps). The pose carried is the end frame's,
    each joint it lacks taken from the nearest frame that has it and moved with the body: a person first seen in
    part (some joints under the confidence in all but one view) is carried too, not only one first seen whole."""
    has = np.isfinite(X).all(-1)  # (T, J)
    some = np.flatnonzero(has.any(-1))
    if len(some) < 2:
        return
    for edge, inward in ((some[-1], -1), (some[0], 1)):
        near = some[:window] if inward == 1 else some[::-1][:window]
        steps = (X[near[1:]] - X[near[:-1]]) / (near[1:] - near[:-1])[:, None, None]  # (n - 1, J, 3)
        steps = steps.reshape(-1, 3)[np.isfinite(steps.reshape(-1, 3)).all(-1)]
        velocity = np.median(steps, axis=0) if len(steps) else np.zeros(3)
        pose = X[edge].copy()
        for j in np.flatnonzero(~has[edge]):
            seen = np.flatnonzero(has[:, j])
            if len(seen):
                k = seen[np.argmin(np.abs(seen - edge))]
                pose[j] = X[k, j] + velocity * (edge - k)
        for k in range(1, frames + 1):
            t = edge - inward * k
            if not 0 <= t < len(X) or has[t].any():
                break
            X[t] = pose + velocity * (t - edge)


def _project_people(camera, points: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # noqa: ANN001
    """Every person's points (id -> (T, J, 3)) seen by ``camera``: id -> (T, J, 2) pixels, and id -> (T,) the
    body's mean depth in metres (NaN in frames without points)."""
    uv, depth = {}, {}
    for pid, X in points.items():
        uv[pid] = camera.project(X.reshape(-1, 3)).reshape(X.shape[0], X.shape[1], 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames without points
            depth[pid] = np.nanmean((X.reshape(-1, 3) @ camera.R.T + camera.t)[:, 2].reshape(X.shape[:2]), 1)
    return uv, depth


def occlusion_cover(rig: CameraRig, points: dict[str, np.ndarray], camera_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """id -> (C, T): how much of each person's body box in each camera and frame another person nearer that camera
    hides (the largest share of the box's area covered by one nearer person's box), from every person's 3D points
    ``points`` (id -> (T, J, 3), NaN where unknown) projected through the cameras ``camera_names`` of ``rig``.
    NaN where the person has no points in that frame; 0 where nobody nearer overlaps them."""
    ids = list(points)
    if not ids:
        return {}
    T = next(iter(points.values())).shape[0]
    for pid, X in points.items():
        if X.ndim != 3 or X.shape[0] != T or X.shape[2] != 3:
            raise ValueError(f"person {pid}: points must be (T, J, 3) with T = {T}, got {X.shape}")
    cover = {pid: np.full((len(camera_names), T), np.nan) for pid in ids}
    for c, name in enumerate(camera_names):
        uv, depth = _project_people(rig[name], points)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames without points
            boxes = {pid: np.concatenate([np.nanmin(uv[pid], 1), np.nanmax(uv[pid], 1)], -1) for pid in ids}  # (T, 4)
        for pid in ids:
            lo, hi = boxes[pid][:, :2], boxes[pid][:, 2:]
            area = np.prod(np.clip(hi - lo, 1e-6, None), -1)
            worst = np.where(np.isfinite(area) & np.isfinite(depth[pid]), 0.0, np.nan)
            for other in ids:
                if other == pid:
                    continue
                lo2, hi2 = boxes[other][:, :2], boxes[other][:, 2:]
                inter = np.prod(np.clip(np.minimum(hi, hi2) - np.maximum(lo, lo2), 0, None), -1)
                nearer = depth[other] < depth[pid]  # False where either is unknown
                worst = np.where(nearer, np.fmax(worst, inter / area), worst)
            cover[pid][c] = worst
    return cover


def drop_occluded(kp: Keypoints2D, cover: np.ndarray, max_cover: float, keep: int = 2,
                  hidden_confidence: float = 0.0) -> tuple[Keypoints2D, int]:
    """``kp`` (C, T, J) without its views (camera and frame) that a nearer person hides more than ``max_cover`` of
    (``cover`` (C, T) from :func:`occlusion_cover`), except that the ``keep`` least hidden views that have a
    detection always stay (a frame seen only through others keeps its best views). With ``hidden_confidence``
    above 0, a dropped view's detected joints stay at that confidence instead (below the triangulation's trusted
    one, they are weak views: :class:`~mocap_studio.reconstruction.triangulate.TriangulationConfig`
    ``candidate_min_confidence``). -> (keypoints, views dropped)."""
    C, T = kp.confidence.shape[:2]
    if cover.shape != (C, T):
        raise ValueError(f"cover must be (C, T) = {(C, T)}, got {cover.shape}")
    seen = (kp.confidence > 0).any(-1)
    hidden = np.nan_to_num(cover, nan=0.0)
    order = np.argsort(np.where(seen, hidden, np.inf), axis=0, kind="stable")  # least hidden seen views first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(C)[:, None].repeat(T, 1), axis=0)
    drop = seen & (hidden > max_cover) & (rank >= keep)
    weak = (kp.confidence > 0) & np.isfinite(kp.xy).all(-1)
    conf = np.where(drop[..., None], np.where(weak, hidden_confidence, 0.0), kp.confidence)
    return Keypoints2D(kp.xy, conf, kp.camera_names, kp.skeleton, kp.frame_times), int(drop.sum())


def _crop(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The square ``side`` x ``side`` at (x0, y0) of ``image`` (H, W, 3), black where it leaves the image."""
    h, w = image.shape[:2]
    out = np.zeros((side, side, 3), image.dtype)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if xb > xa and yb > ya:
        out[ya - y0:yb - y0, xa - x0:xb - x0] = image[ya:yb, xa:xb]
    return out


def _median_distance(pose: np.ndarray, conf: np.ndarray, target: np.ndarray, min_confidence: float) -> float:
    good = (conf >= min_confidence) & np.isfinite(pose).all(-1) & np.isfinite(target).all(-1)
    if good.sum() < 5:
        return float("inf")
    return float(np.median(np.linalg.norm(pose[good] - target[good], axis=-1)))


def refine_in_crops(
    sources: dict[str, Path], rig: CameraRig, people: dict[str, Keypoints2D],
    landmarker_factory: Callable[[], object], open_frames: Callable[[Path], object], *,
    gate: float = 0.15, margin: float = 1.3, min_side_px: int = 96, min_confidence: float = 0.3,
    max_gap_s: float = 2.0, extend_s: float = 0.5, max_cover: float = 0.5, hidden_confidence: float = 0.0,
    rounds: int = 3, paint_others: bool = True, follow: bool = True, candidates: list[Keypoints2D] | tuple = (),
    take_up_m: float = 0.3, progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, Keypoints2D], dict[str, object]]:
    """Each person's keypoints (id -> (C, T, J)) with their detections redone in crops (see the module
    docstring). ``sources``: camera -> recording; ``landmarker_factory()`` a context manager whose ``detect(image)``
    gives (P, J, 2) pixels and (P, J) confidences; ``open_frames(path)`` yields frames with ``index`` and
    ``image``. After each round of crops, a person's views that a nearer person hides more than ``max_cover`` of
    (:func:`occlusion_cover`, from the refined people's points; 1: none) are dropped (with ``hidden_confidence``
    above 0, kept at that confidence as weak views); the next round places its crops from the people so cleaned.
    ``progress(message, done, total)`` is told each camera of each round.
    -> (refined people, figures: crops run, poses taken (replaced, added), hidden views dropped (summed over the
    rounds; ``rounds`` per round), seconds)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    t0 = time.perf_counter()
    ids = list(people)
    if not ids:
        return people, {}
    first = people[ids[0]]
    T = first.confidence.shape[1]
    fps = 1.0 / float(np.median(np.diff(first.frame_times))) if T > 1 else 30.0
    gap, extend = int(round(max_gap_s * fps)), int(round(extend_s * fps))
    rig = match_rig(rig, first.camera_names, "keypoints")
    per_round = []
    out = people
    for r in range(rounds):
        told = progress and (lambda m, d, n, r=r: progress(f"{m} (round {r + 1} of {rounds})", d, n))
        if r == 0 and follow and len(ids) > 1:
            out, counts = follow_in_crops(sources, rig, out, landmarker_factory, open_frames, candidates=candidates,
                                          gate=gate, margin=margin, min_side_px=min_side_px,
                                          min_confidence=min_confidence, max_cover=max_cover, take_up_m=take_up_m,
                                          paint_others=paint_others, progress=told)
        else:
            out, counts = _crop_round(sources, rig, out, landmarker_factory, open_frames, gate, margin, min_side_px,
                                      min_confidence, gap, extend, paint_others, told)
        counts["hidden_views_dropped"] = 0
        if max_cover < 1.0 and len(ids) > 1:
            points = _points(rig, out, min_confidence, gap)
            cover = occlusion_cover(rig, points, first.camera_names)
            for pid in ids:
                out[pid], n = drop_occluded(out[pid], cover[pid], max_cover, keep=0,
                                            hidden_confidence=hidden_confidence)
                counts["hidden_views_dropped"] += n
        per_round.append(counts)
    keys = dict.fromkeys(k for c in per_round for k in c)
    figures: dict[str, object] = {k: sum(c.get(k, 0) for c in per_round) for k in keys}
    figures.update(rounds=per_round, seconds=round(time.perf_counter() - t0, 2))
    log.info("crowd: %d rounds, %d crops, %d detections replaced and %d added, %d hidden views dropped, %.1f s",
             rounds, figures["crops"], figures.get("replaced", 0), figures.get("added", 0), figures["hidden_views_dropped"],
             figures["seconds"])
    return out, figures


def _frames_together(sources: dict[str, Path], names: tuple[str, ...], open_frames: Callable[[Path], object],
                     T: int):  # noqa: ANN202 - a generator
    """Per frame index t < ``T``: (t, camera name -> that camera's picture of frame t), every recording read
    once, side by side (a camera missing frame t, dropped or past its end, is left out)."""
    streams = {n: iter(open_frames(sources[n])) for n in names if sources.get(n) is not None}
    current: dict[str, object] = dict.fromkeys(streams)
    for t in range(T):
        images = {}
        for name, stream in streams.items():
            frame = current[name]
            while frame is None or frame.index < t:
                frame = next(stream, None)
                if frame is None:
                    break
            current[name] = frame
            if frame is not None and frame.index == t:
                images[name] = frame.image
        yield t, images


def _torso(skeleton: str) -> np.ndarray:
    """Indices of the skeleton's shoulders and hips (every joint where it names none): a body's centre."""
    from mocap_studio.reconstruction.skeletons import get_format

    names = list(get_format(skeleton).joints)
    torso = [names.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip") if n in names]
    return np.array(torso or range(len(names)))


class _Followed:
    """A person followed through the take frame by frame: the frames found and the body centre there, and
    every joint's last known place relative to the centre (so a pose with joints missing is completed)."""

    def __init__(self, J: int) -> None:
        self.frames: list[int] = []
        self.centres: list[np.ndarray] = []
        self.shape = np.full((J, 3), np.nan)

    def add(self, t: int, X: np.ndarray, torso: np.ndarray) -> None:
        centre = _centre(X, torso)
        known = np.isfinite(X).all(-1)
        self.shape[known] = X[known] - centre
        self.frames.append(t)
        self.centres.append(centre)

    def predict(self, t: int, fps: float, max_gap_s: float, max_speed: float, window_s: float = 0.25) -> np.ndarray | None:
        """(J, 3) the pose expected at frame ``t``: the last one moved at the centre's mean velocity over the last
        ``window_s`` (at most ``max_speed``); None when the person was last found over ``max_gap_s`` ago."""
        if not self.frames or (t - self.frames[-1]) / fps > max_gap_s:
            return None
        last = self.frames[-1]
        recent = [k for k, f in enumerate(self.frames) if (last - f) / fps <= window_s]
        velocity = np.zeros(3)
        if len(recent) > 1 and self.frames[recent[-1]] > self.frames[recent[0]]:
            span = (self.frames[recent[-1]] - self.frames[recent[0]]) / fps
            velocity = (self.centres[recent[-1]] - self.centres[recent[0]]) / span
            speed = float(np.linalg.norm(velocity))
            if speed > max_speed:
                velocity *= max_speed / speed
        return self.centres[-1] + velocity * (t - last) / fps + self.shape


def _centre(X: np.ndarray, torso: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmean(X[torso], 0)
        return centre if np.isfinite(centre).all() else np.nanmean(X, 0)


def _targets(followed: dict[str, _Followed], starts: list[np.ndarray], ids: list[str], t: int, fps: float,
             max_gap_s: float, max_speed: float, apart_m: float, torso: np.ndarray) -> tuple[dict[str, np.ndarray], set]:
    """Where to look for each person at frame ``t`` (:func:`follow_in_crops`): id -> (J, 3) pose expected from
    their own motion, else the first of their seed's and the candidates' (``starts``: (T, J, 3) each, the
    people's seeds first in ``ids``' order) poses at ``t`` lying ``apart_m`` or more from every pose already
    chosen. -> (poses, the ids taken up from a seed or candidate)."""
    J = starts[0].shape[1]
    targets: dict[str, np.ndarray] = {}
    for pid in ids:
        expected = followed[pid].predict(t, fps, max_gap_s, max_speed)
        if expected is not None:
            targets[pid] = expected
    fresh = set()
    for k, pid in enumerate(ids):
        if pid in targets:
            continue
        for X in [starts[k]] + starts[len(ids):]:
            pose = X[t]
            if np.isfinite(pose).all(-1).sum() < J // 2:
                continue
            centre = _centre(pose, torso)
            if all(np.linalg.norm(centre - _centre(o, torso)) >= apart_m for o in targets.values()):
                targets[pid] = pose
                fresh.add(pid)
                break
    return targets, fresh


def _one_each(found: dict[str, np.ndarray], targets: dict[str, np.ndarray], fresh: set, same_m: float,
              torso: np.ndarray) -> int:
    """Two people found within ``same_m`` of each other are one body: the one just taken up (in ``fresh``), else
    the one found farther from where they were expected (``targets``), is removed from ``found`` (in place).
    -> how many were removed."""
    removed = 0
    for a, b in itertools.combinations(list(found), 2):
        if a not in found or b not in found:
            continue
        if np.linalg.norm(_centre(found[a], torso) - _centre(found[b], torso)) >= same_m:
            continue
        if (a in fresh) != (b in fresh):
            loser = a if a in fresh else b
        else:
            miss = {p: np.linalg.norm(_centre(found[p], torso) - _centre(targets[p], torso)) for p in (a, b)}
            loser = a if miss[a] > miss[b] else b
        del found[loser]
        removed += 1
    return removed


def follow_in_crops(
    sources: dict[str, Path], rig: CameraRig, seeds: dict[str, Keypoints2D],
    landmarker_factory: Callable[[], object], open_frames: Callable[[Path], object], *,
    candidates: list[Keypoints2D] | tuple = (), gate: float = 0.15, margin: float = 1.3, min_side_px: int = 96,
    min_confidence: float = 0.3, max_gap_s: float = 0.5, max_speed_m_s: float = 3.0, apart_m: float = 0.45,
    same_m: float = 0.3, take_up_m: float = 0.3, max_cover: float = 0.5, paint_others: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, Keypoints2D], dict[str, int]]:
    """Each person followed through the take in crops, frame by frame: who is who is kept by each person's own
    motion, not taken from the association, whose people can change places where they cross (see the module
    docstring). In every frame, a person found lately is looked for where their last pose, moved at their
    recent velocity (at most ``max_speed_m_s``), projects in every camera (:func:`_find_in_crop`, the others
    painted out where they are expected, views a nearer person hides more than ``max_cover`` of skipped) and
    triangulated from the views found (:func:`person_points`). A person not found for ``max_gap_s`` (or not yet)
    is looked for from their seed (``seeds``: id -> the association's keypoints (C, T, J)) at that frame, else
    from any of ``candidates`` (other tracks' keypoints), wherever that lies ``apart_m`` or more from everybody
    already looked for; a take-up whose body is found over ``take_up_m`` from that pose is refused (a seed the
    association paired from two people's views lies between them, and its crops find whichever body two cameras
    see nearest: on a studio take's first frames one person was taken up on another's body, 0.2-0.95 m off, and
    held the other off). Two people found within ``same_m`` of each other are one: the one just taken up, else the
    one farther from where they were expected, gives their detections up. -> (each person's detections from the
    crops (C, T, J), NaN where not found; counts: crops, found (views), taken up (people looked for from a seed
    or candidate), given up (frames a person found another's body), refused (take-ups found away from their pose))."""
    ids = list(seeds)
    first = seeds[ids[0]]
    C, T, J = first.confidence.shape
    names = first.camera_names
    rig = match_rig(rig, names, "keypoints")
    fps = 1.0 / float(np.median(np.diff(first.frame_times))) if T > 1 else 30.0
    torso = _torso(first.skeleton)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        starts = [person_points(rig, seeds[pid], min_confidence, 2) for pid in ids]
        starts += [person_points(rig, kp, min_confidence, 2) for kp in candidates]
    xy = {pid: np.full((C, T, J, 2), np.nan) for pid in ids}
    conf = {pid: np.zeros((C, T, J)) for pid in ids}
    followed = {pid: _Followed(J) for pid in ids}
    bones = _outline_bones(first.skeleton)
    counts = {"crops": 0, "found": 0, "taken_up": 0, "given_up": 0, "refused": 0}
    with landmarker_factory() as landmarker:
        for t, images in _frames_together(sources, names, open_frames, T):
            if progress and t % max(1, T // 10) == 0:
                progress("following every person in crops", t, T)
            targets, fresh = _targets(followed, starts, ids, t, fps, max_gap_s, max_speed_m_s, apart_m, torso)
            if not targets:
                continue
            points = {pid: X[None] for pid, X in targets.items()}
            cover = occlusion_cover(rig, points, names) if len(points) > 1 and max_cover < 1.0 else {}
            for c, name in enumerate(names):
                image = images.get(name)
                if image is None:
                    continue
                camera = rig[name]
                proj, depth = _project_people(camera, points)
                for pid in targets:
                    if pid in cover and np.nan_to_num(cover[pid][c, 0]) > max_cover:
                        continue
                    ran, pose, score = _find_in_crop(landmarker, image, pid, proj, depth, 0, float(camera.K[0, 0]),
                                                     bones, gate, margin, min_side_px, min_confidence, paint_others)
                    counts["crops"] += ran
                    if pose is not None:
                        xy[pid][c, t], conf[pid][c, t] = pose, score
            found = {}
            for pid in targets:
                seen = conf[pid][:, t] > 0
                if seen.any(-1).sum() < 2:
                    continue
                kp = Keypoints2D(xy[pid][:, t:t + 1], conf[pid][:, t:t + 1], names, first.skeleton,
                                 first.frame_times[t:t + 1])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    X = person_points(rig, kp, min_confidence, 0)[0]
                if np.isfinite(X).all(-1).sum() >= J // 2:
                    found[pid] = X
            for pid in fresh & set(found):  # taken up on somebody else's body next to where the seed said
                if np.linalg.norm(_centre(found[pid], torso) - _centre(targets[pid], torso)) > take_up_m:
                    del found[pid]
                    counts["refused"] += 1
            counts["given_up"] += _one_each(found, targets, fresh, same_m, torso)
            for pid in targets:
                if pid not in found:
                    xy[pid][:, t], conf[pid][:, t] = np.nan, 0.0
                    continue
                followed[pid].add(t, found[pid], torso)
                counts["found"] += int((conf[pid][:, t] > 0).any(-1).sum())
                counts["taken_up"] += pid in fresh
    if progress:
        progress("following every person in crops", T, T)
    out = {pid: Keypoints2D(xy[pid], conf[pid], names, first.skeleton, first.frame_times) for pid in ids}
    return out, counts


def _points(rig: CameraRig, people: dict[str, Keypoints2D], min_confidence: float, gap: int,
            extend: int = 0) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {pid: person_points(rig, kp, min_confidence, gap, extend_frames=extend) for pid, kp in people.items()}


def _crop_round(
    sources: dict[str, Path], rig: CameraRig, people: dict[str, Keypoints2D],
    landmarker_factory: Callable[[], object], open_frames: Callable[[Path], object], gate: float, margin: float,
    min_side_px: int, min_confidence: float, gap: int, extend: int, paint_others: bool,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[dict[str, Keypoints2D], dict[str, int]]:
    """One round of :func:`refine_in_crops`' crops. -> (people, counts: crops, replaced, added)."""
    ids = list(people)
    first = people[ids[0]]
    C, T, J = first.confidence.shape
    points = _points(rig, people, min_confidence, gap, extend)
    xy = {pid: people[pid].xy.copy() for pid in ids}
    conf = {pid: people[pid].confidence.copy() for pid in ids}
    crops = replaced = added = 0
    bones = _outline_bones(first.skeleton)
    with landmarker_factory() as landmarker:
        for c, name in enumerate(first.camera_names):
            if progress:
                progress("detecting every person again in crops", c, C)
            source = sources.get(name)
            if source is None:
                continue
            camera = rig[name]
            proj, depth = _project_people(camera, points)
            focal = float(camera.K[0, 0])
            for frame in open_frames(source):
                t = frame.index
                if t >= T:
                    break
                for pid in ids:
                    ran, pose, score = _find_in_crop(landmarker, frame.image, pid, proj, depth, t, focal, bones, gate,
                                                     margin, min_side_px, min_confidence, paint_others)
                    crops += ran
                    if pose is None:
                        continue
                    had = bool((conf[pid][c, t] > 0).any())
                    xy[pid][c, t], conf[pid][c, t] = pose, score
                    replaced, added = replaced + had, added + (not had)
    if progress:
        progress("detecting every person again in crops", C, C)
    out = {pid: Keypoints2D(xy[pid], conf[pid], first.camera_names, first.skeleton, first.frame_times) for pid in ids}
    return out, {"crops": crops, "replaced": replaced, "added": added}


def _find_in_crop(landmarker, image: np.ndarray, pid: str, proj: dict[str, np.ndarray],  # noqa: ANN001
                  depth: dict[str, np.ndarray], t: int, focal: float, bones: tuple[tuple[int, int], ...],
                  gate: float, margin: float, min_side_px: int, min_confidence: float,
                  paint_others: bool) -> tuple[bool, np.ndarray | None, np.ndarray | None]:
    """Person ``pid`` looked for in a crop of ``image`` (a camera's picture) around their projection at frame
    ``t`` (``proj``: id -> (T, J, 2) pixels, ``depth``: id -> (T,) metres), the others painted out: the pose
    nearest the projection, when it lies within ``gate`` of the projected body's height of it and nearer it than
    any other person's projection. -> (whether a crop was run, pose (J, 2) pixels or None, its confidences)."""
    h, w = image.shape[:2]
    target = proj[pid][t]
    J = target.shape[0]
    inside = np.isfinite(target).all(-1) & (target[:, 0] > -w) & (target[:, 0] < 2 * w) & \
        (target[:, 1] > -h) & (target[:, 1] < 2 * h)
    if inside.sum() < J // 2:
        return False, None, None
    lo, hi = target[inside].min(0), target[inside].max(0)
    height = float(max(hi - lo))
    side = int(max(min_side_px, margin * height))
    x0, y0 = (((lo + hi) / 2) - side / 2).astype(int)
    if x0 + side <= 0 or y0 + side <= 0 or x0 >= w or y0 >= h:
        return False, None, None
    crop = _crop(image, x0, y0, side)
    if paint_others:
        paint_others_grey(crop, (x0, y0), pid, proj, depth, t, focal, bones)
    poses, scores = landmarker.detect(crop)
    best, best_d = None, float("inf")
    for p in range(len(scores)):
        if not (scores[p] > 0).any():
            continue
        pose = poses[p] + (x0, y0)
        d = _median_distance(pose, scores[p], target, min_confidence)
        others = [_median_distance(pose, scores[p], proj[o][t], min_confidence) for o in proj if o != pid]
        if d < best_d and d < gate * height and all(d < e for e in others):
            best, best_d = p, d
    if best is None:
        return True, None, None
    return True, poses[best] + (x0, y0), scores[best]


class FlipTest:
    """A landmarker that also looks at the mirrored picture (flip test): ``detect(image)`` runs ``landmarker`` on
    the image and on it mirrored left to right, brings the mirrored poses back (x -> W - x, every left joint
    swapped with its right mirror by ``flip_permutation``), pairs each pose with the mirrored one nearest it
    and averages each joint the two place within ``agree`` of the pose's height of each other (weighted by
    their confidences). A joint they place farther apart keeps the plain pose's place at ``disagree_weight``
    times the lower of the two confidences. Usable as the context manager ``landmarker`` is.

    The detector labels a joint by its looks, and in a crowd's crops its mistakes (a hidden limb guessed, the
    other side's label, another person's limb) are not the mirror image of each other, while a joint it sees
    well comes out the same both ways. On the studio's crowd (seed 11, the last round's 1298 crops, body joints
    against the truth's projection) joints the two passes place within 1 % of the body's height of each other
    lie 9.2 px from the truth on average, 6 % of them over 25 px; 4-8 % apart, 37 px and 53 %; over 16 %,
    52 px. Averaging alone gains little in the picture (18.4 -> 18.2 px on average), and lowering the weight
    of the joints apart in the triangulation costs more than it gains (they are often a joint's only views).
    What it gains is in the rounds: crops placed and people followed from the steadier poses. Body MPJPE per
    true performer, the whole detect stage run again (README, "Several people in one take"): seed 11
    21.5 / 32.7 / 39.2 -> 18.0 / 31.1 / 26.4 mm, seed 0 27.7 / 42.6 / 27.2 -> 28.9 / 33.6 / 25.8, seed 7
    25.5 / 29.8 / 26.8 -> 23.9 / 26.3 / 27.2; it doubles the crops' time."""

    def __init__(self, landmarker, flip_permutation: np.ndarray, agree: float = 0.08,  # noqa: ANN001
                 disagree_weight: float = 0.5) -> None:
        self.landmarker = landmarker
        self.flip_permutation = np.asarray(flip_permutation)
        self.agree = agree
        self.disagree_weight = disagree_weight

    def __enter__(self) -> FlipTest:
        return self

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.landmarker, "close", None)
        if close is not None:
            close()

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) -> xy (P, J, 2) pixels and confidences (P, J), as ``landmarker.detect``, fused."""
        xy, conf = self.landmarker.detect(image)
        mxy, mconf = self.landmarker.detect(np.ascontiguousarray(image[:, ::-1]))
        mxy = mxy[:, self.flip_permutation].copy()
        mconf = mconf[:, self.flip_permutation]
        mxy[..., 0] = image.shape[1] - mxy[..., 0]
        return fuse_flip_test(xy, conf, mxy, mconf, self.agree, self.disagree_weight)


def fuse_flip_test(xy: np.ndarray, conf: np.ndarray, mxy: np.ndarray, mconf: np.ndarray, agree: float,
                   disagree_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Each pose of ``xy`` (P, J, 2) / ``conf`` (P, J) fused with the mirrored pass's pose nearest it (``mxy``,
    ``mconf``, already brought back), as :class:`FlipTest` says. -> (xy, conf) as given, fused."""
    xy, conf = xy.copy(), conf.copy()
    for p in range(len(conf)):
        seen = conf[p] > 0
        if seen.sum() < 2:
            continue
        height = float(np.ptp(xy[p, seen], axis=0).max())
        best, best_d = None, np.inf
        for q in range(len(mconf)):
            both = seen & (mconf[q] > 0)
            if both.sum() < 2:
                continue
            d = float(np.median(np.linalg.norm(xy[p, both] - mxy[q, both], axis=-1)))
            if d < best_d:
                best, best_d = q, d
        if best is None or best_d > agree * height:
            continue
        a, b = conf[p], mconf[best]
        both = seen & (b > 0)
        close = both & (np.linalg.norm(xy[p] - mxy[best], axis=-1) <= agree * height)
        w = (a[close] / (a[close] + b[close]))[:, None]  # both passes see every close joint: a, b > 0
        xy[p, close] = w * xy[p, close] + (1 - w) * mxy[best, close]
        conf[p, close] = (a[close] + b[close]) / 2
        far = both & ~close
        conf[p, far] = disagree_weight * np.minimum(a[far], b[far])
    return xy, conf


def _outline_bones(skeleton: str) -> tuple[tuple[int, int], ...]:
    """The skeleton's bones and its torso's sides and diagonals: the segments that outline a body."""
    from mocap_studio.reconstruction.skeletons import get_format

    fmt = get_format(skeleton)
    bones = set(fmt.bones)
    names = list(fmt.joints)
    extra = [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
             ("right_shoulder", "right_hip"), ("left_shoulder", "right_hip"), ("right_shoulder", "left_hip")]
    bones |= {(names.index(a), names.index(b)) for a, b in extra if a in names and b in names}
    return tuple(sorted(bones))


def _capsules(shape: tuple[int, int], uv: np.ndarray, bones: tuple[tuple[int, int], ...], width_px: float) -> np.ndarray:
    """(H, W) bool: the segments ``bones`` between points ``uv`` (J, 2) drawn ``width_px`` wide (joints off the
    picture's reach or unknown skipped)."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    thick = max(2, int(round(width_px)))
    for a, b in bones:
        pa, pb = uv[a], uv[b]
        if not (np.isfinite(pa).all() and np.isfinite(pb).all()):
            continue
        if np.abs(np.concatenate([pa, pb])).max() > 1e5:
            continue
        cv2.line(mask, tuple(int(v) for v in pa), tuple(int(v) for v in pb), 1, thick, cv2.LINE_8)
    return mask.astype(bool)


def paint_others_grey(image: np.ndarray, origin: tuple[int, int], pid: str, proj: dict[str, np.ndarray],
                      depth: dict[str, np.ndarray], t: int, focal_px: float, bones: tuple[tuple[int, int], ...],
                      limb_m: float = 0.22, keep_m: float = 0.26) -> np.ndarray:
    """Paint the other people's bodies grey (127), in place, in ``image`` (a crop whose top-left corner lies at
    ``origin`` in the camera's picture), so that the landmarker sees person ``pid`` alone. Bodies are the people's
    projected joints (``proj``: id -> (T, J, 2) pixels) at frame ``t`` joined by ``bones`` (index pairs), drawn
    ``limb_m`` metres wide at each person's depth (``depth``: id -> (T,) metres from the camera; ``focal_px``).
    A person nearer the camera than ``pid`` is painted whole (they hide ``pid``); one farther away less ``pid``'s
    own body drawn ``keep_m`` wide (``pid`` hides them). -> the painted (H, W) bool mask."""
    d0 = depth[pid][t]
    shape = image.shape[:2]
    paint = np.zeros(shape, bool)
    if not np.isfinite(d0) or d0 <= 0:
        return paint
    farther = np.zeros(shape, bool)
    for other in proj:
        d = depth[other][t]
        if other == pid or not np.isfinite(d) or d <= 0:
            continue
        body = _capsules(shape, proj[other][t] - np.asarray(origin), bones, limb_m * focal_px / d)
        if d > d0:
            farther |= body
        else:
            paint |= body
    if farther.any():
        paint |= farther & ~_capsules(shape, proj[pid][t] - np.asarray(origin), bones, keep_m * focal_px / d0)
    image[paint] = 127
    return paint
