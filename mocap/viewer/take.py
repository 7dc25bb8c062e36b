"""What the viewer shows of a finished take, gathered from its session folder.

:func:`load_take` reads the camera rig (calibration.toml), the 3D keypoints and their per-joint error
(keypoints3d.npz), the body mesh as the export stage skinned and animated it (``export/<take>.<rig>.glb``) and a
few video frames per camera (for the frustums' pictures). Only the rig is required: whatever else is missing is
left out and listed in :attr:`TakeScene.missing` with the command that makes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.session import Session
from mocap_studio.viewer.skinned import SkinnedClip, load_skinned_glb

log = logging.getLogger(__name__)

ERROR_GOOD_PX = 3.0
"""Per-joint reprojection error (pixels) drawn fully green; :data:`ERROR_BAD_PX` and above fully red."""
ERROR_BAD_PX = 15.0
"""Per-joint reprojection error (pixels) drawn fully red."""


def quality_colours(error_px: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB for per-joint errors (...,): green at <= 3 px through yellow to red at >= 15 px; grey
    where NaN (not triangulated)."""
    e = np.asarray(error_px, dtype=float)
    s = np.clip((e - ERROR_GOOD_PX) / (ERROR_BAD_PX - ERROR_GOOD_PX), 0.0, 1.0)
    red = np.clip(2.0 * s, 0, 1)
    green = np.clip(2.0 * (1.0 - s), 0, 1)
    rgb = np.stack([red, green, np.zeros_like(s)], axis=-1) * 230 + 20
    rgb = np.where(np.isfinite(e)[..., None], rgb, 128)
    return rgb.astype(np.uint8)


@dataclass(frozen=True, eq=False)
class CameraView:
    """One camera as drawn: pose (camera-to-world), field of view, and pictures at some times.

    rotmat_c2w: (3, 3). position: (3,) camera centre. fov_y: vertical field of view (rad). aspect: width / height.
    image_times: (N,) common-time seconds of ``images`` (N, h, w, 3) RGB uint8 (N may be 0).
    """

    name: str
    rotmat_c2w: np.ndarray
    position: np.ndarray
    fov_y: float
    aspect: float
    image_times: np.ndarray
    images: np.ndarray

    def picture_index(self, time_s: float) -> int:
        """Index of the picture nearest ``time_s``, -1 when there are none."""
        if len(self.image_times) == 0:
            return -1
        return int(np.argmin(np.abs(self.image_times - time_s)))

    def image_at(self, time_s: float) -> np.ndarray | None:
        """The picture nearest ``time_s``, or None when there are none."""
        i = self.picture_index(time_s)
        return None if i < 0 else self.images[i]


@dataclass(frozen=True, eq=False)
class TakeScene:
    """A take as the viewer draws it. times: (T,) the timeline in seconds (the 3D keypoints' frame times, else
    the body's). xyz: (T, J, 3) keypoints or None; error_px: (T, J); edges: (E, 2) joint index pairs."""

    name: str
    cameras: tuple[CameraView, ...]
    times: np.ndarray
    xyz: np.ndarray | None = None
    error_px: np.ndarray | None = None
    joint_names: tuple[str, ...] = ()
    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=int))
    body: SkinnedClip | None = None
    missing: tuple[str, ...] = ()

    @property
    def num_frames(self) -> int:
        """T, frames on the timeline."""
        return len(self.times)


def camera_views(rig: CameraRig, images: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[CameraView, ...]:
    """:class:`CameraView` of every camera in ``rig`` (images: name -> (times (N,), RGB (N, h, w, 3)))."""
    views = []
    for cam in rig.cameras:
        R = np.asarray(cam.R, dtype=float)
        t = np.asarray(cam.t, dtype=float).reshape(3)
        w, h = cam.size
        fy = float(np.asarray(cam.K)[1, 1])
        times, pics = (images or {}).get(cam.name, (np.zeros(0), np.zeros((0, 1, 1, 3), np.uint8)))
        views.append(CameraView(cam.name, R.T, -R.T @ t, 2.0 * np.arctan2(h / 2.0, fy), w / h, times, pics))
    return tuple(views)


def _video_pictures(path: Path, offset_s: float, max_pictures: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_pictures`` frames of a video spread over it, scaled to ``width`` px, RGB, common times."""
    import cv2
    from mocap_studio.capture.frames import open_frames, probe

    info = probe(path)
    step = max(1, int(np.ceil(max(info.frame_count or 1, 1) / max_pictures)))
    times, pics = [], []
    for frame in open_frames(path, step=step, max_frames=max_pictures):
        img = frame.image
        h = max(1, round(img.shape[0] * width / img.shape[1]))
        pics.append(cv2.cvtColor(cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        times.append(frame.time_s + offset_s)
    if not pics:
        return np.zeros(0), np.zeros((0, 1, 1, 3), np.uint8)
    return np.asarray(times), np.stack(pics)


def body_glb_path(session: Session) -> Path | None:
    """The export stage's skinned, animated GLB, as its report lists it (None when the export wrote none)."""
    report = session.read_stage_report("export") or {}
    rig = str((report.get("figures") or {}).get("rig", ""))
    for out in report.get("outputs", []):
        name = Path(out).name
        if name.endswith(".glb") and not name.endswith(".apose.glb") and (not rig or f".{rig}." in name):
            return session.root / out
    return None


def load_take(session: Session | str | Path, *, max_pictures: int = 24, picture_width: int = 240) -> TakeScene:
    """Gather a finished take for the viewer. Needs calibration.toml; keypoints, body and videos are optional.

    max_pictures: video frames kept per camera for the frustums (0: none). picture_width: their width in px.
    """
    from mocap_studio import inputs
    from mocap_studio.reconstruction.skeletons import get_format

    session = Session(session) if not isinstance(session, Session) else session
    session.require()
    rig = inputs.read_rig(session, require_extrinsics=True)
    missing: list[str] = []
    xyz = error = None
    names: tuple[str, ...] = ()
    edges = np.zeros((0, 2), dtype=int)
    times = None
    if session.keypoints3d_path.exists():
        k3 = inputs.read_keypoints3d(session)
        xyz, error, times = k3.xyz, k3.error, np.asarray(k3.frame_times, dtype=float)
        fmt = get_format(k3.skeleton)
        names = fmt.joints
        edges = np.array([(p, j) for j, p in enumerate(fmt.parents) if p >= 0], dtype=int).reshape(-1, 2)
    else:
        missing.append(f"{session.keypoints3d_path.name} (run `mocap triangulate`)")
    body = None
    glb = body_glb_path(session)
    if glb is not None and glb.exists():
        body = load_skinned_glb(glb, times)
        if times is None:
            times = body.times
    else:
        missing.append("the body mesh export/<take>.<rig>.glb (run `mocap fit` and `mocap export`)")
    if times is None:
        times = np.zeros(1)
    pictures: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if max_pictures > 0:
        offsets = inputs.read_sync(session) if session.sync_path.exists() else {}
        for cam, path in session.performance_sources().items():
            if cam in rig.names:
                off = offsets[cam].offset_s if cam in offsets else 0.0
                pictures[cam] = _video_pictures(path, off, max_pictures, picture_width)
    return TakeScene(name=session.root.name, cameras=camera_views(rig, pictures), times=times, xyz=xyz, error_px=error,
                     joint_names=names, edges=edges, body=body, missing=tuple(missing))
