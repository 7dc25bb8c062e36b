"""The take drawn over its own video: the 3D skeleton and the fitted body mesh projected through each
calibrated camera (its real lens model) onto that camera's frames.

Each camera frame is matched to the 3D result by time: a frame at camera time ``t`` shows the performer at
common time ``t + offset_s`` (sync.json's convention), where the keypoints are interpolated between their
frames and the body is taken at its nearest frame. Frames outside the reconstructed span are left bare.

The mesh is ray-cast per pixel through the camera's lens (the virtual studio's renderer, open3d's CPU
``RaycastingScene``), so it is correctly hidden behind itself; it is blended half-transparently over the
frame. Without open3d a wireframe of the mesh is drawn instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from mocap_studio.calibration.camera import Camera
from mocap_studio.capture.frames import open_frames
from mocap_studio.capture.sync import interpolate_gaps
from mocap_studio.capture.video_writer import VideoWriter

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
"""progress(label, done, total)."""

MESH_BGR = (40, 215, 255)
"""Colour of the overlaid body (yellow), before shading; its outline is drawn in the same colour."""
LEFT_BGR, RIGHT_BGR, CENTRE_BGR = (255, 160, 40), (40, 60, 240), (80, 230, 80)
"""Skeleton colours: the performer's left side blue, right side red, the middle green."""


@dataclass
class BodyFrames:
    """The fitted body, evaluated frame by frame on demand (in chunks, a bounded number kept).

    model: a BodyModel (``evaluate(shape, pose_rotvec, trans)``, ``faces``); shape (S,); pose_rotvec
    (T, J, 3); trans (T, 3); frame_times (T,) seconds on the common clock.
    """

    model: object
    shape: np.ndarray
    pose_rotvec: np.ndarray
    trans: np.ndarray
    frame_times: np.ndarray
    chunk: int = 32
    keep: int = 256
    _cache: dict[int, np.ndarray] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # the cameras' overlays are drawn side by side

    @property
    def faces(self) -> np.ndarray:
        """Triangles (F, 3) of the body mesh."""
        return np.asarray(self.model.faces)  # type: ignore[attr-defined]

    def frame_at(self, time_s: float) -> int | None:
        """The body frame nearest ``time_s`` if within one frame period of it, else None."""
        times = self.frame_times
        if len(times) == 0:
            return None
        i = int(np.clip(np.searchsorted(times, time_s), 1, len(times) - 1)) if len(times) > 1 else 0
        if len(times) > 1 and abs(times[i - 1] - time_s) <= abs(times[i] - time_s):
            i -= 1
        period = float(np.median(np.diff(times))) if len(times) > 1 else np.inf
        return i if abs(times[i] - time_s) <= period else None

    def vertices(self, frame: int) -> np.ndarray:
        """(V, 3) mesh vertices in metres at body frame ``frame`` (safe from several threads)."""
        with self._lock:
            if frame not in self._cache:
                stop = min(frame + self.chunk, len(self.frame_times))
                out = self.model.evaluate(self.shape, self.pose_rotvec[frame:stop], self.trans[frame:stop])  # type: ignore[attr-defined]
                for k, v in enumerate(np.asarray(out.vertices, np.float32)):
                    self._cache[frame + k] = v
                while len(self._cache) > self.keep:
                    self._cache.pop(next(iter(self._cache)))
            return self._cache[frame]


def interpolate_keypoints(xyz: np.ndarray, frame_times: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Keypoints xyz (T, J, 3) at frame_times (T,) linearly interpolated at times_s (N,) -> (N, J, 3), by
    :func:`capture.sync.interpolate_gaps` (1 ns of slack at the ends).

    NaN outside the frames' span and where either neighbouring frame lacks the joint.
    """
    xyz = np.asarray(xyz, float)
    frame_times = np.asarray(frame_times, float)
    if xyz.ndim != 3 or xyz.shape[0] != len(frame_times) or xyz.shape[2] != 3:
        raise ValueError(f"xyz must be (T, J, 3) with T = len(frame_times) = {len(frame_times)}, got {xyz.shape}")
    return interpolate_gaps(frame_times, xyz, np.atleast_1d(np.asarray(times_s, float)), tolerance_s=1e-9)


def scaled_camera(camera: Camera, longest: int) -> Camera:
    """``camera`` with its image resized so that its longer side is ``longest`` pixels (even sizes; focal and
    centre scaled): a portrait phone's 1080x1920 becomes 360x640, as a landscape 1920x1080 becomes 640x360."""
    w, h = camera.size
    if longest >= max(w, h):
        return camera
    f = longest / max(w, h)
    size = (max(16, int(round(w * f / 2)) * 2), max(16, int(round(h * f / 2)) * 2))
    K = camera.K.copy()
    K[0] *= size[0] / w
    K[1] *= size[1] / h
    return camera.replace(size=size, K=K)


class MeshPainter:
    """Draws a body mesh over images of one camera: shaded and half transparent, or as a wireframe."""

    def __init__(self, camera: Camera, faces: np.ndarray, style: str = "shaded", alpha: float = 0.5):
        if style not in ("shaded", "wireframe"):
            raise ValueError(f"mesh style must be 'shaded' or 'wireframe', got {style!r}")
        self.camera = camera
        self.faces = np.asarray(faces, np.int64)
        self.alpha = float(alpha)
        self.style = style
        self._renderer = None
        if style == "shaded":
            try:
                from mocap_studio.studio.render import BodyRenderer

                colours = np.tile(np.array(MESH_BGR[::-1], np.float32) / 255, (int(self.faces.max()) + 1, 1))
                self._renderer = BodyRenderer(camera, self.faces, colours)
            except ImportError as e:
                log.warning("no shaded mesh overlay (%s); drawing a wireframe instead", e)
                self.style = "wireframe"
        if self.style == "wireframe":
            # every third face's outline is enough to read the shape and keeps drawing fast
            self._edges = self.faces[::3]

    def paint(self, image: np.ndarray, vertices: np.ndarray) -> np.ndarray:
        """image (H, W, 3) uint8 BGR of this camera's size, with the mesh at vertices (V, 3) drawn over it."""
        if self._renderer is not None:
            render, mask = self._renderer.render(vertices)
            if mask.any():
                blend = image[mask].astype(np.float32) * (1 - self.alpha) + render[mask] * self.alpha
                image[mask] = np.clip(blend, 0, 255).astype(np.uint8)
                # the outline shows how well the body fits the performer even where the colours are alike
                contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(image, contours, -1, MESH_BGR, 1, cv2.LINE_AA)
            return image
        uv = self.camera.project(np.asarray(vertices, float))
        tri = uv[self._edges]
        ok = np.isfinite(tri).all(axis=(1, 2))
        polys = [np.round(t).astype(np.int32) for t in tri[ok]]
        cv2.polylines(image, polys, True, MESH_BGR, 1, cv2.LINE_AA)
        return image


def _side_colour(name_a: str, name_b: str) -> tuple[int, int, int]:
    if "left" in name_a and "left" in name_b:
        return LEFT_BGR
    if "right" in name_a and "right" in name_b:
        return RIGHT_BGR
    return CENTRE_BGR


def draw_skeleton(image: np.ndarray, uv: np.ndarray, joints: tuple[str, ...],
                  bones: Iterable[tuple[int, int]]) -> np.ndarray:
    """Draw bones and joints at pixels uv (J, 2) (NaN: not drawn) over image (H, W, 3) uint8 BGR."""
    h, w = image.shape[:2]
    thick = max(1, int(round(min(h, w) / 240)))
    ok = np.isfinite(uv).all(-1) & (np.abs(uv) < 4 * max(h, w)).all(-1)
    for a, b in bones:
        if ok[a] and ok[b]:
            pa, pb = tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int))
            cv2.line(image, pa, pb, _side_colour(joints[a], joints[b]), thick, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        cv2.circle(image, tuple(np.round(uv[j]).astype(int)), thick + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return image


@dataclass(frozen=True)
class OverlaySettings:
    """How overlays are drawn (from :class:`mocap.report.ReportConfig`)."""

    max_width: int = 640
    mesh_style: str = "shaded"
    mesh_alpha: float = 0.5
    crf: int = 23


def overlay_camera(
    camera: Camera,
    source: Path,
    offset_s: float,
    keypoints: tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[tuple[int, int], ...]] | None,
    body: BodyFrames | None,
    settings: OverlaySettings,
    video_path: Path | None,
    strip_times_s: np.ndarray,
    source_fps: float | None = None,
    progress: ProgressFn | None = None,
    total_frames: int = 0,
) -> tuple[dict[float, np.ndarray], np.ndarray]:
    """Draw one camera's take: write ``video_path`` (when given); return the strip frames and the
    camera-clock times (N,) of every frame read.

    keypoints: (xyz (T, J, 3), frame_times (T,) common clock, joint names, bones) or None; body: the
    fitted body or None; strip_times_s: (K,) common times whose nearest frame of this camera is returned
    (time -> image (H, W, 3) BGR, drawn). A camera frame at time t shows common time ``t + offset_s``.
    """
    out_cam = scaled_camera(camera, settings.max_width)
    factor = np.array(out_cam.size, float) / np.array(camera.size, float)
    painter = MeshPainter(out_cam, body.faces, settings.mesh_style, settings.mesh_alpha) if body is not None else None

    def draw(image: np.ndarray, t_common: float) -> np.ndarray:
        if tuple(out_cam.size) != (image.shape[1], image.shape[0]):
            image = cv2.resize(image, out_cam.size, interpolation=cv2.INTER_AREA)
        if body is not None and painter is not None:
            b = body.frame_at(t_common)
            if b is not None:
                image = painter.paint(image, body.vertices(b))
        if keypoints is not None:
            xyz, times, joints, bones = keypoints
            points = interpolate_keypoints(xyz, times, np.array([t_common]))[0]
            draw_skeleton(image, camera.project(points) * factor, joints, bones)
        return image

    frames = open_frames(source, fps=source_fps)
    # each strip instant takes the frame nearest to it; the raw frame is kept and drawn once at the end
    wanted = np.asarray(strip_times_s, float)
    strip: dict[float, tuple[float, float, np.ndarray]] = {}
    writer: VideoWriter | None = None
    ok = False
    rate = source_fps or 30.0
    seen: list[float] = []
    try:
        for k, frame in enumerate(frames):
            t_cam = float(frame.time_s if np.isfinite(frame.time_s) else frame.index / rate)
            seen.append(t_cam)
            t_common = t_cam + offset_s
            for t_wanted in wanted:
                d = abs(float(t_wanted) - t_common)
                if d < strip.get(float(t_wanted), (np.inf,))[0]:
                    strip[float(t_wanted)] = (d, t_common, frame.image)
            if video_path is not None:
                image = draw(frame.image.copy(), t_common)
                if writer is None:
                    writer = VideoWriter(video_path, rate if source_fps else _fps_of(source), settings.crf)
                writer.write(image, t_cam)
            if progress:
                progress(f"overlay {camera.name}", k + 1, total_frames)
        ok = True
    finally:
        if writer is not None:
            writer.close(keep=ok)
    return {t: draw(img.copy(), tc) for t, (_, tc, img) in strip.items()}, np.asarray(seen)


def _fps_of(source: Path) -> float:
    from mocap_studio.capture.frames import probe

    fps = probe(source).fps
    return float(fps) if np.isfinite(fps) and fps > 0 else 30.0
