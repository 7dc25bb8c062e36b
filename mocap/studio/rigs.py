"""Virtual studio rigs: camera presets as data (``configs/rigs/<name>.toml``) and each camera's clock.

A preset places cameras on a ring or an arc looking at the capture volume (a camera may override its own
azimuth, distance, height, aim and roll, as phones placed by hand are), gives each its lens, image size and
frame rate, its start offset and the frames it drops. Clock convention (as ``capture/sync.py``)::

    common_time = camera_time + offset_s

A camera's frame ``i`` is exposed at camera time ``i / frame_rate``, so it shows the performer at common time
``i / frame_rate + offset_s``. A dropped frame is never written: the video's timestamps skip it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from mocap_studio.calibration.camera import Camera, CameraRig, look_at
from mocap_studio.common.config import ConfigError, load_toml

RIG_PRESET_DIR = Path(str(resources.files("mocap_studio.configs") / "rigs"))

_TOP_KEYS = {"name", "description", "layout", "defaults", "cameras"}
_LAYOUT_KEYS = {"kind", "radius_m", "height_m", "start_deg", "span_deg", "look_at_m"}
_CAMERA_KEYS = {"size", "frame_rate", "focal_px", "distortion", "offset_s", "dropped_frames", "height_m", "name",
                "principal_offset_px", "azimuth_deg", "radius_m", "look_at_m", "roll_deg"}


@dataclass(frozen=True)
class StudioCamera:
    """One virtual camera: its true geometry and lens, and its clock."""

    camera: Camera
    """True intrinsics and extrinsics (world: Z up, floor at Z = 0, metres)."""
    frame_rate: float
    """Frames per second of this camera's recording."""
    offset_s: float = 0.0
    """Start offset: common_time = camera_time + offset_s."""
    dropped_frames: tuple[int, ...] = ()
    """Frame indices (on this camera's own count) that are not recorded."""

    @property
    def name(self) -> str:
        """The camera's name."""
        return self.camera.name

    def frame_schedule(self, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The frames this camera records in ``duration_s`` seconds of its own clock.

        Returns (indices (N,) int, camera_times_s (N,)): kept frame indices and their timestamps on the
        camera's clock; the performer is seen at common time ``camera_times_s + offset_s``.
        """
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        count = int(math.floor(duration_s * self.frame_rate + 1e-9))
        keep = np.setdiff1d(np.arange(count), np.asarray(self.dropped_frames, dtype=np.int64))
        return keep, keep / self.frame_rate


@dataclass(frozen=True)
class StudioRig:
    """A named set of virtual cameras, in preset order."""

    name: str
    cameras: tuple[StudioCamera, ...]
    description: str = ""
    source: str = ""
    look_at_m: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))

    @property
    def rig(self) -> CameraRig:
        """The true cameras as a :class:`CameraRig`."""
        return CameraRig(tuple(c.camera for c in self.cameras))

    @property
    def names(self) -> tuple[str, ...]:
        """Camera names in preset order."""
        return tuple(c.name for c in self.cameras)

    def __getitem__(self, name: str) -> StudioCamera:
        for c in self.cameras:
            if c.name == name:
                return c
        raise KeyError(f"rig {self.name!r} has no camera {name!r}; cameras are {list(self.names)}")

    def offsets_s(self) -> dict[str, float]:
        """Camera name -> start offset in seconds (common_time = camera_time + offset_s)."""
        return {c.name: c.offset_s for c in self.cameras}

    def scaled(self, factor: float) -> StudioRig:
        """The same rig with every image ``factor`` times the size (focal length and principal point
        scaled too): a fast stand-in for tests, seeing the same scene."""
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}")
        cams = []
        for sc in self.cameras:
            c = sc.camera
            size = (max(16, int(round(c.size[0] * factor / 2)) * 2), max(16, int(round(c.size[1] * factor / 2)) * 2))
            K = c.K.copy()
            K[0] *= size[0] / c.size[0]
            K[1] *= size[1] / c.size[1]
            cams.append(StudioCamera(c.replace(size=size, K=K), sc.frame_rate, sc.offset_s, sc.dropped_frames))
        return StudioRig(self.name, tuple(cams), self.description, self.source, self.look_at_m)

    def in_sync(self) -> StudioRig:
        """The same rig with every camera starting at the same instant (offsets 0) and dropping no frame: a take
        that reaches us already trimmed to sync, frame for frame."""
        cams = tuple(StudioCamera(sc.camera, sc.frame_rate, 0.0, ()) for sc in self.cameras)
        return StudioRig(self.name, cams, self.description, self.source, self.look_at_m)

    def with_frame_rate(self, frame_rate: float) -> StudioRig:
        """The same rig with every camera filming at ``frame_rate`` frames per second (dropped frame indices
        kept as they are)."""
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, got {frame_rate}")
        cams = tuple(StudioCamera(sc.camera, float(frame_rate), sc.offset_s, sc.dropped_frames) for sc in self.cameras)
        return StudioRig(self.name, cams, self.description, self.source, self.look_at_m)

    def horizontal_reach_m(self) -> float:
        """The largest horizontal distance of a camera from the vertical axis through the origin (metres)."""
        return float(max(np.hypot(*sc.camera.center[:2]) for sc in self.cameras))


def rig_presets() -> tuple[str, ...]:
    """Names of the rig presets in ``configs/rigs/``."""
    return tuple(sorted(p.stem for p in RIG_PRESET_DIR.glob("*.toml")))


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(allowed)}")


def _pose(index: int, count: int, layout: dict, settings: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) from the layout, overridden by the camera's own azimuth, distance, height, aim
    and roll (``roll_deg`` turns the camera about its viewing axis: x_cam towards y_cam, the picture turning
    clockwise)."""
    kind = layout.get("kind", "ring")
    start, span = float(layout.get("start_deg", 0.0)), float(layout.get("span_deg", 360.0))
    if kind == "ring":
        degrees = start + span * index / count
    elif kind == "arc":
        degrees = start + (span * index / (count - 1) if count > 1 else 0.0)
    else:
        raise ConfigError(f"{where}: layout kind must be 'ring' or 'arc', got {kind!r}")
    angle = math.radians(float(settings.get("azimuth_deg", degrees)))
    radius = float(settings.get("radius_m", layout.get("radius_m", 4.0)))
    height = float(settings.get("height_m", layout.get("height_m", 2.0)))
    target = np.asarray(settings.get("look_at_m", layout.get("look_at_m", [0.0, 0.0, 1.0])), float)
    R, t = look_at(np.array([radius * math.cos(angle), radius * math.sin(angle), height]), target)
    roll = math.radians(float(settings.get("roll_deg", 0.0)))
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        R, t = turn @ R, turn @ t
    return R, t


def _camera(index: int, count: int, layout: dict, settings: dict, where: str) -> StudioCamera:
    R, t = _pose(index, count, layout, settings, where)
    try:
        w, h = (int(v) for v in settings["size"])
        f = float(settings["focal_px"])
        fps = float(settings["frame_rate"])
        dist = np.asarray(settings.get("distortion", [0.0] * 5), float)
    except KeyError as e:
        raise ConfigError(f"{where}: camera {index + 1} has no {e.args[0]!r} (give it in [defaults] or the camera)") from None
    dx, dy = (float(v) for v in settings.get("principal_offset_px", [0.0, 0.0]))
    K = np.array([[f, 0.0, w / 2 + dx], [0.0, f, h / 2 + dy], [0.0, 0.0, 1.0]])
    name = str(settings.get("name", f"cam_{index + 1}"))
    if fps <= 0:
        raise ConfigError(f"{where}: camera {name!r} frame_rate must be positive, got {fps}")
    dropped = tuple(sorted(int(i) for i in settings.get("dropped_frames", ())))
    try:
        camera = Camera(name, (w, h), K, dist, R, t)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e
    return StudioCamera(camera, fps, float(settings.get("offset_s", 0.0)), dropped)


def load_rig_preset(name_or_path: str | Path) -> StudioRig:
    """A rig preset by name (``configs/rigs/<name>.toml``) or a rig TOML file path.

    Unknown names list the presets; unknown keys are errors naming the file.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = RIG_PRESET_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ConfigError(f"no rig preset named {str(name_or_path)!r}; presets are {list(rig_presets())}, "
                              "or give a path to a rig TOML file")
    elif not path.exists():
        raise ConfigError(f"{path}: no such rig file")
    raw = load_toml(path)
    where = str(path)
    _check_keys(raw, _TOP_KEYS, where)
    layout = dict(raw.get("layout", {}))
    _check_keys(layout, _LAYOUT_KEYS, f"{where} [layout]")
    defaults = dict(raw.get("defaults", {}))
    _check_keys(defaults, _CAMERA_KEYS - {"name"}, f"{where} [defaults]")
    entries = list(raw.get("cameras", []))
    if not entries:
        raise ConfigError(f"{where}: no [[cameras]]; list at least one camera")
    cams = []
    for i, entry in enumerate(entries):
        _check_keys(entry, _CAMERA_KEYS, f"{where} [[cameras]] #{i + 1}")
        cams.append(_camera(i, len(entries), layout, {**defaults, **entry}, where))
    names = [c.name for c in cams]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: camera names repeat: {names}")
    return StudioRig(str(raw.get("name", path.stem)), tuple(cams), str(raw.get("description", "")), where,
                     np.asarray(layout.get("look_at_m", [0.0, 0.0, 1.0]), float))
