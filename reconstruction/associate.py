"""Who is who across the cameras, and which person is the performer: every person in the take is found per
frame, followed over the take, and one track is chosen as the performer.

:mod:`reconstruction.tracks` does the work: per frame, candidate 3D people from two-view triangulations of
every pair of detections across cameras, grouped by the detections they project onto, and a global matching
that gives each camera's detection to at most one person by reprojection error; then tracks linking those
people over time by body-centre continuity under a speed limit (gaps up to ``max_gap_s``, a camera or two
missing). The performer is the track chosen by ``performer`` (default ``most_seen``: the most views x frames
over the whole take, weighted by reprojection quality), not whoever happens to be best seen at the first
frame. Per camera and frame the performer's detection is taken when its error lies within that camera's
threshold, and nothing is taken (not a bystander) where the performer was not detected.

The thresholds follow the calibration the take actually has (``max_error_px = 0``, the default). A first pass
finds people and the performer with the ceiling (``max_error_fraction`` of each image's diagonal) as the
threshold and measures, in every camera, how far the performer's detection lies from the performer
triangulated from the *other* cameras (leave one out, the others weighted by how well they agree, so one camera
that is off does not inflate the rest). Per camera, the threshold is the median of those errors plus
``error_mad_factor`` robust standard deviations (1.4826 x MAD) of their low cluster, kept between
``min_error_fraction`` and ``max_error_fraction`` of the image diagonal; a camera with too few measurements takes
the pooled figure. A second pass finds people and the performer with those thresholds. So a camera whose
calibration is a degree off (30-40 px) keeps its performer, while a bystander a metre or two away (hundreds of
pixels) stays out. An explicit ``max_error_px`` sets one fixed threshold for every camera instead.

Every track is kept in :class:`Association` (``tracks``). Several people (``people`` N > 1, or "all"): the N
best-supported tracks, or every track seen by ``min_cameras`` cameras or more in at least a tenth of the frames,
are the take's people (:attr:`Association.people_tracks`, the performer first, then by support), each one's
detections per camera and frame given by :func:`person_keypoints`; a person keeps one identity for as long as
its track lasts (through crossings and gaps up to ``max_gap_s``).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.reconstruction.keypoints import Detections2D, Keypoints2D
from mocap_studio.reconstruction.tracks import (
    POLICIES,
    Track,
    Views,
    choose_track,
    follow,
    make_views,
    merge_fragments,
    pair_errors,
    rig_focus,
    triangulate_views,
)
from mocap_studio.reconstruction.triangulate import match_rig

log = logging.getLogger(__name__)

__all__ = ["AssociationConfig", "Association", "associate", "associate_with_diagnostics", "choose_people",
           "other_keypoints", "person_ids", "person_keypoints"]

_MAD_TO_SIGMA = 1.4826
_MIN_SAMPLES = 20
"""Measurements a camera needs for its own threshold; fewer take the pooled one."""
_PERSON_FRACTION = 0.1
"""A track counts as a person in the figures when found in at least this fraction of the frames (and 3)."""


@dataclass(frozen=True)
class AssociationConfig:
    """Settings for choosing the performer (the ``[associate]`` table; used by detect and import-keypoints)."""

    max_error_px: float = 0.0
    """A detection belongs to a person when its median joint reprojection error is below this, in every
    camera; 0 adapts the threshold to the take, per camera (see the module docstring)."""
    error_mad_factor: float = 4.0
    """Adaptive threshold: the median of a camera's performer errors plus this many robust standard
    deviations (1.4826 x their median absolute deviation)."""
    min_error_fraction: float = 0.01
    """Adaptive threshold floor, as a fraction of the camera's image diagonal (15 px at 1280x720, 22 px at
    1920x1080): detection noise alone reaches that far."""
    max_error_fraction: float = 0.03
    """Adaptive threshold ceiling, as a fraction of the image diagonal (44 px at 1280x720, 66 px at 1920x1080 or
    1088x1920). On real phone footage (Pose2Sim's multi-person demo, MediaPipe) a correctly associated person's
    joints lie 17-34 px (median per camera) from the other cameras' triangulation, and a calibration a degree off
    adds 30-40 px at 1920x1080, while the take's other people lie 100 px and more away; at 5 % (110 px) a camera
    whose errors reached the ceiling took the wrong person in a quarter of its frames."""
    min_confidence: float = 0.3
    """Joints below this confidence are ignored when comparing people."""
    max_speed_m_s: float = 3.0
    """A person's body centre moves at most this fast; farther people in the next frame are someone else."""
    position_tolerance_m: float = 0.5
    """Added to the distance a person can move between two sightings: a body centre triangulated from different
    views jumps by more than a frame's travel (5 cm at 60 fps); on real phone footage by 0.3-0.4 m when the
    views that see the person change, and the track must not drop him for that. People closer than this are
    still told apart: each frame's people go to the nearest tracks (one each)."""
    max_gap_s: float = 0.5
    """A track waits this long for its person to be found again (an occlusion, a person seen by one camera
    only); a person found after a longer gap starts a new track."""
    performer: str = "most_seen"
    """Which track is the performer: ``most_seen`` (the most views x frames over the take, counting the views
    the others confirm), ``first`` (the best seen at the first frame anyone is found), or
    ``closest_to_centre`` (nearest the point the cameras look at, among tracks with a quarter of the best
    support or more)."""

    people: int | str = 1
    """How many people to reconstruct: 1 (the default) chooses the performer (``performer``), everyone else is
    a bystander; N > 1 keeps the N best-supported tracks (most views x frames, the cameras agreeing), each a
    person of its own (``people/<id>/`` in the session); "all" keeps every track seen by ``min_cameras`` or more
    cameras (median over the frames it is found in) in at least a tenth of the frames."""
    min_cameras: int = 2
    """With ``people = "all"``: a track seen by fewer cameras than this (median over its frames) is left out."""
    crop_refine: bool = True
    """With several people and recordings (``mocap detect``): each person's keypoints are detected again in crops
    around where the other cameras place them (``reconstruction/crowd.py``: the first round follows each person
    frame by frame, so who is who holds where people cross; two more place the crops from the round before):
    where people overlap, the whole-image detector misses and misplaces them and mixes them up. On the
    3-performer studio take (ring4, seed 0): found by two cameras in 92.5 / 88.3 / 26.7 % of frames -> 100 %,
    body MPJPE 159 / 208 / 141 mm -> about 30-40 mm; about 4 minutes of crops for its 4 s beside 75 s of
    detection (README, "Several people in one take")."""
    crop_flip_test: bool = True
    """With ``crop_refine``: every crop is also looked at mirrored (``crowd.FlipTest``), each joint the two passes
    agree on averaged, one they place apart (a left/right or limb mix-up) kept at a lower confidence. On four
    3-performer studio takes the body MPJPE 28.6 -> 25.7 mm on average, the worst performer 42.6 -> 33.6 mm,
    for twice the crops' time (README, "Several people in one take"); ``false`` for speed."""

    crop_hidden_confidence: float = 0.1
    """With ``crop_refine``: a person's view that a nearer person hides more than half of is not trusted, but stays
    with its joints at this confidence: under the triangulation's ``min_confidence``, a weak view, which offers
    candidate points and scores them at ``[triangulate] crowd_weak_view_weight`` of a trusted view. The joints
    there that nobody covers are seen (seen past a nearer person's shoulder, an elbow is often the one view that
    can tell where two facing cameras place it; README, "Several people in one take"). 0 drops the whole view."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.crop_hidden_confidence < 1.0:
            raise ValueError(f"crop_hidden_confidence must be in [0, 1), got {self.crop_hidden_confidence}")
        if not (self.people == "all" or (isinstance(self.people, int) and not isinstance(self.people, bool)
                                         and self.people >= 1)):
            raise ValueError(f"people must be a whole number >= 1 or \"all\", got {self.people!r}")
        if self.min_cameras < 2:
            raise ValueError(f"min_cameras must be >= 2 (a person is triangulated from two cameras), got "
                             f"{self.min_cameras}")
        if self.max_error_px < 0 or self.max_speed_m_s <= 0 or self.error_mad_factor < 0 or self.position_tolerance_m < 0:
            raise ValueError("max_error_px, error_mad_factor and position_tolerance_m must be >= 0 (max_error_px 0 "
                             "adapts) and max_speed_m_s > 0")
        if not 0 < self.min_error_fraction <= self.max_error_fraction:
            raise ValueError("need 0 < min_error_fraction <= max_error_fraction (fractions of the image diagonal)")
        if not self.max_gap_s >= 0:
            raise ValueError(f"max_gap_s must be >= 0 seconds, got {self.max_gap_s}")
        if self.performer not in POLICIES:
            raise ValueError(f"performer must be one of {', '.join(POLICIES)}, got {self.performer!r}")


@dataclass(frozen=True, eq=False)
class Association:
    """The performer chosen in every camera and frame, the take's people, and how.

    keypoints: (C, T, J) the performer. slots (C, T): the chosen person per camera and frame, -1 where the
    performer was not found. threshold_px (C,): the agreement threshold used per camera (NaN: one person
    per frame, nothing to choose). error_px (C, T): the chosen person's median joint error against the
    performer triangulated from the other cameras (NaN where not measurable): each camera's calibration
    checked against the rest. adaptive: thresholds measured from the take (else ``max_error_px``).
    tracks: every person followed over the take (:class:`tracks.Track`), the most seen first; performer: the
    index of the performer's among them (-1: none); support (N,): each track's support as the choice weighed it
    (``most_seen``: views x frames weighted by agreement, see :func:`_verified_support`). seconds: time spent.
    """

    keypoints: Keypoints2D
    slots: np.ndarray
    threshold_px: np.ndarray
    error_px: np.ndarray
    adaptive: bool
    tracks: tuple[Track, ...] = ()
    performer: int = -1
    policy: str = "most_seen"
    support: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seconds: float = field(default=0.0, compare=False)
    people_tracks: tuple[int, ...] = ()
    """With several people asked for (``people`` != 1): the indices in ``tracks`` of the people kept, in the
    order of their ids (``p0`` first: the performer, then by support); empty otherwise."""

    @property
    def found(self) -> np.ndarray:
        """(C,) fraction of frames in which the performer was found, per camera."""
        return (self.slots >= 0).mean(axis=1) if self.slots.shape[1] else np.zeros(len(self.slots))

    @property
    def people(self) -> int:
        """Tracks found in at least 10 % of the frames (and three): the take's people."""
        T = self.slots.shape[1]
        return sum(int(tr.frames.sum()) >= max(3, _PERSON_FRACTION * T) for tr in self.tracks)

    def figures(self, detected: np.ndarray | None = None) -> dict[str, Any]:
        """Per camera: fraction of frames found, threshold, median leave-one-out error; ``detected`` (C, T)
        bool, frames in which the camera saw anybody, adds the fraction of those found. Then the people (tracks
        found in 10 % of the frames or more), every track, and the performer's track."""
        per_camera: dict[str, Any] = {}
        for c, name in enumerate(self.keypoints.camera_names):
            fair = self.error_px[c][np.isfinite(self.error_px[c])]
            row: dict[str, Any] = {
                "found": round(float(self.found[c]), 4),
                "threshold_px": round(float(self.threshold_px[c]), 2) if np.isfinite(self.threshold_px[c]) else None,
                "median_error_px": round(float(np.median(fair)), 2) if fair.size else None,
            }
            if detected is not None:
                seen = detected[c]
                row["found_of_detected"] = round(float((self.slots[c][seen] >= 0).mean()), 4) if seen.any() else 0.0
            per_camera[name] = row
        chose = bool(np.isfinite(self.threshold_px).any())  # else one person per frame: nobody was followed
        out: dict[str, Any] = {"adaptive_threshold": self.adaptive, "people": self.people if chose else None,
                               "tracks": len(self.tracks) if chose else None, "per_camera": per_camera,
                               "seconds": round(self.seconds, 3)}
        if self.people_tracks:
            out["people_kept"] = [{"id": pid, "track": i, "frames_found": round(float(self.tracks[i].frames.mean()), 4),
                                   "support": round(float(self.support[i]), 1),
                                   "median_views": _median_views(self.tracks[i])}
                                  for pid, i in zip(person_ids(len(self.people_tracks)), self.people_tracks,
                                                    strict=True)]
        if self.performer >= 0:
            track = self.tracks[self.performer]
            others = np.delete(self.support, self.performer)
            out["performer"] = {"policy": self.policy, "track": self.performer,
                                "frames_found": round(float(track.frames.mean()), 4),
                                "support": round(float(self.support[self.performer]), 1),
                                "next_support": round(float(others.max()), 1) if others.size else None}
        return out


def person_ids(count: int) -> tuple[str, ...]:
    """The people's ids in a session, ``p0`` .. ``p<count-1>`` (``people/<id>/``)."""
    return tuple(f"p{i}" for i in range(count))


def _median_views(track: Track) -> float:
    """The median number of cameras that see the track's person, over the frames it is found in."""
    views = (track.slots >= 0).sum(0)
    return float(np.median(views[track.frames])) if track.frames.any() else 0.0


def choose_people(tracks: tuple[Track, ...] | list[Track], support: np.ndarray, performer: int,
                  config: AssociationConfig) -> tuple[int, ...]:
    """The tracks kept as the take's people by ``config.people`` (N, or "all" with ``min_cameras``): the
    performer first, then the others by ``support`` (N,) (a track left unchecked by the verified support, 0,
    ranks by the frames it is found in after every checked one); only tracks found in a tenth of the frames (and
    three) count as people. () when ``people`` is 1 or there is no track."""
    if config.people == 1 or not tracks or performer < 0:
        return ()
    T = len(tracks[0].frames)
    quick = np.array([float(tr.frames.sum()) for tr in tracks])
    order = sorted(range(len(tracks)), key=lambda i: (i != performer, -support[i], -quick[i]))
    enough = max(3, _PERSON_FRACTION * T)  # a track found in fewer frames is no person of the take (a fragment)
    order = [i for i in order if i == performer or tracks[i].frames.sum() >= enough]
    if config.people == "all":
        return tuple(i for i in order if _median_views(tracks[i]) >= config.min_cameras)
    return tuple(order[:int(config.people)])


def person_keypoints(detections: Detections2D, result: Association) -> dict[str, Keypoints2D]:
    """Each kept person's detections per camera and frame (NaN where not seen), by id (:func:`person_ids`);
    {} when one person was asked for."""
    ids = person_ids(len(result.people_tracks))
    return {pid: detections.person(result.tracks[i].slots) for pid, i in zip(ids, result.people_tracks, strict=True)}


def other_keypoints(detections: Detections2D, result: Association, min_frames: int = 5) -> list[Keypoints2D]:
    """The detections (C, T, J) of every track not kept as a person and found in ``min_frames`` frames or more,
    longest first: where a person lost by the kept tracks (who changed places with another where they crossed)
    may be taken up again (:func:`mocap_studio.reconstruction.crowd.follow_in_crops`)."""
    kept = set(result.people_tracks)
    return [detections.person(tr.slots) for i, tr in enumerate(result.tracks)
            if i not in kept and tr.frames.sum() >= min_frames]


def _oriented(views: Views, track: Track) -> np.ndarray:
    """(C, T, J, 2) the track's detections, each labelled as the track's other views that frame (NaN where
    not seen)."""
    C, T, P = views.xy.shape[:3]
    picked = np.take_along_axis(views.xy, np.clip(track.slots, 0, P - 1)[:, :, None, None, None], 2)[:, :, 0]
    picked = np.where(track.flipped[..., None, None], picked[:, :, views.flip], picked)
    return np.where((track.slots >= 0)[..., None, None], picked, np.nan)


def _leave_one_out(views: Views, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, T) median joint error, in each camera, of ``chosen`` (C, T, J, 2) against the person triangulated
    from the other cameras (at least two); NaN where not measurable. Three rounds: each weights the other
    cameras by the inverse square of their last typical error, so one camera that is off does not inflate the
    others' figures. -> (errors, the cameras' weights (C,), ones where nothing was measured)."""
    C, T, J = chosen.shape[:3]
    obs = chosen.transpose(1, 2, 0, 3).reshape(T * J, C, 2)
    out = np.full((C, T), np.nan)
    weights = None
    for _ in range(3):
        for c in range(C):
            others = obs.copy()
            others[:, c] = np.nan
            proj = triangulate_views(views, others, weights)[1][:, c].reshape(T, J, 2)
            err = np.linalg.norm(proj - chosen[c], axis=-1) * views.focal[c]  # (T, J)
            enough = np.isfinite(err).sum(-1) >= views.min_joints
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[c] = np.where(enough, np.nanmedian(err, axis=-1), np.nan)
        typical = np.array([np.median(e[np.isfinite(e)]) if np.isfinite(e).any() else np.nan for e in out])
        if not np.isfinite(typical).any():
            break
        typical = np.where(np.isfinite(typical), typical, np.nanmax(typical))
        weights = (typical.min() / np.maximum(typical, 1e-6)) ** 2
    return out, np.ones(C) if weights is None else weights


def _low_cluster(values: np.ndarray, floor: float, cap: float, k: float) -> tuple[float, float]:
    """(threshold, fraction of ``values`` below it) for the low cluster of ``values``: median + k robust
    sigmas (1.4826 MAD) of the values below the threshold itself, iterated from those below ``cap`` and kept
    in [floor, cap], so a bystander's errors or a missed performer's (the nearest person is then someone
    else), far above, drop out. The margin above the median is at least half the floor: a camera a degree off
    has errors tightly around its offset (31-34 px), and detection noise comes on top of it. (NaN, 0): too
    few values."""
    kept = values[values < cap]
    threshold = cap
    for _ in range(10):
        if len(kept) < _MIN_SAMPLES:
            return float("nan"), 0.0
        median = float(np.median(kept))
        spread = max(k * _MAD_TO_SIGMA * float(np.median(np.abs(kept - median))), 0.5 * floor)
        new = min(max(median + spread, floor), cap)
        if new == threshold:
            break
        threshold = new
        kept = values[values < threshold]
    return threshold, float((values < threshold).mean())


def _adaptive_thresholds(errors: np.ndarray, floor: np.ndarray, cap: np.ndarray, k: float) -> np.ndarray:
    """Per camera (C,), from its leave-one-out errors (C, T): the threshold of its low cluster
    (:func:`_low_cluster`); a camera with too few measurements takes that of every camera's errors pooled."""
    samples = [e[np.isfinite(e)] for e in errors]
    own = np.array([_low_cluster(v, f, m, k)[0] for v, f, m in zip(samples, floor, cap, strict=True)])
    pooled = _low_cluster(np.concatenate(samples), float(np.median(floor)), float(np.median(cap)), k)[0]
    out = np.where(np.isfinite(own), own, pooled)
    out = np.where(np.isfinite(out), out, 2 * floor)  # nothing measured anywhere: the first pass's gate
    return np.clip(out, floor, cap)


def _verified_support(views: Views, tracks: list[Track], threshold: np.ndarray) -> np.ndarray:
    """(N,) each track's support over the take: its views x frames, a view counting 1 where the track's other
    views confirm it (its weighted leave-one-out error, :func:`_leave_one_out`, within the camera's threshold),
    0 where they do not, and 0.5 in a frame seen by two cameras only (nothing to check it against). So a person
    whose views disagree (a wrong association, a person composited into the footage) counts less than one the
    cameras agree on, while a camera whose calibration is off, within its threshold, weighs every person alike.
    Only tracks with at least a quarter of the best quick support (:meth:`Track.support`), six at most, are
    checked; the others get 0."""
    quick = np.array([tr.support(threshold) for tr in tracks])
    out = np.zeros(len(tracks))
    for i in np.argsort(-quick)[:6]:
        if quick[i] < 0.25 * quick.max():
            break
        track = tracks[i]
        loo = _leave_one_out(views, _oriented(views, track))[0]
        seen = track.slots >= 0
        confirmed = np.where(loo < threshold[:, None], 1.0, 0.0)
        weight = np.where(np.isfinite(loo), confirmed, np.where(seen.sum(0)[None] == 2, 0.5, 0.0))
        out[i] = float(np.where(seen, weight, 0).sum())
    return out


def _performer(views: Views, pairs: tuple[np.ndarray, np.ndarray], threshold: np.ndarray, times: np.ndarray,
               config: AssociationConfig, weights: np.ndarray | None = None) -> tuple[list[Track], int, np.ndarray]:
    """Every frame's people with per-camera ``threshold`` (C,) (cameras weighted by ``weights``), linked into
    tracks -> (tracks, the performer's index (-1 when nobody was found in two cameras at once), each track's
    support (N,))."""
    _, tracks = follow(views, *pairs, threshold, times, config.max_speed_m_s, config.position_tolerance_m,
                       config.max_gap_s, weights)
    support = _verified_support(views, tracks, threshold) if tracks else np.zeros(0)
    return tracks, choose_track(tracks, config.performer, support, rig_focus(views.extrinsics)), support


def associate_with_diagnostics(
    rig: CameraRig, detections: Detections2D, config: AssociationConfig | None = None
) -> Association:
    """Pick the performer in every camera and frame: detections (C, T, P, J) -> :class:`Association`
    (keypoints (C, T, J), slots (C, T), thresholds used, errors, every track). Cameras are matched by name."""
    t0 = time.perf_counter()
    config = config or AssociationConfig()
    C, T, P, J = detections.confidence.shape
    present = (detections.confidence > 0).any(-1)  # (C, T, P)
    if P == 1 or (present.any() and present.sum(-1).max() <= 1):
        # nobody to tell apart: each camera saw one person at a time, the performer (a view of somebody else
        # is an outlier view to triangulation's consensus). Matching people across cameras reads their frames
        # as simultaneous, which before sync they are not (the demo's cameras are 4-12 frames apart: the
        # performer's views split into two "people" in fast motion)
        slots = np.where(present.any(-1), np.argmax(present, -1), -1)
        return Association(detections.person(slots), slots, np.full(C, np.nan), np.full((C, T), np.nan),
                           adaptive=False, policy=config.performer)
    rig = match_rig(rig, detections.camera_names, "detections")
    views = make_views(rig, detections, config.min_confidence, max(3, J // 4))
    pairs = pair_errors(views)
    times = np.asarray(detections.frame_times, float)
    weights = None
    if config.max_error_px > 0:
        threshold = np.full(C, float(config.max_error_px))
    else:
        diagonal = np.array([np.hypot(*c.size) for c in rig.cameras], float)
        floor, cap = config.min_error_fraction * diagonal, config.max_error_fraction * diagonal
        tracks, chosen, _ = _performer(views, pairs, cap, times, config)
        errors, weights = _leave_one_out(views, _oriented(views, tracks[chosen])) if chosen >= 0 else \
            (np.full((C, T), np.nan), None)
        threshold = _adaptive_thresholds(errors, floor, cap, config.error_mad_factor)
        log.info("association thresholds from the take's reprojection errors: %s",
                 ", ".join(f"{n} {v:.1f} px" for n, v in zip(detections.camera_names, threshold, strict=True)))
    tracks, chosen, support = _performer(views, pairs, threshold, times, config, weights)
    if config.people != 1 and len(tracks) > 1:  # several people: each one's pieces joined into one identity
        tracks = merge_fragments(tracks, times, config.max_speed_m_s, config.position_tolerance_m, config.max_gap_s)
        support = _verified_support(views, tracks, threshold)
        chosen = choose_track(tracks, config.performer, support, rig_focus(views.extrinsics))
    if chosen < 0:
        slots, errors = np.full((C, T), -1), np.full((C, T), np.nan)
        log.warning("association: no person was found by two cameras at once in any of the %d frames", T)
    else:
        slots = tracks[chosen].slots
        errors = np.where(slots >= 0, _leave_one_out(views, _oriented(views, tracks[chosen]))[0], np.nan)
    kept = choose_people(tracks, support, chosen, config)
    result = Association(detections.person(slots), slots, threshold, errors, adaptive=config.max_error_px <= 0,
                         tracks=tuple(tracks), performer=chosen, policy=config.performer, support=support,
                         seconds=time.perf_counter() - t0, people_tracks=kept)
    log.info("association: %d people (%d tracks) in %d frames, the performer (%s) found in %.0f %% of frames, "
             "%.2f s", result.people, len(tracks), T, config.performer,
             100 * (tracks[chosen].frames.mean() if chosen >= 0 else 0.0), result.seconds)
    return result


def associate(
    rig: CameraRig, detections: Detections2D, config: AssociationConfig | None = None
) -> tuple[Keypoints2D, np.ndarray]:
    """Pick the performer in every camera and frame.

    detections (C, T, P, J) -> (Keypoints2D (C, T, J) of the performer, slots (C, T) int: the chosen
    person per camera and frame, -1 where the performer was not found). Cameras are matched by name. See
    :func:`associate_with_diagnostics` for the thresholds used, the errors measured and every track.
    """
    result = associate_with_diagnostics(rig, detections, config)
    return result.keypoints, result.slots
