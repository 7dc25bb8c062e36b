"""People in a multi-camera take: found per frame from every camera's detections, then followed over the take.

Per frame (:func:`frame_people`): every pair of detections in two cameras is triangulated (with the second
detection read as labelled and mirrored, since detectors swap left and right for a whole body now and then)
and projected into every camera. A pair whose own two detections lie within their cameras' thresholds is a
hypothesis, and the detections it projects onto (per camera the nearest within threshold) its support.
Hypotheses with the same support are one candidate person; each candidate is triangulated from its support
and every view checked against the candidate triangulated from its *other* views (leave one out, where three
or more views). Candidates then claim detections in order of support (most views first, then smallest
errors), one person per detection, and a global matching per camera (Hungarian over the errors normalized by
the camera's threshold, each measured against the candidate triangulated without that camera) settles which
detection belongs to whom; a candidate left with fewer than two views is dropped and the matching redone.
Since the candidates are shared by every camera, matching each camera optimally is the optimum of the whole
frame's assignment. A bystander seen by two cameras is a person of his own and never lends a detection to
someone else; a person seen by one camera only is nobody's.

Over time (:func:`link_tracks`): each frame's people are matched (Hungarian) to the tracks seen within the last
``max_gap_s``, by the distance of their body centre (the median of the joints, so it does not care about
left/right labels) from where the track is predicted (its recent centre, a median of three, moved at its
recent velocity), within
``max_speed_m_s`` x the time elapsed + ``tolerance_m``, and only where the person's detections continue the
track's in every camera both were seen in (a body centre triangulated from different views of real footage
jumps by decimetres, a detection in the image by a few pixels, so a "person" made of two people's detections
fails there); a person matched to no track starts one. So an identity survives two people crossing (each stays
nearest its own prediction) and a short occlusion. :func:`follow` builds the tracks as the frames come and lets
them settle what a frame alone cannot: each detection is labelled with the track whose detection of the last
0.1 s in the same camera it continues, and a candidate whose views continue different tracks counts one check
less per such view (where two people are each seen by the same two cameras only, both ways of pairing their
views can agree equally well).

:func:`choose_track` picks one track (the performer) by a policy: ``most_seen`` (the most views x frames,
weighted by reprojection quality), ``first`` (the best supported at the first frame anyone is found), or
``closest_to_centre`` (nearest the point the cameras look at, among well-seen tracks), given each track's
support. Every track is kept, so the take's other people are there for multi-person capture.

Arrays: cameras C, frames T, people slots P per camera and frame, joints J. Coordinates are undistorted
normalized image coordinates; errors are pixels (normalized distance x the camera's focal length).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.reconstruction.keypoints import Detections2D
from mocap_studio.reconstruction.triangulate import _dlt_terms, _solve3, _to_cameras, _weighted_solve
from scipy.optimize import linear_sum_assignment

__all__ = [
    "POLICIES", "Views", "FramePeople", "Track", "make_views", "triangulate_views", "pair_errors", "frame_people",
    "link_tracks", "follow", "choose_track", "rig_focus", "merge_fragments",
]

POLICIES = ("most_seen", "first", "closest_to_centre")
"""How :func:`choose_track` picks the performer among the tracks."""

_CHUNK_POINTS = 60_000
"""Points triangulated at once (bounds memory: each costs C x 12 floats in the normal equations)."""


@dataclass(frozen=True, eq=False)
class Views:
    """The detections ready to compare across cameras.

    xy (C, T, P, J, 2): undistorted normalized coordinates, NaN where missing or below the confidence floor.
    extrinsics (C, 3, 4) ``[R | t]``; focal (C,) pixels; flip (J,) the skeleton's left/right mirror permutation;
    min_joints: joints two bodies must share to be compared.
    """

    xy: np.ndarray
    extrinsics: np.ndarray
    focal: np.ndarray
    flip: np.ndarray
    min_joints: int

    @property
    def present(self) -> np.ndarray:
        """(C, T, P) bool: the detection has enough joints to be compared."""
        return np.isfinite(self.xy[..., 0]).sum(-1) >= self.min_joints


def make_views(rig: CameraRig, detections: Detections2D, min_confidence: float, min_joints: int) -> Views:
    """:class:`Views` of ``detections`` (C, T, P, J) through ``rig`` (cameras in the detections' order)."""
    C, T, P, J = detections.confidence.shape
    if tuple(rig.names) != tuple(detections.camera_names):
        raise ValueError(f"rig cameras {list(rig.names)} must be the detections' {list(detections.camera_names)}, "
                         "in the same order (see triangulate.match_rig)")
    xy = rig.undistort_points(detections.xy.reshape(C, -1, 2)).reshape(C, T, P, J, 2)
    good = detections.confidence >= min_confidence
    return Views(np.where(good[..., None], xy, np.nan),
                 np.stack([np.hstack([c.R, c.t[:, None]]) for c in rig.cameras]),
                 np.array([np.sqrt(c.K[0, 0] * c.K[1, 1]) for c in rig.cameras]),
                 np.asarray(detections.format.flip_permutation), int(min_joints))


def triangulate_views(views: Views, obs: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate ``obs`` (N, C, 2) normalized (NaN: not used; fewer than two views: NaN), cameras weighted by
    ``weights`` (C,), and project into every camera -> points (N, 3), projections (N, C, 2) (NaN behind a
    camera). Works through ``obs`` in chunks."""
    N, C = obs.shape[:2]
    X = np.full((N, 3), np.nan)
    proj = np.full((N, C, 2), np.nan)
    step = max(1, _CHUNK_POINTS // max(C, 1))
    for start in range(0, N, step):
        sl = slice(start, min(N, start + step))
        M, b = _dlt_terms(views.extrinsics, obs[sl])
        seen = np.isfinite(obs[sl]).all(-1)
        w = seen * (1.0 if weights is None else np.asarray(weights, float)[None])
        Xc = _weighted_solve(M, b, w)
        Xc[(w > 0).sum(-1) < 2] = np.nan
        cam = _to_cameras(views.extrinsics, np.nan_to_num(Xc))  # (n, C, 3)
        z = np.where(np.isfinite(Xc).all(-1)[..., None] & (cam[..., 2] > 1e-6), cam[..., 2], np.nan)
        X[sl], proj[sl] = Xc, cam[..., :2] / z[..., None]
    return X, proj


def _median_last(values: np.ndarray, min_count: int) -> np.ndarray:
    """Median over the last axis ignoring NaN; inf where fewer than ``min_count`` values."""
    count = np.isfinite(values).sum(-1)
    ordered = np.sort(values, axis=-1)  # NaN last
    lo = np.take_along_axis(ordered, np.maximum(count - 1, 0)[..., None] // 2, -1)[..., 0]
    hi = np.take_along_axis(ordered, np.minimum(count // 2, values.shape[-1] - 1)[..., None], -1)[..., 0]
    return np.where(count >= max(min_count, 1), 0.5 * (lo + hi), np.inf)


def _body_errors(views: Views, proj: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """Median joint error in pixels of every detection against projected bodies, as labelled and mirrored.

    proj (N, C, J, 2) a body projected into every camera; detections (N, C, P, J, 2) the detections to compare
    (usually those of the body's frame) -> (N, C, P, 2): [..., 0] as labelled, [..., 1] mirrored; inf where they
    share fewer than ``min_joints`` joints."""
    out = []
    for mirrored in (detections, detections[..., views.flip, :]):
        d = np.linalg.norm(proj[:, :, None] - mirrored, axis=-1) * views.focal[None, :, None, None]
        out.append(_median_last(d, views.min_joints))
    return np.stack(out, -1)


def _pair_rows(present: np.ndarray) -> np.ndarray:
    """(H, 6) rows (frame, camera a, person p, camera b, person q, q mirrored) for every pair of detections of
    one frame in two cameras, sorted by frame."""
    C, T, P = present.shape
    rows = []
    for a, b in itertools.combinations(range(C), 2):
        for p, q in itertools.product(range(P), repeat=2):
            frames = np.flatnonzero(present[a, :, p] & present[b, :, q])
            for mirrored in (0, 1):
                rows.append(np.column_stack([frames] + [np.full(len(frames), v) for v in (a, p, b, q, mirrored)]))
    out = np.concatenate(rows) if rows else np.zeros((0, 6), int)
    return out[np.argsort(out[:, 0], kind="stable")].astype(int)


def _normalized(extrinsics: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Points X (..., 3) projected into every camera -> (..., C, 2) normalized, NaN behind a camera."""
    cam = _to_cameras(extrinsics, np.nan_to_num(X))
    z = np.where(np.isfinite(X).all(-1)[..., None] & (cam[..., 2] > 1e-6), cam[..., 2], np.nan)
    return cam[..., :2] / z[..., None]


def pair_errors(views: Views) -> tuple[np.ndarray, np.ndarray]:
    """Every two-view hypothesis of the take, triangulated and compared with every detection of its frame.

    -> rows (H, 6) (frame, camera a, person p, camera b, person q, q mirrored), errors (H, C, P, 2) float32
    pixels (:func:`_body_errors`). They do not depend on thresholds, so they are computed once per take. Each
    detection's DLT terms are computed once; a hypothesis adds those of its two detections."""
    C, T, P, J = views.xy.shape[:4]
    rows = _pair_rows(views.present)
    M, b = _dlt_terms(views.extrinsics, views.xy.reshape(C, -1, 2).transpose(1, 0, 2))  # (T*P*J, C, ...)
    M = M.transpose(1, 0, 2).reshape(C, T, P, J, 9)  # each camera's terms for its own detections
    b = b.transpose(1, 0, 2).reshape(C, T, P, J, 3)
    seen = np.isfinite(views.xy).all(-1)  # (C, T, P, J)
    errors = np.full((len(rows), C, P, 2), np.inf, np.float32)
    step = max(1, _CHUNK_POINTS // (J * C))
    for start in range(0, len(rows), step):
        r = rows[start:start + step]
        t, a, p, bb, q = r[:, 0], r[:, 1], r[:, 2], r[:, 3], r[:, 4]
        joint = np.where(r[:, 5, None] == 1, views.flip[None], np.arange(J)[None])  # (n, J) second's joints
        Ms = M[a, t, p] + M[bb[:, None], t[:, None], q[:, None], joint]
        bs = b[a, t, p] + b[bb[:, None], t[:, None], q[:, None], joint]
        X = _solve3(Ms.reshape(-1, J, 3, 3), bs)
        X[~(seen[a, t, p] & seen[bb[:, None], t[:, None], q[:, None], joint])] = np.nan
        proj = _normalized(views.extrinsics, X).transpose(0, 2, 1, 3)  # (n, C, J, 2)
        errors[start:start + len(r)] = _body_errors(views, proj, views.xy[:, t].transpose(1, 0, 2, 3, 4))
    return rows, errors


@dataclass(frozen=True, eq=False)
class FramePeople:
    """The people found in one frame, K of them.

    views (K, C): each person's detection (people slot) per camera, -1 where not seen; flipped (K, C) bool:
    that detection labels left and right the other way round from the person's other views; error_px (K, C):
    its median joint error against the person triangulated from the other views (all views where only two),
    NaN where not seen; body (K, J, 3) triangulated from all views; centre (K, 3) the median of its joints.
    """

    views: np.ndarray
    flipped: np.ndarray
    error_px: np.ndarray
    body: np.ndarray
    centre: np.ndarray

    def __len__(self) -> int:
        return len(self.views)

    @staticmethod
    def empty(C: int, J: int) -> FramePeople:
        """Nobody in this frame."""
        return FramePeople(np.zeros((0, C), int), np.zeros((0, C), bool), np.zeros((0, C)), np.zeros((0, J, 3)),
                           np.zeros((0, 3)))


def _normalize_flags(sets: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Mirror flags relative to each set's first view (a body and its mirror image are the same person)."""
    used = sets >= 0
    first = np.argmax(used, axis=1)
    ref = flags[np.arange(len(flags)), first]
    return np.where(used, flags ^ ref[:, None], False)


def _unique_sets(sets: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (sets, flags) rows with at least two views."""
    keep = (sets >= 0).sum(1) >= 2
    sets, flags = sets[keep], _normalize_flags(sets[keep], flags[keep])
    if not len(sets):
        return sets, flags
    _, index = np.unique(np.hstack([sets, flags.astype(int)]), axis=0, return_index=True)
    index = np.sort(index)
    return sets[index], flags[index]


def _oriented_sets(views: Views, t: int, sets: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """(K, C, J, 2) each candidate's detections of frame ``t``, mirrored where flagged (NaN where none)."""
    C = sets.shape[1]
    xy = views.xy[:, t]
    take = xy[np.arange(C)[None], np.clip(sets, 0, None)]
    take = np.where(flags[..., None, None], take[:, :, views.flip], take)
    return np.where((sets >= 0)[..., None, None], take, np.nan)


def _costs(views: Views, t: int, sets: np.ndarray, flags: np.ndarray, threshold: np.ndarray,
           weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate (K sets of detections per camera, mirror flags) against every detection of frame ``t``.

    The cost of detection p in camera c for candidate k: the candidate is triangulated from its views in the
    other cameras *and p* (read as labelled and mirrored; cameras weighted by ``weights`` (C,)), and the cost is
    the largest median joint error over threshold among those views: p belongs to k only if they all still
    agree (one view's small error alone says little where it outweighs the others and the body follows it). The
    DLT normal equations are sums over cameras, so each trial adds one camera's terms to the candidate's others'.
    -> cost (K, C, P) (below 1: within every threshold; inf: fewer than two views or joints to compare),
    mirrored (K, C, P) bool (p fits mirrored)."""
    K, C = sets.shape
    xy = views.xy[:, t]  # (C, P, J, 2)
    P, J = xy.shape[1:3]
    w = np.ones(C) if weights is None else np.asarray(weights, float)
    take = _oriented_sets(views, t, sets, flags)  # (K, C, J, 2)
    M, b = _dlt_terms(views.extrinsics, take.transpose(0, 2, 1, 3).reshape(K * J, C, 2))
    M, b = (M * w[None, :, None]).reshape(K, J, C, 9), (b * w[None, :, None]).reshape(K, J, C, 3)
    seen = np.isfinite(take).all(-1).transpose(0, 2, 1)  # (K, J, C)
    trial = np.stack([xy, xy[:, :, views.flip]], 2)  # (C, P, 2, J, 2): each detection as labelled, mirrored
    Mt, bt = _dlt_terms(views.extrinsics, trial.reshape(C, -1, 2).transpose(1, 0, 2))  # (P*2*J, C, ...)
    Mt = (Mt * w[None, :, None]).T.reshape(9, C, P, 2, J)  # camera c's terms for its own detections
    bt = (bt * w[None, :, None]).T.reshape(3, C, P, 2, J)
    # (K, C, P, 2, J): the candidate without camera c, plus detection p of camera c
    M_others = (M.sum(2, keepdims=True) - M).transpose(0, 2, 1, 3)  # (K, C, J, 9)
    b_others = (b.sum(2, keepdims=True) - b).transpose(0, 2, 1, 3)
    Ms = M_others[:, :, None, None] + Mt.transpose(1, 2, 3, 4, 0)[None]  # (K, C, P, 2, J, 9)
    bs = b_others[:, :, None, None] + bt.transpose(1, 2, 3, 4, 0)[None]
    X = _solve3(Ms.reshape(Ms.shape[:-1] + (3, 3)), bs)  # (K, C, P, 2, J, 3)
    others = (seen.sum(-1, keepdims=True) - seen).transpose(0, 2, 1)  # (K, C, J) views besides camera c's
    X = np.where((others >= 1)[:, :, None, None, :, None], X, np.nan)
    proj = _normalized(views.extrinsics, X)  # (K, C, P, 2, J, C', 2): every trial body in every camera
    # what each camera c' sees of trial (k, c, p, o): camera c the trial detection, the others the candidate's
    observed = np.broadcast_to(take.transpose(0, 2, 1, 3)[:, None, None, None], proj.shape).copy()
    cams = np.arange(C)
    observed[:, cams, :, :, :, cams] = trial[cams][None].transpose(1, 0, 2, 3, 4, 5)  # (C, K, P, 2, J, 2)
    d = np.linalg.norm(proj - observed, axis=-1) * views.focal  # (K, C, P, 2, J, C')
    err = _median_last(d.transpose(0, 1, 2, 3, 5, 4), views.min_joints) / threshold  # (K, C, P, 2, C')
    own = err[:, cams, :, :, cams].transpose(1, 0, 2, 3)  # (K, C, P, 2): the trial detection's own
    used = (sets >= 0)[:, None, None, None, :] & (cams[None, :, None, None, None] != cams)  # the other views
    worst = np.maximum(own, np.where(used, np.where(np.isfinite(err), err, 0.0), 0.0).max(-1))
    return worst.min(-1), worst.argmin(-1).astype(bool)


def _fit(views: Views, t: int, sets: np.ndarray, flags: np.ndarray,
         weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate triangulated from its own views (K sets, mirror flags; cameras weighted by ``weights``)
    -> body (K, J, 3), own (K, C) the median joint error in pixels of each of its views (inf where none): what
    :func:`_costs` measures for the candidate's own detections, at the cost of one triangulation."""
    K, C = sets.shape
    J = views.xy.shape[3]
    take = _oriented_sets(views, t, sets, flags)  # (K, C, J, 2)
    X, proj = triangulate_views(views, take.transpose(0, 2, 1, 3).reshape(K * J, C, 2), weights)
    d = np.linalg.norm(proj.reshape(K, J, C, 2).transpose(0, 2, 1, 3) - take, axis=-1) * views.focal[None, :, None]
    return X.reshape(K, J, 3), _median_last(d, views.min_joints)


_PACK_CANDIDATES = 24
"""Candidate sets searched per frame for the best disjoint choice (the best by views and error first)."""


def _label_counts(sets: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate (K,): its views that continue a different track than most of its labelled views do
    (conflicts), and its views beyond the first that continue that track (agreements: a track's views kept
    together, where splitting them between two candidates earns nothing); ``labels`` (C, P) the track each
    detection continues (-1: none; None: no tracks yet)."""
    conflicts, agreements = np.zeros(len(sets), int), np.zeros(len(sets), int)
    if labels is None or not len(sets):
        return conflicts, agreements
    C = sets.shape[1]
    lab = np.where(sets >= 0, labels[np.arange(C)[None], np.clip(sets, 0, None)], -1)  # (K, C)
    for k, row in enumerate(lab):
        known = row[row >= 0]
        if known.size:
            most = np.bincount(known).max()
            agreements[k], conflicts[k] = most - 1, known.size - most
    return conflicts, agreements


def _pack(sets: np.ndarray, flags: np.ndarray, own: np.ndarray, threshold: np.ndarray,
          labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The choice of candidates, no two sharing a detection, with the most checks (each person's views beyond
    the first: a view beyond the second is an independent check, where a pair of views of two different people
    can agree by chance; less each view that continues another track than the candidate's others, see
    :func:`_label_counts`), then the most views continuing their tracks, then the smallest summed error over
    threshold (``own`` (K, C) pixels per view): an exact depth-first search with pruning over the best
    :data:`_PACK_CANDIDATES` candidates -> the chosen (sets, flags). Exact rather than greedy: where a person
    hides behind another in one view, the one detection there fits both, and the candidate with the smallest
    errors may be the one that takes it from its owner."""
    C = sets.shape[1]
    P = int(sets.max()) + 1
    used = sets >= 0
    conflicts, agreements = _label_counts(sets, labels)
    views = used.sum(1) - 1 - conflicts  # checks
    error = np.where(used, own / threshold[None], 0).sum(1)
    order = np.lexsort((error, -agreements, -views))
    order = order[views[order] > 0][:_PACK_CANDIDATES]  # no check left: two views of two different tracks
    masks = [sum(1 << int(c * P + sets[k, c]) for c in np.flatnonzero(used[k])) for k in order]
    everything = 0
    for m in masks:
        everything |= m
    best: list = [(0, 0, 0.0), []]

    def search(i: int, taken: int, score: tuple[int, int, float], chosen: list[int]) -> None:
        if score > best[0]:
            best[0], best[1] = score, list(chosen)
        if score[0] + (everything & ~taken).bit_count() < best[0][0]:  # cannot reach as many checks
            return
        for j in range(i, len(order)):
            if not masks[j] & taken:
                k = order[j]
                chosen.append(k)
                search(j + 1, taken | masks[j], (score[0] + int(views[k]), score[1] + int(agreements[k]),
                                                 score[2] - float(error[k])), chosen)
                chosen.pop()

    search(0, 0, (0, 0, 0.0), [])
    pick = np.array(sorted(best[1]), int)
    return sets[pick].reshape(-1, C), flags[pick].reshape(-1, C)


def _match(cost: np.ndarray, mirrored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per camera, the assignment of detections to candidates (each at most one) that maximizes the sum of
    ``1 - cost`` over pairs with ``cost`` (K, C, P) below 1 (:func:`_costs`) -> sets (K, C), flags (K, C)."""
    K, C, P = cost.shape
    sets = np.full((K, C), -1)
    flags = np.zeros((K, C), bool)
    for c in range(C):
        allowed = cost[:, c] < 1
        if not allowed.any():
            continue
        rows, cols = linear_sum_assignment(np.where(allowed, cost[:, c] - 1, 0.0))
        ok = allowed[rows, cols]
        sets[rows[ok], c], flags[rows[ok], c] = cols[ok], mirrored[rows[ok], c, cols[ok]]
    return sets, flags


def _score(sets: np.ndarray, own: np.ndarray, threshold: np.ndarray,
           labels: np.ndarray | None) -> tuple[int, int, float]:
    """How good one frame's assignment is: the checks (views beyond each person's first, less conflicting
    ones), then the views continuing their tracks, then minus the summed error over threshold (a tuple to
    compare; see :func:`_pack`)."""
    used = sets >= 0
    conflicts, agreements = _label_counts(sets, labels)
    checks = int(used.sum() - len(sets) - conflicts.sum())
    return checks, int(agreements.sum()), -float(np.where(used, own / threshold[None], 0).sum())


def _settle(views: Views, t: int, sets: np.ndarray, flags: np.ndarray, threshold: np.ndarray,
            weights: np.ndarray | None, labels: np.ndarray | None = None) -> FramePeople:
    """Candidate sets of one frame (K, C) with mirror flags -> its people (see the module docstring); ``labels``
    (C, P) the track each detection continues (-1: none)."""
    C, J = views.xy.shape[0], views.xy.shape[3]
    own = _fit(views, t, sets, flags, weights)[1]
    sets = np.where(own < threshold[None], sets, -1)  # views that disagree with the others
    sets, flags = _unique_sets(sets, flags)
    if not len(sets):
        return FramePeople.empty(C, J)
    own = _fit(views, t, sets, flags, weights)[1]
    sets, flags = _pack(sets, flags, own, threshold, labels)
    body, own = _fit(views, t, sets, flags, weights)
    sets = np.where(own < threshold[None], sets, -1)  # a candidate that lost views: are the rest still agreed?
    keep = (sets >= 0).sum(1) >= 2
    sets, flags = sets[keep], flags[keep] & (sets[keep] >= 0)
    if not len(sets):
        return FramePeople.empty(C, J)
    body, own = _fit(views, t, sets, flags, weights)
    best = (_score(sets, own, threshold, labels), sets, flags, body, own)
    for _ in range(4):  # the global matching, until it settles; the best assignment met is kept
        cost, mirrored = _costs(views, t, sets, flags, threshold, weights)
        new_sets, new_flags = _match(cost, mirrored)
        keep = (new_sets >= 0).sum(1) - 1 - _label_counts(new_sets, labels)[0] > 0
        new_sets, new_flags = new_sets[keep], _normalize_flags(new_sets[keep], new_flags[keep] & (new_sets[keep] >= 0))
        if not len(new_sets) or (np.array_equal(new_sets, sets) and np.array_equal(new_flags, flags)):
            break
        sets, flags = new_sets, new_flags
        body, own = _fit(views, t, sets, flags, weights)
        inside = own < threshold[None]
        if not inside[sets >= 0].all():  # a view pushed out by the others' new detections: not an improvement
            continue
        score = _score(sets, own, threshold, labels)
        if score > best[0]:
            best = (score, sets, flags, body, own)
    _, sets, flags, body, own = best
    if not len(sets):
        return FramePeople.empty(C, J)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a body with no joint triangulated
        centre = np.nanmedian(body, axis=1)
    return FramePeople(sets, flags, np.where(sets >= 0, own, np.nan), body, centre)


def frame_people(views: Views, rows: np.ndarray, errors: np.ndarray, threshold: np.ndarray,
                 weights: np.ndarray | None = None, tracker: _Tracker | None = None) -> list[FramePeople]:
    """Every frame's people, from the two-view hypotheses of :func:`pair_errors` (rows (H, 6), errors
    (H, C, P, 2)) with per-camera ``threshold`` (C,) pixels -> one :class:`FramePeople` per frame. ``weights``
    (C,) weight the cameras when a person is triangulated from three or more (a camera known to be off
    counts less, as where the thresholds were measured). With a ``tracker``, frames are linked as they come,
    and a candidate whose detections continue different tracks in the images counts less (where two people
    are each seen by two cameras only, the two ways of pairing their views can agree equally well)."""
    C, T, P, J = views.xy.shape[:4]
    threshold = np.asarray(threshold, float)
    if threshold.shape != (C,):
        raise ValueError(f"threshold must have one value per camera ({C},), got {threshold.shape}")
    bounds = np.searchsorted(rows[:, 0], np.arange(T + 1))
    out = []
    for t in range(T):
        r, e = rows[bounds[t]:bounds[t + 1]], errors[bounds[t]:bounds[t + 1]].astype(float)
        best, mirrored = e.min(-1), e.argmin(-1).astype(bool)  # (H, C, P)
        h = np.arange(len(r))
        valid = (best[h, r[:, 1], r[:, 2]] < threshold[r[:, 1]]) & (best[h, r[:, 3], r[:, 4]] < threshold[r[:, 3]])
        frame = FramePeople.empty(C, J)
        if valid.any():
            best, mirrored, r = best[valid], mirrored[valid], r[valid]
            nearest = best.argmin(-1)  # (H, C)
            near_error = np.take_along_axis(best, nearest[..., None], -1)[..., 0]
            sets = np.where(near_error < threshold[None], nearest, -1)
            flags = np.take_along_axis(mirrored, nearest[..., None], -1)[..., 0]
            sets, flags = _unique_sets(sets, flags)
            if len(sets):
                labels = tracker.labels(t) if tracker is not None else None
                frame = _settle(views, t, sets, flags, threshold, weights, labels)
        out.append(frame)
        if tracker is not None:
            tracker.step(t, frame)
    return out


@dataclass(frozen=True, eq=False)
class Track:
    """One person followed over the take.

    slots (C, T): the person's detection (people slot) per camera and frame, -1 where not seen; flipped (C, T)
    bool: that detection labels left and right the other way round from the person's other views that frame;
    error_px (C, T): its median joint error against the other views (NaN where not seen); centre (T, 3)
    metres, NaN in frames the person was not found.
    """

    slots: np.ndarray
    flipped: np.ndarray
    error_px: np.ndarray
    centre: np.ndarray

    @property
    def frames(self) -> np.ndarray:
        """(T,) bool: frames in which the person was found (in two or more views)."""
        return (self.slots >= 0).sum(0) >= 2

    def support(self, threshold: np.ndarray) -> float:
        """Views x frames, each weighted by how well it agreed in its frame: 1 - (error / threshold)^2 / 2 (1 to
        0.5; a quick measure: in a frame seen by two views the error is small whoever they are)."""
        ratio = self.error_px / np.asarray(threshold, float)[:, None]
        return float(np.where(self.slots >= 0, 1 - 0.5 * np.clip(ratio, 0, 1) ** 2, 0).sum())


@dataclass
class _Open:
    """A track being built: its rows (frame, person index), recent centres, and per camera the detection it
    was last seen as (normalized (C, J, 2), NaN where never) and when (C,) (-inf: never)."""

    rows: list[tuple[int, int]]
    times: list[float]
    centres: list[np.ndarray]
    last_xy: np.ndarray
    last_seen: np.ndarray

    def _around(self, k: int) -> tuple[np.ndarray, float]:
        """The median of the centres (and times) of sightings k-2..k: one stray centre (two views that see
        depth poorly) does not move it."""
        lo = max(0, k - 2)
        return np.median(np.array(self.centres[lo:k + 1]), axis=0), float(np.median(self.times[lo:k + 1]))

    def predict(self, time: float, max_speed: float, window_s: float) -> np.ndarray:
        """Centre expected at ``time``: the recent centre (:meth:`_around` the last sighting) moved at the
        velocity between it and the one about ``window_s`` before (at most ``max_speed``)."""
        last = len(self.times) - 1
        here, t_here = self._around(last)
        k = next((i for i in range(last, -1, -1) if t_here - self.times[i] >= window_s), 0)
        there, t_there = self._around(k)
        span = t_here - t_there
        if span <= 0:
            return here
        velocity = (here - there) / span
        speed = float(np.linalg.norm(velocity))
        if speed > max_speed:
            velocity *= max_speed / speed
        return here + velocity * (time - t_here)

    def add(self, t: int, k: int, time: float, centre: np.ndarray, xy: np.ndarray) -> None:
        """Person ``k`` of frame ``t`` joins the track; ``xy`` (C, J, 2) its detections (NaN: not seen)."""
        self.rows.append((t, k))
        self.times.append(time)
        self.centres.append(centre)
        seen = np.isfinite(xy).any(axis=(1, 2))
        self.last_xy[seen] = xy[seen]
        self.last_seen[seen] = time


def _detections(views: Views, t: int, frame: FramePeople) -> np.ndarray:
    """(K, C, J, 2) the detections of each person of frame ``t`` (NaN where not seen)."""
    C = frame.views.shape[1]
    xy = views.xy[np.arange(C)[None], t, np.clip(frame.views, 0, None)]
    return np.where((frame.views >= 0)[..., None, None], xy, np.nan)


def _depth(views: Views, track: _Open) -> np.ndarray:
    """(C,) the track's last centre's depth in every camera (at least 0.1 m)."""
    return np.maximum(_to_cameras(views.extrinsics, track.centres[-1])[..., 2], 0.1)


def _image_distance(views: Views, track: _Open, xy: np.ndarray) -> np.ndarray:
    """(K, C) pixels from the track's last detection in each camera to detections ``xy`` (K, C, J, 2) (median
    joint distance, as labelled or mirrored; inf where either is missing)."""
    d = [np.linalg.norm(track.last_xy[None] - x, axis=-1) for x in (xy, xy[:, :, views.flip])]  # (K, C, J)
    return np.minimum(*(_median_last(v, views.min_joints) for v in d)) * views.focal[None]


def _continuous(views: Views, tracks: list[_Open], now: float, xy: np.ndarray, threshold: np.ndarray,
                max_speed: float) -> np.ndarray:
    """(L, K) whether each frame person (detections ``xy`` (K, C, J, 2)) continues each open track in the images:
    in every camera both were seen in, the detection lies within the camera's threshold plus the distance the
    person can have moved in that image since (``max_speed`` x the time, at the track's depth) of the track's
    last detection there (as labelled or mirrored). A person built from two people's detections fails in the
    camera that saw the other one, though his 3D centre may lie between theirs."""
    seen_now = np.isfinite(xy).any(-1).any(-1)  # (K, C)
    out = np.ones((len(tracks), len(xy)), bool)
    for i, track in enumerate(tracks):
        allow = threshold + views.focal * max_speed * (now - track.last_seen) / _depth(views, track)
        both = np.isfinite(track.last_xy).any(-1).any(-1)[None] & seen_now
        out[i] = ~(both & ~(_image_distance(views, track, xy) < allow[None])).any(-1)
    return out


class _Tracker:
    """Tracks built frame by frame (see :func:`link_tracks`): :meth:`labels` says which track each detection of
    a frame continues in its image, :meth:`step` links the frame's people, :meth:`tracks` gives the result."""

    def __init__(self, times: np.ndarray, max_speed_m_s: float, tolerance_m: float, max_gap_s: float,
                 views: Views | None = None, threshold: np.ndarray | None = None, velocity_window_s: float = 0.25,
                 label_window_s: float = 0.1) -> None:
        self.times = np.asarray(times, float)
        self.max_speed, self.tolerance, self.max_gap = max_speed_m_s, tolerance_m, max_gap_s
        self.views = views
        self.threshold = None if threshold is None else np.asarray(threshold, float)
        self.velocity_window, self.label_window = velocity_window_s, label_window_s
        self.open: list[_Open] = []
        self.closed: list[_Open] = []

    def labels(self, t: int) -> np.ndarray | None:
        """(C, P) the open track whose detection in the same camera, seen within the last ``label_window_s``,
        each detection of frame ``t`` continues (index into the open tracks; -1: none), one detection per track
        and camera, nearest first; None without views and thresholds."""
        views, now = self.views, self.times[t]
        if views is None or self.threshold is None:
            return None
        C, P = views.xy.shape[0], views.xy.shape[2]
        out = np.full((C, P), -1)
        live = [o for o in self.open if now - o.times[-1] <= self.max_gap]
        if not live:
            return out
        slots = views.xy[:, t].transpose(1, 0, 2, 3)  # (P, C, J, 2): each slot as a "person" of every camera
        fits = []
        for track in live:
            since = now - track.last_seen
            recent = since <= self.label_window + 1e-6
            dist = _image_distance(views, track, slots)  # (P, C)
            gate = self.threshold + views.focal * self.max_speed * since / _depth(views, track)
            fits.append(np.where(recent[None] & (dist < gate[None]), dist, np.inf).T)  # (C, P)
        cost = np.stack(fits)  # (L, C, P)
        index = {id(o): k for k, o in enumerate(self.open)}
        for c in range(C):
            ok = np.isfinite(cost[:, c])
            if ok.any():
                rows, cols = linear_sum_assignment(np.where(ok, cost[:, c], 1e12))
                for i, p in zip(rows, cols, strict=True):
                    if ok[i, p]:
                        out[c, p] = index[id(live[i])]
        return out

    def step(self, t: int, frame: FramePeople) -> None:
        """Link the people of frame ``t`` to the open tracks (Hungarian on the distance of their centres from the
        tracks' predictions, within reach and continuous in the images); the others start tracks."""
        now = self.times[t]
        C = frame.views.shape[1]
        J = self.views.xy.shape[3] if self.views is not None else 1
        self.closed += [o for o in self.open if now - o.times[-1] > self.max_gap]
        self.open = [o for o in self.open if now - o.times[-1] <= self.max_gap]
        xy = _detections(self.views, t, frame) if self.views is not None else np.full((len(frame), C, J, 2), np.nan)
        matched: set[int] = set()
        if self.open and len(frame):
            pred = np.array([o.predict(now, self.max_speed, self.velocity_window) for o in self.open])
            reach = np.array([self.max_speed * (now - o.times[-1]) + self.tolerance for o in self.open])
            dist = np.linalg.norm(pred[:, None] - frame.centre[None], axis=-1)
            ok = np.isfinite(dist) & (dist < reach[:, None])
            if self.views is not None and self.threshold is not None:
                ok &= _continuous(self.views, self.open, now, xy, self.threshold, self.max_speed)
            rows, cols = linear_sum_assignment(np.where(ok, dist, 1e9))
            for i, k in zip(rows, cols, strict=True):
                if ok[i, k]:
                    self.open[i].add(t, int(k), now, frame.centre[k], xy[k])
                    matched.add(int(k))
        for k in range(len(frame)):
            if k not in matched and np.isfinite(frame.centre[k]).all():
                track = _Open([], [], [], np.full((C, J, 2), np.nan), np.full(C, -np.inf))
                track.add(t, k, now, frame.centre[k], xy[k])
                self.open.append(track)

    def tracks(self, people: list[FramePeople]) -> list[Track]:
        """Every track, longest-lived first."""
        tracks = [_build(o, people) for o in self.closed + self.open]
        return sorted(tracks, key=lambda tr: -int(tr.frames.sum()))


def link_tracks(people: list[FramePeople], times: np.ndarray, max_speed_m_s: float, tolerance_m: float,
                max_gap_s: float, views: Views | None = None, threshold: np.ndarray | None = None,
                velocity_window_s: float = 0.25) -> list[Track]:
    """Link every frame's people into tracks (see the module docstring). ``people`` one :class:`FramePeople`
    per frame, ``times`` (T,) seconds; with ``views`` and per-camera ``threshold`` (C,) pixels, a person joins
    a track only where his detections continue the track's in the images (:func:`_continuous`) -> the tracks,
    longest-lived first."""
    times = np.asarray(times, float)
    if len(people) != len(times):
        raise ValueError(f"people has {len(people)} frames but times {len(times)}")
    tracker = _Tracker(times, max_speed_m_s, tolerance_m, max_gap_s, views, threshold, velocity_window_s)
    for t, frame in enumerate(people):
        tracker.step(t, frame)
    return tracker.tracks(people)


def follow(views: Views, rows: np.ndarray, errors: np.ndarray, threshold: np.ndarray, times: np.ndarray,
           max_speed_m_s: float, tolerance_m: float, max_gap_s: float,
           weights: np.ndarray | None = None) -> tuple[list[FramePeople], list[Track]]:
    """Every frame's people (:func:`frame_people`) and their tracks, built together frame by frame so that each
    frame's choice between equally consistent pairings follows the tracks -> (people per frame, tracks)."""
    times = np.asarray(times, float)
    tracker = _Tracker(times, max_speed_m_s, tolerance_m, max_gap_s, views, threshold)
    people = frame_people(views, rows, errors, threshold, weights, tracker)
    return people, tracker.tracks(people)


def _build(track: _Open, people: list[FramePeople]) -> Track:
    C = people[0].views.shape[1] if people else 0
    T = len(people)
    slots, flipped = np.full((C, T), -1), np.zeros((C, T), bool)
    error, centre = np.full((C, T), np.nan), np.full((T, 3), np.nan)
    for t, k in track.rows:
        frame = people[t]
        slots[:, t], flipped[:, t], error[:, t], centre[t] = frame.views[k], frame.flipped[k], frame.error_px[k], \
            frame.centre[k]
    return Track(slots, flipped, error, centre)


def _join(a: Track, b: Track) -> Track:
    """One track from two pieces of one person: each frame from the piece that sees the person in more views
    (``a`` on a tie)."""
    take_b = (b.slots >= 0).sum(0) > np.where(a.frames, (a.slots >= 0).sum(0), -1)
    pick = take_b[None]
    return Track(np.where(pick, b.slots, a.slots), np.where(pick, b.flipped, a.flipped),
                 np.where(pick, b.error_px, a.error_px), np.where(take_b[:, None], b.centre, a.centre))


def _junction(a: Track, b: Track, times: np.ndarray, max_speed_m_s: float, tolerance_m: float,
              max_gap_s: float) -> float:
    """How far (metres) piece ``b`` lies from continuing piece ``a`` where they meet, or inf when it cannot: ``b``
    must start and end after ``a`` does. Where their spans overlap (at most ``max_gap_s``), each of ``b``'s
    centres there is compared with ``a``'s nearest in time, less the distance the person can move meanwhile
    (``max_speed_m_s``), and the median must lie within ``tolerance_m``; else ``b`` must start within
    ``max_gap_s`` of ``a``'s end and within reach of it (``max_speed_m_s`` x the gap + ``tolerance_m``)."""
    fa, fb = np.flatnonzero(a.frames), np.flatnonzero(b.frames)
    if not len(fa) or not len(fb) or fb[0] <= fa[0] or fb[-1] <= fa[-1]:
        return float("inf")
    if fb[0] > fa[-1]:
        gap = float(times[fb[0]] - times[fa[-1]])
        d = float(np.linalg.norm(a.centre[fa[-1]] - b.centre[fb[0]]))
        return d if gap <= max_gap_s and d <= max_speed_m_s * gap + tolerance_m else float("inf")
    if times[fa[-1]] - times[fb[0]] > max_gap_s:
        return float("inf")
    kb = fb[fb <= fa[-1]]
    nearest = fa[np.abs(times[fa][None] - times[kb][:, None]).argmin(1)]
    moved = max_speed_m_s * np.abs(times[kb] - times[nearest])
    d = float(np.median(np.maximum(np.linalg.norm(b.centre[kb] - a.centre[nearest], axis=-1) - moved, 0.0)))
    return d if d <= tolerance_m else float("inf")


def merge_fragments(tracks: list[Track], times: np.ndarray, max_speed_m_s: float, tolerance_m: float,
                    max_gap_s: float, min_fraction: float = 0.1) -> list[Track]:
    """Tracks that are pieces of one person joined, nearest junction first (:func:`_junction`): a person whose
    detections jump in the images (two people overlapping in a view move a detector's joints by more than the
    continuity gate) starts a new track while the old one waits out its gap; the two pieces meet at the same
    place. Only pieces found in ``min_fraction`` of the frames (and three) are joined: a stray few frames near
    somebody's junction (often another person's detections, paired where people overlap) are not. Returns the
    tracks, longest-lived first."""
    tracks = list(tracks)
    times = np.asarray(times, float)
    enough = max(3, min_fraction * len(times))
    while len(tracks) > 1:
        pieces = [k for k, tr in enumerate(tracks) if tr.frames.sum() >= enough]
        pairs = [(_junction(tracks[i], tracks[j], times, max_speed_m_s, tolerance_m, max_gap_s), i, j)
                 for i, j in itertools.permutations(pieces, 2)]
        if not pairs:
            break
        d, i, j = min(pairs)
        if not np.isfinite(d):
            break
        joined = _join(tracks[i], tracks[j])
        tracks = [tr for k, tr in enumerate(tracks) if k not in (i, j)] + [joined]
    return sorted(tracks, key=lambda tr: -int(tr.frames.sum()))


def rig_focus(extrinsics: np.ndarray) -> np.ndarray:
    """(3,) the point nearest every camera's optical axis (least squares): where the cameras look."""
    R, t = extrinsics[:, :, :3], extrinsics[:, :, 3]
    centres = -np.einsum("cji,cj->ci", R, t)
    axes = R[:, 2, :]  # each camera's viewing direction in the world
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, d in zip(centres, axes, strict=True):
        m = np.eye(3) - np.outer(d, d)
        A += m
        b += m @ c
    return np.linalg.lstsq(A, b, rcond=None)[0]


def choose_track(tracks: list[Track], policy: str, support: np.ndarray, focus: np.ndarray | None = None) -> int:
    """The index in ``tracks`` of the performer by ``policy`` (one of :data:`POLICIES`); -1 when there is no
    track. ``support`` (N,) each track's support (e.g. :meth:`Track.support`); ``focus`` (3,) the point the
    cameras look at, for ``closest_to_centre``."""
    if policy not in POLICIES:
        raise ValueError(f"unknown performer policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if not tracks:
        return -1
    support = np.asarray(support, float)
    if support.shape != (len(tracks),):
        raise ValueError(f"support must have one value per track ({len(tracks)},), got {support.shape}")
    if policy == "first":
        start = min(int(np.argmax(tr.frames)) for tr in tracks if tr.frames.any())
        at_start = np.array([(tr.slots[:, start] >= 0).sum() if tr.frames[start] else 0 for tr in tracks])
        return int(np.lexsort((-support, -at_start))[0])
    if policy == "closest_to_centre":
        if focus is None:
            raise ValueError("closest_to_centre needs the point the cameras look at (focus)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            where = np.array([np.nanmedian(tr.centre, axis=0) for tr in tracks])
        distance = np.linalg.norm(where - np.asarray(focus)[None], axis=-1)
        eligible = support >= 0.25 * support.max()
        return int(np.argmin(np.where(eligible & np.isfinite(distance), distance, np.inf)))
    return int(np.argmax(support))
