"""Several people in a crowd: each person's 2D keypoints detected again in a crop around where the other cameras
place them.

A pose detector run on the whole image (MediaPipe's multi-pose mode) misses people who overlap in a view and
misplaces the joints of those it finds there (its person detector sees the whole frame at 224 px and scores
overlapping people low). Once the people are associated and followed (:mod:`.associate`), each person is
triangulated per frame from their own views (gaps up to ``max_gap_s`` bridged linearly), projected into every
camera, and the landmarker is run again on a square crop around the projection (``margin`` times the projected
body's larger side, at least ``min_side_px``), asked for two poses. The pose nearest the projection is taken
when its joints lie within ``gate`` of the projected body's height of it (median over the confident joints) and
nearer it than any other person's projection (a crop of two overlapping people can find the other one); it
replaces the person's detection in that camera and frame, or adds one where the whole-image pass found nobody.
Elsewhere the association's detection stays.

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

__all__ = ["person_points", "refine_in_crops"]


def person_points(rig: CameraRig, kp: Keypoints2D, min_confidence: float = 0.3, max_gap_frames: int = 15,
                  outlier_px: float = 20.0) -> np.ndarray:
    """(T, J, 3) the person's joints triangulated per frame from every camera that saw them (NaN where fewer than
    two did), from the largest set of views that agree within ``outlier_px`` (another person's detection taken for
    this one's, or joints misplaced where people overlap, left out), each joint's gaps of up to ``max_gap_frames``
    frames filled linearly."""
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
    return X


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
    max_gap_s: float = 0.5,
) -> tuple[dict[str, Keypoints2D], dict[str, object]]:
    """Each person's keypoints (id -> (C, T, J)) with their detections redone in crops (see the module
    docstring). ``sources``: camera -> recording; ``landmarker_factory()`` a context manager whose ``detect(image)``
    gives (P, J, 2) pixels and (P, J) confidences; ``open_frames(path)`` yields frames with ``index`` and
    ``image``. -> (refined people, figures: crops run, poses taken (replaced, added), seconds)."""
    t0 = time.perf_counter()
    ids = list(people)
    if not ids:
        return people, {}
    first = people[ids[0]]
    C, T, J = first.confidence.shape
    fps = 1.0 / float(np.median(np.diff(first.frame_times))) if T > 1 else 30.0
    rig = match_rig(rig, first.camera_names, "keypoints")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        points = {pid: person_points(rig, people[pid], min_confidence, int(round(max_gap_s * fps)))
                  for pid in ids}
    xy = {pid: people[pid].xy.copy() for pid in ids}
    conf = {pid: people[pid].confidence.copy() for pid in ids}
    crops = replaced = added = 0
    with landmarker_factory() as landmarker:
        for c, name in enumerate(first.camera_names):
            source = sources.get(name)
            if source is None:
                continue
            camera = rig[name]
            proj = {pid: camera.project(points[pid].reshape(-1, 3)).reshape(T, J, 2) for pid in ids}
            for frame in open_frames(source):
                t = frame.index
                if t >= T:
                    break
                h, w = frame.image.shape[:2]
                for pid in ids:
                    target = proj[pid][t]
                    inside = np.isfinite(target).all(-1) & (target[:, 0] > -w) & (target[:, 0] < 2 * w) & \
                        (target[:, 1] > -h) & (target[:, 1] < 2 * h)
                    if inside.sum() < J // 2:
                        continue
                    lo, hi = target[inside].min(0), target[inside].max(0)
                    height = float(max(hi - lo))
                    side = int(max(min_side_px, margin * height))
                    x0, y0 = (((lo + hi) / 2) - side / 2).astype(int)
                    if x0 + side <= 0 or y0 + side <= 0 or x0 >= w or y0 >= h:
                        continue
                    poses, scores = landmarker.detect(_crop(frame.image, x0, y0, side))
                    crops += 1
                    best, best_d = None, float("inf")
                    for p in range(len(scores)):
                        if not (scores[p] > 0).any():
                            continue
                        pose = poses[p] + (x0, y0)
                        d = _median_distance(pose, scores[p], target, min_confidence)
                        others = [_median_distance(pose, scores[p], proj[o][t], min_confidence) for o in ids if o != pid]
                        if d < best_d and d < gate * height and all(d < e for e in others):
                            best, best_d = p, d
                    if best is None:
                        continue
                    had = bool((conf[pid][c, t] > 0).any())
                    xy[pid][c, t] = poses[best] + (x0, y0)
                    conf[pid][c, t] = scores[best]
                    replaced, added = replaced + had, added + (not had)
    out = {pid: Keypoints2D(xy[pid], conf[pid], first.camera_names, first.skeleton, first.frame_times) for pid in ids}
    figures = {"crops": crops, "replaced": replaced, "added": added, "seconds": round(time.perf_counter() - t0, 2)}
    log.info("crowd: %d crops, %d detections replaced and %d added, %.1f s", crops, replaced, added, figures["seconds"])
    return out, figures
