"""Typed keypoint data passed between stages, and its npz files.

:class:`Keypoints2D` holds detections in every view, :class:`Keypoints3D` the triangulated points with their
quality. Both are frozen dataclasses over read-only numpy arrays, checked on entry. Every camera axis carries
its camera names; loading and selecting match cameras by name, never by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import load_npz, save_npz_atomic
from mocap_studio.reconstruction.skeletons import SkeletonFormat, get_format

__all__ = [
    "Keypoints2D",
    "Detections2D",
    "Keypoints3D",
    "KeypointFileError",
    "load_keypoints2d",
    "load_keypoints3d",
    "SynchronizedKeypoints2D",
    "load_synchronized_keypoints2d",
    "save_synchronized_keypoints2d",
]

FILE_VERSION = 1


class KeypointFileError(ValueError):
    """A keypoint file that cannot be read or does not hold what it should."""


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


def _camera_names(names: Sequence[str], count: int, where: str) -> tuple[str, ...]:
    names = tuple(str(n) for n in names)
    if len(names) != count:
        raise ValueError(f"{where}: {len(names)} camera names for {count} cameras on the camera axis")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: camera names repeat: {list(names)}")
    return names


def _frame_times(times: np.ndarray | None, count: int, where: str) -> np.ndarray:
    if times is None:
        return np.arange(count, dtype=float)
    times = np.asarray(times, dtype=float).reshape(-1)
    if times.shape != (count,):
        raise ValueError(f"{where}: frame_times must have shape ({count},), got {times.shape}")
    if count > 1 and not np.all(np.diff(times) > 0):
        raise ValueError(f"{where}: frame_times must increase strictly")
    return times


def _camera_order(have: Sequence[str], want: Sequence[str], where: str) -> list[int]:
    missing = [n for n in want if n not in have]
    if missing:
        raise KeyError(f"{where}: no camera(s) {missing}; it has {list(have)}")
    return [list(have).index(n) for n in want]


@dataclass(frozen=True, eq=False)
class Keypoints2D:
    """2D detections in every camera.

    xy: (C, T, J, 2) pixel coordinates as observed (distorted), NaN where not detected.
    confidence: (C, T, J) in [0, 1]; 0 where not detected.
    camera_names: (C,) the camera of each row of ``xy``.
    skeleton: the skeleton format's name (see :mod:`reconstruction.skeletons`).
    frame_times: (T,) seconds; defaults to frame indices.
    """

    xy: np.ndarray
    confidence: np.ndarray
    camera_names: tuple[str, ...]
    skeleton: str
    frame_times: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        fmt = get_format(self.skeleton)
        xy = np.asarray(self.xy, dtype=float)
        if xy.ndim != 4 or xy.shape[-1] != 2:
            raise ValueError(f"Keypoints2D: xy must have shape (C, T, J, 2), got {xy.shape}")
        C, T, J, _ = xy.shape
        if J != fmt.num_joints:
            raise ValueError(f"Keypoints2D: skeleton {fmt.name} has {fmt.num_joints} joints but xy has {J}")
        conf = np.asarray(self.confidence, dtype=float)
        if conf.shape != (C, T, J):
            raise ValueError(f"Keypoints2D: confidence must have shape ({C}, {T}, {J}), got {conf.shape}")
        # a missing point has no confidence, and a NaN confidence is a missing point
        missing = np.isnan(xy).any(-1) | np.isnan(conf)
        xy = np.where(missing[..., None], np.nan, xy)
        conf = np.where(missing, 0.0, np.clip(conf, 0.0, 1.0))
        object.__setattr__(self, "xy", _frozen(xy))
        object.__setattr__(self, "confidence", _frozen(conf))
        object.__setattr__(self, "camera_names", _camera_names(self.camera_names, C, "Keypoints2D"))
        object.__setattr__(self, "skeleton", fmt.name)
        object.__setattr__(self, "frame_times", _frozen(_frame_times(self.frame_times, T, "Keypoints2D")))

    @property
    def format(self) -> SkeletonFormat:
        """The skeleton format."""
        return get_format(self.skeleton)

    @property
    def num_cameras(self) -> int:
        """C, cameras."""
        return self.xy.shape[0]

    @property
    def num_frames(self) -> int:
        """T, frames."""
        return self.xy.shape[1]

    @property
    def num_joints(self) -> int:
        """J, joints."""
        return self.xy.shape[2]

    def select_cameras(self, names: Sequence[str]) -> Keypoints2D:
        """The named cameras, in the order given. KeyError naming any camera that is not here."""
        order = _camera_order(self.camera_names, names, "Keypoints2D")
        return replace(self, xy=self.xy[order], confidence=self.confidence[order], camera_names=tuple(names))

    def select_frames(self, frames: slice | np.ndarray) -> Keypoints2D:
        """The frames ``frames`` (a slice or indices) of every camera."""
        times = self.frame_times[frames]
        return replace(self, xy=self.xy[:, frames], confidence=self.confidence[:, frames], frame_times=times)

    def save(self, path: str | Path) -> Path:
        """Write an npz atomically (the old file stays until the new one is complete)."""
        return save_npz_atomic(
            path,
            kind=np.array("keypoints2d"),
            version=np.array(FILE_VERSION),
            xy=self.xy.astype(np.float32),
            confidence=self.confidence.astype(np.float32),
            camera_names=np.array(self.camera_names, dtype=str),
            skeleton=np.array(self.skeleton),
            frame_times=self.frame_times,
        )

    @classmethod
    def load(cls, path: str | Path, cameras: Sequence[str] | None = None) -> Keypoints2D:
        """Read a file written by :meth:`save`; ``cameras`` picks and orders cameras by name."""
        data = _read_npz(path, "keypoints2d", ("xy", "confidence", "camera_names", "skeleton", "frame_times"))
        try:
            kp = cls(
                data["xy"].astype(float),
                data["confidence"].astype(float),
                tuple(data["camera_names"].tolist()),
                str(data["skeleton"]),
                data["frame_times"],
            )
        except (ValueError, KeyError) as e:
            raise KeypointFileError(f"{path}: {e}") from e
        try:
            return kp if cameras is None else kp.select_cameras(cameras)
        except KeyError as e:
            raise KeyError(f"{path}: {e.args[0]}") from e


@dataclass(frozen=True, eq=False)
class Detections2D:
    """Every detected person in every camera, before choosing the performer.

    xy: (C, T, P, J, 2) pixels, NaN where a person slot is empty or a joint was not detected.
    confidence: (C, T, P, J); 0 where missing. People are slots per camera and frame: slot p in one camera
    has nothing to do with slot p in another (association decides who is who).
    """

    xy: np.ndarray
    confidence: np.ndarray
    camera_names: tuple[str, ...]
    skeleton: str
    frame_times: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        fmt = get_format(self.skeleton)
        xy = np.asarray(self.xy, dtype=float)
        if xy.ndim != 5 or xy.shape[-1] != 2:
            raise ValueError(f"Detections2D: xy must have shape (C, T, P, J, 2), got {xy.shape}")
        C, T, P, J, _ = xy.shape
        if J != fmt.num_joints:
            raise ValueError(f"Detections2D: skeleton {fmt.name} has {fmt.num_joints} joints but xy has {J}")
        conf = np.asarray(self.confidence, dtype=float)
        if conf.shape != (C, T, P, J):
            raise ValueError(f"Detections2D: confidence must be ({C}, {T}, {P}, {J}), got {conf.shape}")
        missing = np.isnan(xy).any(-1) | np.isnan(conf)
        object.__setattr__(self, "xy", _frozen(np.where(missing[..., None], np.nan, xy)))
        object.__setattr__(self, "confidence", _frozen(np.where(missing, 0.0, np.clip(conf, 0.0, 1.0))))
        object.__setattr__(self, "camera_names", _camera_names(self.camera_names, C, "Detections2D"))
        object.__setattr__(self, "skeleton", fmt.name)
        object.__setattr__(self, "frame_times", _frozen(_frame_times(self.frame_times, T, "Detections2D")))

    @property
    def num_people(self) -> int:
        """P, people slots per frame."""
        return self.xy.shape[2]

    @property
    def format(self) -> SkeletonFormat:
        """The skeleton format."""
        return get_format(self.skeleton)

    def person(self, slots: np.ndarray | int = 0) -> Keypoints2D:
        """The chosen person per camera and frame: ``slots`` an int or (C, T) ints, -1 for nobody."""
        C, T = self.xy.shape[:2]
        slots = np.broadcast_to(np.asarray(slots, dtype=int), (C, T))
        take = np.clip(slots, 0, self.num_people - 1)[..., None, None]
        xy = np.take_along_axis(self.xy, take[..., None], axis=2)[:, :, 0]
        conf = np.take_along_axis(self.confidence, take, axis=2)[:, :, 0]
        xy = np.where((slots < 0)[..., None, None], np.nan, xy)
        return Keypoints2D(xy, conf, self.camera_names, self.skeleton, self.frame_times)


@dataclass(frozen=True, eq=False)
class Keypoints3D:
    """Triangulated keypoints and how well each was seen.

    xyz: (T, J, 3) metres in the world frame, NaN where not triangulated.
    error: (T, J) mean reprojection error in pixels over the cameras used, NaN where not triangulated.
    cameras_used: (T, J, C) bool, which cameras contributed to each point.
    camera_names: (C,) names for the last axis of ``cameras_used``.
    skeleton: the skeleton format's name.
    frame_times: (T,) seconds; defaults to frame indices.
    interpolated: (T, J) bool, points filled in across a short gap rather than triangulated.
    """

    xyz: np.ndarray
    error: np.ndarray
    cameras_used: np.ndarray
    camera_names: tuple[str, ...]
    skeleton: str
    frame_times: np.ndarray = field(default=None)  # type: ignore[assignment]
    interpolated: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        fmt = get_format(self.skeleton)
        xyz = np.asarray(self.xyz, dtype=float)
        if xyz.ndim != 3 or xyz.shape[-1] != 3:
            raise ValueError(f"Keypoints3D: xyz must have shape (T, J, 3), got {xyz.shape}")
        T, J, _ = xyz.shape
        if J != fmt.num_joints:
            raise ValueError(f"Keypoints3D: skeleton {fmt.name} has {fmt.num_joints} joints but xyz has {J}")
        error = np.asarray(self.error, dtype=float)
        if error.shape != (T, J):
            raise ValueError(f"Keypoints3D: error must have shape ({T}, {J}), got {error.shape}")
        used = np.asarray(self.cameras_used)
        if used.ndim != 3 or used.shape[:2] != (T, J):
            raise ValueError(f"Keypoints3D: cameras_used must have shape ({T}, {J}, C), got {used.shape}")
        interpolated = np.zeros((T, J), bool) if self.interpolated is None else np.asarray(self.interpolated)
        if interpolated.shape != (T, J):
            raise ValueError(f"Keypoints3D: interpolated must be ({T}, {J}), got {interpolated.shape}")
        object.__setattr__(self, "xyz", _frozen(xyz))
        object.__setattr__(self, "error", _frozen(error))
        object.__setattr__(self, "cameras_used", _frozen(used.astype(bool)))
        object.__setattr__(self, "interpolated", _frozen(interpolated.astype(bool)))
        names = _camera_names(self.camera_names, used.shape[2], "Keypoints3D")
        object.__setattr__(self, "camera_names", names)
        object.__setattr__(self, "skeleton", fmt.name)
        object.__setattr__(self, "frame_times", _frozen(_frame_times(self.frame_times, T, "Keypoints3D")))

    @property
    def format(self) -> SkeletonFormat:
        """The skeleton format."""
        return get_format(self.skeleton)

    @property
    def num_frames(self) -> int:
        """T, frames."""
        return self.xyz.shape[0]

    @property
    def num_joints(self) -> int:
        """J, joints."""
        return self.xyz.shape[1]

    @property
    def valid(self) -> np.ndarray:
        """(T, J) bool, points that have a position."""
        return np.isfinite(self.xyz).all(-1)

    def joint(self, name: str) -> np.ndarray:
        """(T, 3) trajectory of the named joint."""
        return self.xyz[:, self.format.index(name)]

    def with_xyz(self, xyz: np.ndarray) -> Keypoints3D:
        """The same points with new positions (T, J, 3), e.g. after filtering."""
        return replace(self, xyz=xyz)

    def select_cameras(self, names: Sequence[str]) -> Keypoints3D:
        """``cameras_used`` restricted to and ordered as ``names``."""
        order = _camera_order(self.camera_names, names, "Keypoints3D")
        return replace(self, cameras_used=self.cameras_used[..., order], camera_names=tuple(names))

    def save(self, path: str | Path) -> Path:
        """Write an npz atomically."""
        return save_npz_atomic(
            path,
            kind=np.array("keypoints3d"),
            version=np.array(FILE_VERSION),
            xyz=self.xyz,
            error=self.error.astype(np.float32),
            cameras_used=self.cameras_used,
            camera_names=np.array(self.camera_names, dtype=str),
            skeleton=np.array(self.skeleton),
            frame_times=self.frame_times,
            interpolated=self.interpolated,
        )

    @classmethod
    def load(cls, path: str | Path, cameras: Sequence[str] | None = None) -> Keypoints3D:
        """Read a file written by :meth:`save`; ``cameras`` picks and orders cameras by name."""
        keys = ("xyz", "error", "cameras_used", "camera_names", "skeleton", "frame_times", "interpolated")
        data = _read_npz(path, "keypoints3d", keys)
        try:
            kp = cls(
                data["xyz"],
                data["error"].astype(float),
                data["cameras_used"],
                tuple(data["camera_names"].tolist()),
                str(data["skeleton"]),
                data["frame_times"],
                data["interpolated"],
            )
        except (ValueError, KeyError) as e:
            raise KeypointFileError(f"{path}: {e}") from e
        try:
            return kp if cameras is None else kp.select_cameras(cameras)
        except KeyError as e:
            raise KeyError(f"{path}: {e.args[0]}") from e


def _read_npz(path: str | Path, kind: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    data = load_npz(path, (), KeypointFileError)
    if "kind" in data and str(data["kind"]) != kind:
        raise KeypointFileError(f"{path}: holds {data['kind']}, not {kind}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise KeypointFileError(f"{path}: missing array(s) {missing}; is it a {kind} file?")
    return data


def load_keypoints2d(path: str | Path, cameras: Sequence[str] | None = None) -> Keypoints2D:
    """Read keypoints2d.npz (see :meth:`Keypoints2D.load`)."""
    return Keypoints2D.load(path, cameras)


def load_keypoints3d(path: str | Path, cameras: Sequence[str] | None = None) -> Keypoints3D:
    """Read keypoints3d.npz (see :meth:`Keypoints3D.load`)."""
    return Keypoints3D.load(path, cameras)


@dataclass(frozen=True, eq=False)
class SynchronizedKeypoints2D:
    """The 2D keypoints triangulation used (``keypoints2d_synced.npz``): every camera on the take's one timeline.

    keypoints: xy (C, N, J, 2) and confidence (C, N, J) on the common timeline ``keypoints.frame_times`` (N,).
    camera_times: camera name -> (T_c,) that camera's own frame times (its clock) before resampling.
    offsets_s: camera name -> offset onto the common clock (common_time = camera_time + offset_s).
    """

    keypoints: Keypoints2D
    camera_times: dict[str, np.ndarray]
    offsets_s: dict[str, float]

    def __post_init__(self) -> None:
        names = list(self.keypoints.camera_names)
        if sorted(self.camera_times) != sorted(names) or sorted(self.offsets_s) != sorted(names):
            raise ValueError(f"camera_times and offsets_s must name the cameras {names}, got "
                             f"{sorted(self.camera_times)} and {sorted(self.offsets_s)}")


def save_synchronized_keypoints2d(path: str | Path, synced: SynchronizedKeypoints2D) -> Path:
    """Write ``keypoints2d_synced.npz`` atomically, at full precision (the fit reads exactly what was triangulated)."""
    kp = synced.keypoints
    names = list(kp.camera_names)
    counts = np.array([len(synced.camera_times[c]) for c in names], dtype=np.int64)
    own = np.full((len(names), int(counts.max()) if len(names) else 0), np.nan)
    for i, c in enumerate(names):
        own[i, : counts[i]] = synced.camera_times[c]
    return save_npz_atomic(
        path,
        kind=np.array("keypoints2d_synced"),
        version=np.array(FILE_VERSION),
        xy=np.asarray(kp.xy, np.float64),
        confidence=np.asarray(kp.confidence, np.float64),
        camera_names=np.array(names, dtype=str),
        skeleton=np.array(kp.skeleton),
        frame_times=kp.frame_times,
        camera_times=own,
        camera_frames=counts,
        offsets_s=np.array([synced.offsets_s[c] for c in names], dtype=np.float64),
    )


def load_synchronized_keypoints2d(path: str | Path) -> SynchronizedKeypoints2D:
    """Read a file written by :func:`save_synchronized_keypoints2d`."""
    keys = ("xy", "confidence", "camera_names", "skeleton", "frame_times", "camera_times", "camera_frames",
            "offsets_s")
    data = _read_npz(path, "keypoints2d_synced", keys)
    try:
        names = tuple(data["camera_names"].tolist())
        kp = Keypoints2D(data["xy"], data["confidence"], names, str(data["skeleton"]), data["frame_times"])
        times = {c: np.array(data["camera_times"][i, : int(data["camera_frames"][i])]) for i, c in enumerate(names)}
        offsets = {c: float(data["offsets_s"][i]) for i, c in enumerate(names)}
        return SynchronizedKeypoints2D(kp, times, offsets)
    except (ValueError, KeyError, IndexError) as e:
        raise KeypointFileError(f"{path}: {e}") from e
