"""Board corner observations in the flat form the calibration solvers use.

One row per (camera, view, corner): a *view* is one pose of the board, seen at the same instant by every
camera that sees it (synchronized recordings share frame indices, so the frame index names the view).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class BoardObservations:
    """Flat board observations. M rows; C cameras; V views.

    camera_names: (C,) names, in the order ``cam`` indexes. image_sizes: (C,) (width, height).
    cam, view, point: (M,) int indices into cameras, views and board corners (``Board.object_points``).
    uv: (M, 2) observed pixels. view_frames: (V,) the frame index of each view.
    """

    camera_names: tuple[str, ...]
    image_sizes: tuple[tuple[int, int], ...]
    cam: np.ndarray
    view: np.ndarray
    point: np.ndarray
    uv: np.ndarray
    view_frames: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.cam)
        for name in ("view", "point"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"BoardObservations.{name} must have {m} rows like cam, got {len(getattr(self, name))}")
        uv = np.asarray(self.uv, float)
        if uv.shape != (m, 2):
            raise ValueError(f"BoardObservations.uv must have shape ({m}, 2), got {uv.shape}")
        if len(self.image_sizes) != len(self.camera_names):
            raise ValueError("BoardObservations: one image size per camera is required")
        if m and (self.cam.max() >= len(self.camera_names) or self.view.max() >= len(self.view_frames)):
            raise ValueError("BoardObservations: camera or view index out of range")
        object.__setattr__(self, "uv", uv)
        for name in ("cam", "view", "point", "view_frames"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))

    @property
    def n_cameras(self) -> int:
        """Number of cameras."""
        return len(self.camera_names)

    @property
    def n_views(self) -> int:
        """Number of board views (distinct frames)."""
        return len(self.view_frames)

    def camera_rows(self, c: int) -> np.ndarray:
        """(M_c,) indices of the observation rows seen by camera ``c``."""
        return np.flatnonzero(self.cam == c)

    def views_of_camera(self, c: int) -> np.ndarray:
        """Sorted indices of the views in which camera ``c`` saw the board."""
        return np.unique(self.view[self.cam == c])

    def select(self, rows: np.ndarray) -> BoardObservations:
        """A subset of rows (views and cameras keep their indices)."""
        return BoardObservations(self.camera_names, self.image_sizes, self.cam[rows], self.view[rows],
                                 self.point[rows], self.uv[rows], self.view_frames)

    def for_cameras(self, names: Sequence[str]) -> BoardObservations:
        """Only the named cameras, re-indexed in the order given."""
        old = [self.camera_names.index(n) for n in names]
        remap = np.full(self.n_cameras, -1)
        remap[old] = np.arange(len(old))
        rows = np.flatnonzero(remap[self.cam] >= 0)
        return BoardObservations(tuple(names), tuple(self.image_sizes[i] for i in old), remap[self.cam[rows]],
                                 self.view[rows], self.point[rows], self.uv[rows], self.view_frames)

    def shared_view_counts(self) -> np.ndarray:
        """(C, C) number of views seen by both cameras."""
        seen = np.zeros((self.n_cameras, self.n_views), dtype=bool)
        seen[self.cam, self.view] = True
        s = seen.astype(np.int64)
        return s @ s.T


def observations_from_detections(detections: Sequence, object_points: np.ndarray) -> BoardObservations:
    """Build observations from per-camera detections (objects with ``camera``, ``image_size`` and
    ``detections`` of ``frame``, ``ids``, ``corners``), matching views across cameras by frame index."""
    object_points = np.asarray(object_points)
    names = tuple(d.camera for d in detections)
    frames = sorted({det.frame for d in detections for det in d.detections})
    frame_to_view = {f: i for i, f in enumerate(frames)}
    cam, view, point, uv = [], [], [], []
    for c, d in enumerate(detections):
        for det in d.detections:
            ids = np.asarray(det.ids, dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= len(object_points)):
                raise ValueError(
                    f"camera {d.camera!r}, frame {det.frame}: corner id {int(ids.max())} is outside the board's "
                    f"{len(object_points)} corners; is the board definition right?"
                )
            cam.append(np.full(len(ids), c))
            view.append(np.full(len(ids), frame_to_view[det.frame]))
            point.append(ids)
            uv.append(np.asarray(det.corners, float).reshape(-1, 2))
    if not cam:
        raise ValueError(f"no board detections in any camera ({', '.join(names)})")
    return BoardObservations(names, tuple(tuple(d.image_size) for d in detections), np.concatenate(cam),
                             np.concatenate(view), np.concatenate(point), np.concatenate(uv), np.array(frames))
