"""TRC (Track Row Column) marker files, as OpenSim reads them, from 3D keypoints.

Layout (tab-separated, OpenSim's ``TRCFileAdapter`` and the Motion Analysis original)::

    PathFileType  4  (X/Y/Z)  <file name>  <axes note>
    DataRate  CameraRate  NumFrames  NumMarkers  Units  OrigDataRate  OrigDataStartFrame  OrigNumFrames
    60.00     60.00       <T>        <J>         m      60.00         1                   <T>
    Frame#  Time  <name 1>\\t\\t\\t<name 2>\\t\\t\\t...
                  X1  Y1  Z1  X2  Y2  Z2  ...
    <blank line>
    1  0.000000  x  y  z  ...

Missing markers are empty fields (OpenSim reads them as NaN). TRC has no axis field: the axes are named in
the free text after the file name on the first line (OpenSim ignores it).

Axes: our world is Z up, the performer facing -Y (DESIGN.md). OpenSim models stand Y up facing +X with
+Z to their right, so ``axes="opensim"`` (the default) writes ``(-y, z, -x)``: a proper rotation, so
the subject faces +X in OpenSim. ``axes="zup"`` keeps the world axes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import atomic_path
from mocap_studio.reconstruction.keypoints import Keypoints3D

log = logging.getLogger(__name__)

WORLD_TO_OPENSIM = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
"""Maps our world (Z up, subject facing -Y) to OpenSim's axes (Y up, subject facing +X, +Z to the right)."""
AXES = {"opensim": WORLD_TO_OPENSIM, "zup": np.eye(3)}
AXES_NOTE = {
    "opensim": "axes: Y up, X forward, Z right (OpenSim)",
    "zup": "axes: Z up, -Y forward (capture world)",
}
UNITS = {"m": 1.0, "mm": 1000.0, "cm": 100.0}


class TrcError(ValueError):
    """A TRC file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class TrcData:
    """A TRC file's contents: positions (T, J, 3) in the file's units and axes, NaN where missing."""

    marker_names: tuple[str, ...]
    positions: np.ndarray
    frame_numbers: np.ndarray
    """(T,) int, as written (1-based)."""
    times_s: np.ndarray
    """(T,) seconds."""
    data_rate: float
    units: str
    header: dict[str, str]
    """Line 2 keys -> line 3 values, as strings."""
    first_line: str


def _check_points(xyz: np.ndarray, names: tuple[str, ...] | list[str]) -> np.ndarray:
    arr = np.asarray(xyz, dtype=float)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"xyz must have shape (T, J, 3), got {arr.shape}")
    if arr.shape[1] != len(names):
        raise ValueError(f"{len(names)} marker names for {arr.shape[1]} markers on axis 1 of xyz")
    if len(set(names)) != len(names):
        raise ValueError(f"marker names repeat: {sorted({n for n in names if list(names).count(n) > 1})}")
    bad = [n for n in names if not n or any(c in n for c in "\t\r\n")]
    if bad:
        raise ValueError(f"marker names must be non-empty without tabs or line breaks: {bad}")
    return arr


def frame_times_s(num_frames: int, frame_rate: float, frame_times: np.ndarray | None = None) -> np.ndarray:
    """(T,) seconds: ``frame_times`` when given (checked), else ``arange(T) / frame_rate``."""
    if not (np.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    if frame_times is None:
        return np.arange(num_frames) / frame_rate
    times = np.asarray(frame_times, dtype=float).reshape(-1)
    if times.shape != (num_frames,):
        raise ValueError(f"frame_times must have shape ({num_frames},), got {times.shape}")
    return times


def write_trc(
    path: str | os.PathLike,
    xyz_m: np.ndarray,
    marker_names: tuple[str, ...] | list[str],
    frame_rate: float,
    frame_times: np.ndarray | None = None,
    axes: str = "opensim",
    units: str = "m",
    decimals: int | None = None,
) -> Path:
    """Write markers ``xyz_m`` (T, J, 3), metres in the world frame (Z up), NaN where missing.

    ``frame_times`` (T,) seconds for the Time column (default ``frame / frame_rate``); ``axes`` 'opensim'
    (Y up) or 'zup'; ``units`` 'm', 'mm' or 'cm'; ``decimals`` defaults to micrometre resolution. The file
    appears complete or not at all.
    """
    names = tuple(str(n) for n in marker_names)
    xyz = _check_points(xyz_m, names)
    if axes not in AXES:
        raise ValueError(f"axes must be one of {list(AXES)}, got {axes!r}")
    if units not in UNITS:
        raise ValueError(f"units must be one of {list(UNITS)}, got {units!r}")
    n_frames, n_markers = xyz.shape[:2]
    times = frame_times_s(n_frames, frame_rate, frame_times)
    if np.isinf(xyz).any():
        raise ValueError(f"{path}: xyz holds infinite values; use NaN for missing markers")
    if decimals is None:
        decimals = {"m": 6, "cm": 4, "mm": 3}[units]
    pos = UNITS[units] * xyz @ AXES[axes].T
    path = Path(path)
    rate = f"{frame_rate:.6g}"
    lines = [
        f"PathFileType\t4\t(X/Y/Z)\t{path.name}\t{AXES_NOTE[axes]}, units: {units}",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        f"{rate}\t{rate}\t{n_frames}\t{n_markers}\t{units}\t{rate}\t1\t{n_frames}",
        "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t",
        "\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, n_markers + 1)),
        "",
    ]
    fmt = f"%.{decimals}f"
    flat = pos.reshape(n_frames, 3 * n_markers)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")
        for t in range(n_frames):
            cells = ["" if np.isnan(v) else fmt % v for v in flat[t]]
            fh.write(f"{t + 1}\t{times[t]:.6f}\t" + "\t".join(cells) + "\n")
    log.debug("wrote %s (%d frames, %d markers, %s)", path, n_frames, n_markers, axes)
    return path


def write_trc_keypoints(
    path: str | os.PathLike,
    keypoints: Keypoints3D,
    frame_rate: float | None = None,
    axes: str = "opensim",
    units: str = "m",
) -> Path:
    """Write a :class:`Keypoints3D` (marker names = its skeleton's joint names). ``frame_rate`` defaults to
    the median rate of ``keypoints.frame_times`` (which must then be seconds)."""
    rate = frame_rate if frame_rate is not None else keypoints_frame_rate(keypoints)
    times = keypoints.frame_times - keypoints.frame_times[0] if frame_rate is None else None
    return write_trc(path, keypoints.xyz, keypoints.format.joints, rate, times, axes=axes, units=units)


def keypoints_frame_rate(keypoints: Keypoints3D) -> float:
    """Frames per second from ``frame_times`` (seconds); ValueError when it cannot tell."""
    times = keypoints.frame_times
    if times.size < 2:
        raise ValueError("one frame: give the frame rate explicitly")
    step = float(np.median(np.diff(times)))
    if not step > 0:
        raise ValueError("frame_times do not increase; give the frame rate explicitly")
    return 1.0 / step


def read_trc(path: str | os.PathLike) -> TrcData:
    """Read a TRC file (ours or another tool's): positions in the file's own units and axes."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise TrcError(f"{path}: cannot read ({e})") from e
    if len(text) < 5 or not text[0].startswith("PathFileType"):
        raise TrcError(f"{path}: not a TRC file (line 1 must start with 'PathFileType')")
    keys, values = text[1].split("\t"), text[2].split("\t")
    header = {k.strip(): v.strip() for k, v in zip(keys, values, strict=False)}
    try:
        n_markers = int(header["NumMarkers"])
        rate = float(header["DataRate"])
    except (KeyError, ValueError) as e:
        raise TrcError(f"{path}: line 3 lacks a readable NumMarkers/DataRate ({e})") from e
    names = tuple(n.strip() for n in text[3].split("\t")[2:] if n.strip())
    if len(names) != n_markers:
        raise TrcError(f"{path}: line 4 names {len(names)} markers, NumMarkers says {n_markers}")
    rows = []
    for i, line in enumerate(text[5:], start=6):
        if not line.strip():
            continue
        cells = line.rstrip("\n").split("\t")
        cells += [""] * (2 + 3 * n_markers - len(cells))
        try:
            rows.append([float(c) if c.strip() else np.nan for c in cells[: 2 + 3 * n_markers]])
        except ValueError as e:
            raise TrcError(f"{path}: line {i}: {e}") from e
    data = np.array(rows, dtype=float).reshape(-1, 2 + 3 * n_markers)
    return TrcData(
        marker_names=names,
        positions=data[:, 2:].reshape(-1, n_markers, 3),
        frame_numbers=data[:, 0].astype(int),
        times_s=data[:, 1],
        data_rate=rate,
        units=header.get("Units", ""),
        header=header,
        first_line=text[0],
    )
