"""The live path: camera frames -> per-camera 2D keypoints -> a 3D skeleton, while the cameras record.

Each camera is a :class:`~capture.frames.LiveSource` (a real camera, or :class:`ReplaySource` playing a recorded
or virtual-studio take at its real pace). :class:`TeeSource` hands every frame the recorder reads to the
preview too, so the recording is exactly what ``mocap record`` writes (the same recorder, the same files).

:class:`LivePipeline` runs one detector thread per camera (MediaPipe's pose landmarker on the newest frame; frames
that arrive while it is busy are skipped, so latency never builds up) and fuses the cameras: when every camera has
a detection at or after time ``t`` (``t`` = the newest detection of the camera that is furthest behind), each
camera's 2D keypoints are interpolated to ``t`` between its detections on either side, undistorted and
triangulated (the offline stage's robust triangulation). A frame's time stamp is its host capture time
(``time.monotonic``), the clock every camera shares, so ``latency = the time the skeleton is drawn - t``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.capture.frames import Frame, LiveSource

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Detection:
    """One camera's 2D keypoints of one frame. time_s: the frame's host time stamp; xy (J, 2) pixels (NaN: not
    seen); confidence (J,); done_s: host time the detection finished."""

    camera: str
    index: int
    time_s: float
    xy: np.ndarray
    confidence: np.ndarray
    done_s: float


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A 3D skeleton at host time ``time_s``: xyz (J, 3) metres (NaN: not triangulated), error_px (J,),
    ``made_s`` when it was triangulated."""

    time_s: float
    xyz: np.ndarray
    error_px: np.ndarray
    made_s: float


class ReplayClock:
    """The shared start of a replay: common time ``t`` plays at host time ``start_s + (t - t0)``; the clock starts
    (``start_s`` = then + ``delay_s``) when the first camera asks for a frame's moment."""

    def __init__(self, t0: float = 0.0, delay_s: float = 0.2):
        self.t0 = t0
        self.delay_s = delay_s
        self.start_s: float | None = None
        self._lock = threading.Lock()

    def host_time(self, t_common: float) -> float:
        """Host (monotonic) time at which common time ``t_common`` plays."""
        with self._lock:
            if self.start_s is None:
                self.start_s = time.monotonic() + self.delay_s
        return self.start_s + (t_common - self.t0)


class ReplaySource:
    """A recorded video played as a live camera at its real pace: ``read()`` waits until the frame's moment and
    returns it stamped with that moment on the host clock (common time = video time + ``offset_s``)."""

    def __init__(self, name: str, path: str | Path, clock: ReplayClock, offset_s: float = 0.0,
                 max_seconds: float = 0.0):
        from mocap_studio.capture.frames import open_frames, probe

        self.name = name
        self.path = Path(path)
        info = probe(self.path)
        self.nominal_fps = float(info.fps) if info.fps and info.fps > 0 else 0.0
        self.clock = clock
        self.offset_s = float(offset_s)
        self.max_seconds = max_seconds
        self._frames: Iterator[Frame] | None = open_frames(self.path)
        self.late_s: list[float] = []
        """How late each frame was handed over (decoding behind its moment), seconds."""

    def read(self) -> Frame | None:
        """The next frame at its moment (None at the end)."""
        if self._frames is None:
            return None
        frame = next(self._frames, None)
        if frame is None:
            return None
        t_common = frame.time_s + self.offset_s
        if self.max_seconds and t_common - self.clock.t0 > self.max_seconds:
            return None
        due = self.clock.host_time(t_common)
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.late_s.append(max(0.0, time.monotonic() - due))
        return Frame(frame.index, due, frame.image)

    def close(self) -> None:
        """Stop reading."""
        frames, self._frames = self._frames, None
        if frames is not None and hasattr(frames, "close"):
            frames.close()


class LatestFrame:
    """A one-frame mailbox: the producer overwrites, the consumer takes the newest (older ones are skipped)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.offered = 0
        self.taken = 0

    def put(self, frame: Frame) -> None:
        """Offer a frame (replacing one not taken yet)."""
        with self._cond:
            self._frame = frame
            self.offered += 1
            self._cond.notify()

    def close(self) -> None:
        """No more frames: a waiting consumer gets None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not taken yet; waits up to ``timeout``; None when closed (or on timeout)."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self.taken += 1
            return frame

    @property
    def closed(self) -> bool:
        """True once the producer has ended."""
        return self._closed


class TeeSource:
    """A live source that gives every frame it reads to the recorder (its caller) and to ``mailbox``."""

    def __init__(self, inner: LiveSource, mailbox: LatestFrame):
        self.inner = inner
        self.name = inner.name
        self.nominal_fps = inner.nominal_fps
        self.mailbox = mailbox

    def read(self) -> Frame | None:
        """The inner source's next frame, also posted to the mailbox."""
        frame = self.inner.read()
        if frame is None:
            self.mailbox.close()
        else:
            self.mailbox.put(frame)
        return frame

    def close(self) -> None:
        """Close the inner source and the mailbox."""
        self.mailbox.close()
        self.inner.close()


def interpolate_detection(history: list[Detection], t: float) -> tuple[np.ndarray, np.ndarray] | None:
    """A camera's 2D keypoints at time ``t`` (J, 2) and confidences (J,): linear between the detections either side
    (the lower confidence of the two), the detection itself at its own time; None if ``t`` is outside ``history``
    (time-ordered)."""
    if not history or t < history[0].time_s - 1e-9 or t > history[-1].time_s + 1e-9:
        return None
    for a, b in zip(history[:-1], history[1:], strict=False):
        if a.time_s - 1e-9 <= t <= b.time_s + 1e-9:
            span = b.time_s - a.time_s
            w = 0.0 if span <= 0 else (t - a.time_s) / span
            if w <= 1e-6:
                return a.xy, a.confidence
            if w >= 1 - 1e-6:
                return b.xy, b.confidence
            return (1 - w) * a.xy + w * b.xy, np.minimum(a.confidence, b.confidence)
    last = history[-1]
    return last.xy, last.confidence


@dataclass
class CameraStats:
    """One camera's live figures."""

    frames: int = 0
    """Frames the camera delivered."""
    detections: int = 0
    """Frames detected (the others were skipped because the detector was busy)."""
    first_s: float = float("nan")
    last_s: float = float("nan")
    detect_s: list[float] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Detections per second."""
        span = self.last_s - self.first_s
        return (self.detections - 1) / span if self.detections > 1 and span > 0 else 0.0


class LivePipeline:
    """Detect every camera's newest frame and triangulate the cameras into 3D skeletons, as frames arrive.

    rig: the calibration (cameras matched by name). mailboxes: camera name -> :class:`LatestFrame`.
    on_detection(Detection, Frame) and on_skeleton(Skeleton) are called from the detector threads (keep them
    short); the skeleton's latency is measured after ``on_skeleton`` returns (the time it took to draw included).
    """

    def __init__(self, rig: CameraRig, mailboxes: dict[str, LatestFrame], *, num_poses: int = 1,
                 on_detection: Callable[[Detection, Frame], None] | None = None,
                 on_skeleton: Callable[[Skeleton], None] | None = None, history: int = 8, detect_width: int = 640):
        from mocap_studio.reconstruction.triangulate import TriangulationConfig

        missing = [c for c in mailboxes if c not in rig.names]
        if missing:
            raise ValueError(f"camera(s) {missing} are not in the calibration (it has {list(rig.names)}); "
                             f"name the cameras as calibration.toml does")
        self.rig = rig
        self.cameras = list(mailboxes)
        self.mailboxes = mailboxes
        self.num_poses = num_poses
        self.detect_width = detect_width
        """Frames wider than this are scaled down to it for detection (the landmarker works at 256x256 anyway;
        converting a 1280x720 frame cost more than detecting it); keypoints are scaled back to full pixels."""
        self.on_detection = on_detection
        self.on_skeleton = on_skeleton
        self.config = TriangulationConfig()
        cams = [rig[c] for c in self.cameras]
        self._extrinsics = np.stack([np.hstack([np.asarray(c.R, float), np.asarray(c.t, float).reshape(3, 1)])
                                     for c in cams])
        self._focal = np.array([float(np.sqrt(np.asarray(c.K)[0, 0] * np.asarray(c.K)[1, 1])) for c in cams])
        self._history: dict[str, deque[Detection]] = {c: deque(maxlen=history) for c in self.cameras}
        self._lock = threading.Lock()
        self._last_t = -np.inf
        self.stats = {c: CameraStats() for c in self.cameras}
        self.skeletons: list[Skeleton] = []
        self.latencies_s: list[float] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.errors: list[str] = []

    def start(self) -> None:
        """Start one detector thread per camera."""
        for c in self.cameras:
            th = threading.Thread(target=self._detect_loop, args=(c,), name=f"live-detect-{c}", daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the detectors to stop and wait for them."""
        self._stop.set()
        for th in self._threads:
            th.join(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every camera's stream has ended and its last frame is processed."""
        end = None if timeout is None else time.monotonic() + timeout
        for th in self._threads:
            th.join(None if end is None else max(0.0, end - time.monotonic()))

    def _detect_loop(self, camera: str) -> None:
        from mocap_studio.reconstruction.detect2d import DetectionConfig, PoseLandmarker

        box = self.mailboxes[camera]
        st = self.stats[camera]
        try:
            # no hand landmarker: it costs about 30 ms a frame, and at the live view's detect width the hands are a
            # few pixels across
            with PoseLandmarker(DetectionConfig(num_poses=self.num_poses, masks=False, hands=False),
                                video=False) as marker:
                while not self._stop.is_set():
                    frame = box.take(timeout=0.5)
                    if frame is None:
                        if box.closed:
                            break
                        continue
                    t_start = time.monotonic()
                    xy, conf = marker.detect(self._scaled(frame.image))
                    xy = xy * (frame.image.shape[1] / min(frame.image.shape[1], self.detect_width or frame.image.shape[1]))
                    det = Detection(camera, frame.index, frame.time_s, xy[0], conf[0], time.monotonic())
                    st.detect_s.append(det.done_s - t_start)
                    st.detections += 1
                    if st.detections == 1:
                        st.first_s = frame.time_s
                    st.last_s = frame.time_s
                    if self.on_detection is not None:
                        self.on_detection(det, frame)
                    self._fuse(det)
        except Exception as e:  # noqa: BLE001 - a detector failure stops that camera's preview, not the recording
            msg = f"camera {camera}: live detection stopped: {type(e).__name__}: {e}"
            log.error(msg)
            self.errors.append(msg)
        finally:
            st.frames = box.offered

    def _scaled(self, image: np.ndarray) -> np.ndarray:
        import cv2

        w = image.shape[1]
        if not self.detect_width or w <= self.detect_width:
            return image
        h = round(image.shape[0] * self.detect_width / w)
        return cv2.resize(image, (self.detect_width, h), interpolation=cv2.INTER_AREA)

    def _fuse(self, det: Detection) -> None:
        from mocap_studio.reconstruction.triangulate import triangulate_normalized

        with self._lock:
            self._history[det.camera].append(det)
            if any(not h for h in self._history.values()):
                return
            t = min(h[-1].time_s for h in self._history.values())
            if t <= self._last_t:
                return
            views = [interpolate_detection(list(self._history[c]), t) for c in self.cameras]
            if any(v is None for v in views):
                return
            self._last_t = t
        xy = np.stack([v[0] for v in views])
        conf = np.stack([v[1] for v in views])
        norm = np.stack([self.rig[c].undistort_points(xy[i]) for i, c in enumerate(self.cameras)])
        X, _, residual = triangulate_normalized(self._extrinsics, self._focal, norm, conf, self.config)
        seen = np.isfinite(residual)
        err = np.where(seen.any(axis=0), np.where(seen, residual, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1),
                       np.nan)
        sk = Skeleton(t, X, err, time.monotonic())
        if self.on_skeleton is not None:
            self.on_skeleton(sk)
        with self._lock:
            self.skeletons.append(sk)
            self.latencies_s.append(time.monotonic() - t)

    def figures(self) -> dict:
        """Frame rates, latency and counts, for the report and the screen."""
        lat = np.array(self.latencies_s) * 1000.0
        cams = {c: {"frames": self.mailboxes[c].offered, "detections": s.detections, "fps": round(s.fps, 2),
                    "detect_ms_median": round(float(np.median(s.detect_s)) * 1000, 1) if s.detect_s else None}
                for c, s in self.stats.items()}
        return {"cameras": cams, "skeletons": len(self.skeletons),
                "latency_ms": {"median": round(float(np.median(lat)), 1), "p90": round(float(np.percentile(lat, 90)), 1),
                               "max": round(float(lat.max()), 1)} if len(lat) else None,
                "errors": list(self.errors)}
