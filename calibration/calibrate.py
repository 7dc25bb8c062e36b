"""Calibrate a rig from board observations: intrinsics per camera, initial poses from shared views, one
sparse bundle adjustment over everything, then world alignment (:func:`calibrate_rig`); or each camera's
intrinsics alone from its own views, with no view assumed simultaneous (:func:`calibrate_intrinsics_only`).
Pure functions over typed data; an implausible result is refused (:mod:`calibration.checks`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from mocap_studio.calibration.align import align_to_camera, align_to_floor_board, transform_poses
from mocap_studio.calibration.bundle import BundleConfig, BundleResult, bundle_adjust_board
from mocap_studio.calibration.camera import Camera, CameraRig, adapt_to_image_size
from mocap_studio.calibration.checks import PlausibilityConfig, check_cameras
from mocap_studio.calibration.detect import DetectionConfig
from mocap_studio.calibration.extrinsics import InitialExtrinsics, initial_extrinsics
from mocap_studio.calibration.intrinsics import IntrinsicsConfig, IntrinsicsReport, calibrate_intrinsics
from mocap_studio.calibration.observations import BoardObservations
from mocap_studio.calibration.recordings import NotSimultaneousError
from mocap_studio.common.rotations import average_rotations, rotation_angle_deg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationConfig:
    """Settings of the ``calibrate`` stage (``[calibrate]`` in session.toml)."""

    detection: DetectionConfig = field(default_factory=DetectionConfig)
    """Board detection in the calibration recordings (frame step, quality gates)."""
    intrinsics: IntrinsicsConfig = field(default_factory=IntrinsicsConfig)
    """Per-camera intrinsic calibration (used for cameras without known intrinsics)."""
    bundle: BundleConfig = field(default_factory=BundleConfig)
    """The final bundle adjustment over all cameras and board poses."""
    reference_camera: str = ""
    """Camera whose pose fixes the gauge during optimisation; empty: the best-connected camera."""
    align: str = "floor"
    """World frame: 'floor' (a board view lying on the floor: Z up, floor at Z = 0, origin at the board's
    centre), 'camera' (the reference camera's frame turned Z-up), or 'none'."""
    floor_frame: int = -1
    """Frame index of the board lying on the floor; -1: the last frame in which the board was seen."""
    min_shared_views: int = 2
    """Two cameras are linked when they saw at least this many board views together."""
    max_pair_spread_deg: float = 5.0
    """Views are matched across cameras by frame index, so they must be simultaneous. When the relative pose of
    two cameras, computed from each board view they share (3 or more), scatters by more than this (median
    angle to the robust mean), the views were not simultaneous and the calibration is refused. Synchronized
    recordings scatter by a fraction of a degree; photos taken one camera at a time by tens of degrees."""
    plausibility: PlausibilityConfig = field(default_factory=PlausibilityConfig)
    """Focal-length and RMS bounds outside which a calibrated camera is refused (nothing is written)."""


def _steady_pose(poses: np.ndarray, views: np.ndarray, chosen: int, centre: np.ndarray,
                 max_move_m: float = 0.01, max_turn_deg: float = 1.0) -> np.ndarray:
    """The board pose of view ``chosen``, averaged with every other view in which the board lay in the same
    place (a board left on the floor for a few seconds gives many such views, and their mean is steadier)."""
    ref = poses[chosen]
    ref_centre = ref[:3, :3] @ centre + ref[:3, 3]
    same = [v for v in views
            if np.linalg.norm(poses[v][:3, :3] @ centre + poses[v][:3, 3] - ref_centre) < max_move_m
            and rotation_angle_deg(poses[v][:3, :3], ref[:3, :3]) < max_turn_deg]
    out = np.eye(4)
    out[:3, :3] = average_rotations(poses[same][:, :3, :3])
    out[:3, 3] = np.mean(poses[same][:, :3, 3], axis=0)
    return out


@dataclass(frozen=True)
class CalibrationResult:
    """Result of :func:`calibrate_rig`: the calibrated rig, the per-stage reports and the final board poses."""

    rig: CameraRig
    """Calibrated cameras that are connected to the reference (in the observations' order)."""
    intrinsics: tuple[IntrinsicsReport, ...]
    """Reports of cameras whose intrinsics were calibrated here."""
    bundle: BundleResult
    board_poses: np.ndarray
    """(V, 4, 4) world-from-board poses in the final world frame."""
    per_camera_rms_px: dict[str, float]
    per_camera_observations: dict[str, int]
    unconnected: tuple[str, ...]
    """Cameras that share no board views with the reference camera's group (not calibrated)."""
    warnings: tuple[str, ...]
    seconds: dict[str, float]
    world_from_previous: np.ndarray
    """(4, 4) the alignment applied after the bundle adjustment."""


BAD_CALIBRATION_ADVICE = (
    "No calibration file was written. Usual causes: images of different cameras taken as simultaneous views (photos taken "
    "one camera at a time give intrinsics only: mocap calibrate --intrinsics-only), a wrong board definition "
    "(square size, inner corners), or too few and too similar board views (hold the board close to each "
    "camera, tilted, across the whole image)."
)


def _known_cameras(known: Mapping[str, Camera], obs: BoardObservations, warnings: list[str]) -> dict[str, Camera]:
    """The given intrinsics made to fit each camera's board-recording size (encoder padding or a uniform
    scale; another size raises naming the camera)."""
    out = {}
    for c, name in enumerate(obs.camera_names):
        if name in known:
            cam, message = adapt_to_image_size(known[name], obs.image_sizes[c], "its board recording")
            if message:
                warnings.append(message)
            out[name] = cam.replace(name=name)
    return out


def check_simultaneous(init: InitialExtrinsics, camera_names: tuple[str, ...], max_spread_deg: float) -> None:
    """Raise NotSimultaneousError (a ValueError) naming the camera pairs whose shared board views (3 or more)
    disagree on their relative pose by more than ``max_spread_deg`` (median): such views were not taken at
    the same instant."""
    bad = [(camera_names[a], camera_names[b], pp) for (a, b), pp in sorted(init.pairs.items())
           if pp.shared_views >= 3 and pp.spread_deg > max_spread_deg]
    if not bad:
        return
    pairs = "; ".join(f"{a!r} and {b!r}: {pp.shared_views} shared views, {pp.spread_deg:.1f} degrees"
                      for a, b, pp in bad)
    raise NotSimultaneousError(
        f"the board views of different cameras are not simultaneous ({pairs} of median disagreement on the "
        f"cameras' relative pose; simultaneous views agree within about a degree, the limit is {max_spread_deg}). "
        "Views are matched by frame index, so the recordings must be synchronized videos, or image folders of "
        "frames taken at the same instants. For photos taken by each camera on its own, calibrate intrinsics "
        "only (mocap calibrate --intrinsics-only), then the extrinsics from a synchronized board recording "
        "(mocap calibrate --intrinsics FILE ...). No calibration file was written."
    )


def calibrate_rig(
    obs: BoardObservations,
    object_points: np.ndarray,
    config: CalibrationConfig = CalibrationConfig(),
    known_intrinsics: Mapping[str, Camera] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """Calibrate every camera of ``obs``.

    obs: board observations of C cameras. object_points: (N, 3) board corners in metres.
    known_intrinsics: cameras (by name) whose K and distortion to start from instead of calibrating them.
    Raises ValueError naming the cameras when fewer than two cameras can be linked.
    """
    say = progress or (lambda msg: log.info(msg))
    object_points = np.asarray(object_points, float)
    if object_points.ndim != 2 or object_points.shape[1] != 3:
        raise ValueError(f"object_points must have shape (N, 3), got {object_points.shape}")
    times: dict[str, float] = {}
    warnings: list[str] = []
    known = _known_cameras(known_intrinsics or {}, obs, warnings)
    t0 = time.perf_counter()
    cameras: list[Camera] = []
    reports: list[IntrinsicsReport] = []
    never_seen = [n for c, n in enumerate(obs.camera_names) if not np.any(obs.cam == c)]
    if never_seen:
        warnings.append(
            f"camera(s) {never_seen} never saw the board: they cannot be calibrated from this recording. "
            "Record the board where these cameras see it, or check the board definition."
        )
    for c, name in enumerate(obs.camera_names):
        if name in known:
            cameras.append(known[name])
            continue
        if name in never_seen:
            w, h = obs.image_sizes[c]
            cameras.append(Camera(name, (w, h), np.array([[max(w, h), 0, w / 2], [0, max(w, h), h / 2], [0, 0, 1.0]])))
            continue
        say(f"intrinsics of {name}")
        cam, rep = calibrate_intrinsics(obs, object_points, c, config.intrinsics)
        cameras.append(cam)
        reports.append(rep)
        warnings.extend(rep.warnings)
    times["intrinsics"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("initial camera poses from shared board views")
    init = initial_extrinsics(cameras, obs, object_points, config.reference_camera or None)
    check_simultaneous(init, obs.camera_names, config.max_pair_spread_deg)
    unconnected = tuple(n for c, n in enumerate(obs.camera_names) if not init.connected[c])
    linked = [n for c, n in enumerate(obs.camera_names) if init.connected[c]]
    if len(linked) < 2:
        raise ValueError(
            f"no two cameras saw the board at the same time (cameras: {', '.join(obs.camera_names)}). "
            "Extrinsic calibration needs board views shared by pairs of cameras: hold the board where "
            "neighbouring cameras both see it, and check that the recordings are synchronized."
        )
    for n in unconnected:
        if n not in never_seen:
            warnings.append(
                f"camera {n!r} shares no board view with {linked[0]!r}'s group ({', '.join(linked)}); it was not "
                "calibrated. Record the board where it and one of those cameras see it at the same time."
            )
    times["initial_poses"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sub = obs.for_cameras(linked)
    # corners of views that no linked camera could place (PnP failed everywhere) cannot start well
    sub = sub.select(np.flatnonzero(init.view_initialized[sub.view]))
    sub_cams = [cameras[obs.camera_names.index(n)] for n in linked]
    init_sub = [init.cameras[obs.camera_names.index(n)] for n in linked]
    sub_cams = [c.replace(R=i.R, t=i.t) for c, i in zip(sub_cams, init_sub, strict=True)]
    ref = linked.index(obs.camera_names[init.reference])
    say(f"bundle adjustment: {len(linked)} cameras, {len(np.unique(sub.view))} board views, {len(sub.cam)} corners")
    # first poses only (intrinsics fixed), then everything: a poor start for the intrinsics cannot drag
    # the poses into a wrong minimum
    poses_only = BundleConfig(**{**config.bundle.__dict__, "refine_intrinsics": False, "refine_distortion": False})
    stage1 = bundle_adjust_board(sub_cams, sub, object_points, init.board_poses, poses_only, fixed_camera=ref)
    result = stage1
    if config.bundle.refine_intrinsics or config.bundle.refine_distortion:
        result = bundle_adjust_board(stage1.cameras, sub, object_points, stage1.poses, config.bundle, fixed_camera=ref)
    times["bundle_adjustment"] = time.perf_counter() - t0

    rig = CameraRig(tuple(result.cameras))
    poses = result.poses
    world_from_previous = np.eye(4)
    if config.align == "floor":
        seen_views = np.unique(sub.view)
        if config.floor_frame >= 0:
            match = np.flatnonzero(sub.view_frames == config.floor_frame)
            if not len(match) or match[0] not in seen_views:
                raise ValueError(
                    f"floor_frame {config.floor_frame}: the board was not seen in that frame; frames with the board: "
                    f"{sub.view_frames[seen_views][:10].tolist()}..."
                )
            floor_view = int(match[0])
        else:
            floor_view = int(seen_views[np.argmax(sub.view_frames[seen_views])])
        centre = object_points.mean(axis=0)
        floor_pose = _steady_pose(poses, seen_views, floor_view, centre)
        rig, R, t = align_to_floor_board(rig, floor_pose, centre)
        poses = transform_poses(poses, R, t)
        world_from_previous[:3, :3], world_from_previous[:3, 3] = R, t
    elif config.align == "camera":
        rig, R, t = align_to_camera(rig, linked[ref])
        poses = transform_poses(poses, R, t)
        world_from_previous[:3, :3], world_from_previous[:3, 3] = R, t
    elif config.align != "none":
        raise ValueError(f"calibrate.align must be 'floor', 'camera' or 'none', got {config.align!r}")

    per_rms, per_n = {}, {}
    for c, name in enumerate(linked):
        r = result.residuals_px[(sub.cam == c) & result.inliers]
        per_rms[name] = float(np.sqrt(np.mean(r**2))) if len(r) else float("nan")
        per_n[name] = int(len(r))
    check_cameras(rig, per_rms, config.plausibility, BAD_CALIBRATION_ADVICE)
    outliers = int((~result.inliers).sum())
    if outliers > 0.05 * len(result.inliers):
        warnings.append(
            f"{outliers} of {len(result.inliers)} board corners ({outliers / len(result.inliers):.0%}) were rejected as "
            "outliers: check for a wrong board definition, motion blur, or unsynchronized cameras."
        )
    return CalibrationResult(rig, tuple(reports), result, poses, per_rms, per_n, unconnected, tuple(warnings),
                             times, world_from_previous)


@dataclass(frozen=True)
class IntrinsicsOnlyResult:
    """Result of :func:`calibrate_intrinsics_only`: every camera's intrinsics, each from its own views."""

    rig: CameraRig
    """The cameras with their intrinsics, poses left at the identity (unknown), in the observations' order."""
    intrinsics: tuple[IntrinsicsReport, ...]
    """One report per camera, in the rig's order."""
    warnings: tuple[str, ...]
    seconds: float


def calibrate_intrinsics_only(
    obs: BoardObservations,
    object_points: np.ndarray,
    config: CalibrationConfig = CalibrationConfig(),
    progress: Callable[[str], None] | None = None,
) -> IntrinsicsOnlyResult:
    """Each camera of ``obs`` calibrated alone from its own board views (no view is taken as seen by two
    cameras, whatever its frame index), for photos or recordings made one camera at a time.

    obs: board observations of C cameras. object_points: (N, 3) board corners in metres.
    Raises ValueError naming the camera when one has too few views, and ImplausibleCalibrationError when a
    camera's focal length or RMS is implausible (``config.plausibility``).
    """
    say = progress or (lambda msg: log.info(msg))
    object_points = np.asarray(object_points, float)
    if object_points.ndim != 2 or object_points.shape[1] != 3:
        raise ValueError(f"object_points must have shape (N, 3), got {object_points.shape}")
    start = time.perf_counter()
    cameras, reports, warnings = [], [], []
    for c, name in enumerate(obs.camera_names):
        say(f"intrinsics of {name}")
        cam, rep = calibrate_intrinsics(obs, object_points, c, config.intrinsics)
        cameras.append(cam)
        reports.append(rep)
        warnings.extend(rep.warnings)
    check_cameras(cameras, {r.camera: r.rms_px for r in reports}, config.plausibility, BAD_CALIBRATION_ADVICE)
    return IntrinsicsOnlyResult(CameraRig(tuple(cameras)), tuple(reports), tuple(warnings),
                                time.perf_counter() - start)
