"""Frame sources: a video file (decoded with PyAV), an image folder, a single image, or a live camera.

Frames are decoded one at a time and never collected, so a long recording costs the memory of one frame.
Times come from each frame's presentation timestamp (pts x time_base), not from index / fps, so variable
frame rate recordings and dropped frames keep their true times. Live cameras (:class:`CameraSource`, OpenCV:
USB index or RTSP/HTTP URL) stamp each frame with the host clock; the recorder takes any :class:`LiveSource`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import av
import cv2
import numpy as np
from mocap_studio.common.order import natural_key

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class FrameSourceError(ValueError):
    """A frame source that cannot be read: the message names the file and what to do."""


class Frame(NamedTuple):
    """One decoded frame: its index in the source (counting every frame, also skipped ones), its time in
    seconds (NaN for an image folder read without ``fps``), and the image, (H, W, 3) BGR uint8."""

    index: int
    time_s: float
    image: np.ndarray


@dataclass(frozen=True)
class SourceInfo:
    """What :func:`probe` finds without decoding the frames."""

    path: Path
    kind: str
    """"video", "images" or "image"."""
    frame_count: int
    """Number of frames (for a video: from the container, counted from packets when it does not say)."""
    fps: float
    """Average frame rate (NaN for images)."""
    size: tuple[int, int]
    """(width, height) in pixels."""
    start_s: float = math.nan
    """The video stream's first time stamp in seconds (NaN for images or when the container has none)."""

    @property
    def duration_s(self) -> float:
        """Length in seconds (NaN without a frame rate)."""
        return self.frame_count / self.fps if self.fps > 0 else math.nan


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FrameSourceError(
            f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}); "
            "put the frames of one camera in this folder, or give a video file"
        )
    return sorted(files, key=lambda p: natural_key(p.name))


def _kind(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        return "images"
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def _video_error(path: Path, e: Exception) -> FrameSourceError:
    return FrameSourceError(
        f"{path}: cannot read this video ({type(e).__name__}: {e}). The file may be truncated or not a "
        "video: copy it again from the camera, or re-encode it (ffmpeg -i in.mp4 -c:v libx264 out.mp4)"
    )


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise _video_error(path, e) from e
    if not container.streams.video:
        container.close()
        raise FrameSourceError(f"{path}: the file has no video stream (audio only?); give the camera's video")
    return container


def probe(path: str | Path) -> SourceInfo:
    """Frame count, frame rate and size of a video file, image folder or image, without decoding frames."""
    path = Path(path)
    kind = _kind(path)
    if kind != "video":
        files = _image_files(path) if kind == "images" else [path]
        first = _read_image(files[0])
        return SourceInfo(path, kind, len(files), math.nan, (first.shape[1], first.shape[0]))
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        # the nominal rate: a dropped frame lowers the average rate (frames / duration) but not this one
        rate = stream.guessed_rate or stream.base_rate or stream.average_rate
        fps = float(rate) if rate else math.nan
        count = int(stream.frames or 0)
        if count <= 0:
            # Some containers (mkv, raw streams) do not store a frame count: count packets, no decoding.
            count = sum(1 for packet in container.demux(stream) if packet.size)
        width, height = stream.codec_context.width, stream.codec_context.height
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base \
            else math.nan
    except av.FFmpegError as e:
        raise _video_error(path, e) from e
    finally:
        container.close()
    if width <= 0 or height <= 0:
        raise FrameSourceError(f"{path}: the video stream has no frame size; the file is probably damaged")
    return SourceInfo(path, kind, count, fps, (width, height), start)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameSourceError(
            f"{path}: cannot read this image (damaged or not an image); remove or replace it"
        )
    return image


def open_frames(
    path: str | Path, step: int = 1, max_frames: int | None = None, fps: float | None = None
) -> Iterator[Frame]:
    """Iterate :class:`Frame` (index, time_s, BGR image (H, W, 3) uint8) from a video, folder or image.

    step: yield every ``step``-th frame (indices 0, step, 2 step, ...); a video is still decoded in full,
    because inter-coded frames need their predecessors, but skipped frames are never converted.
    max_frames: stop after yielding this many frames. fps: frame rate of an image folder (its times are
    NaN without it); ignored for videos, whose frames carry their own timestamps.
    Image folders are read in natural file-name order (``frame_2`` before ``frame_10``).
    """
    if isinstance(step, bool) or int(step) != step or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step!r}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames!r}")
    path = Path(path)
    kind = _kind(path)
    if kind == "video":
        # Opened here, not inside the generator, so a damaged file fails at the call, not at first use.
        return _video_frames(path, _open_container(path), int(step), max_frames)
    files = _image_files(path) if kind == "images" else [path]
    return _image_frames(files, int(step), max_frames, fps)


def _image_frames(files: list[Path], step: int, max_frames: int | None, fps: float | None) -> Iterator[Frame]:
    yielded = 0
    for index in range(0, len(files), step):
        if max_frames is not None and yielded >= max_frames:
            return
        time_s = index / fps if fps else math.nan
        yield Frame(index, time_s, _read_image(files[index]))
        yielded += 1


def _video_frames(
    path: Path, container: av.container.InputContainer, step: int, max_frames: int | None
) -> Iterator[Frame]:
    try:
        stream = container.streams.video[0]
        # Frame threading decodes several frames in parallel without changing their order or content.
        stream.thread_type = "AUTO"
        # the nominal rate: a dropped frame lowers the average rate (frames / duration) but not this one
        rate = stream.guessed_rate or stream.base_rate or stream.average_rate
        yielded = 0
        index = -1
        decoded = container.decode(stream)
        while max_frames is None or yielded < max_frames:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except av.FFmpegError as e:
                raise FrameSourceError(
                    f"{path}: decoding failed after frame {index} ({type(e).__name__}: {e}); the file is "
                    "damaged there: re-copy it, or cut the recording before that frame"
                ) from e
            index += 1
            if index % step:
                continue
            if frame.pts is not None and frame.time_base is not None:
                time_s = float(frame.pts * frame.time_base)
            else:
                time_s = index / float(rate) if rate else math.nan
            yield Frame(index, time_s, frame.to_ndarray(format="bgr24"))
            yielded += 1
        if index < 0:
            raise FrameSourceError(f"{path}: the video holds no decodable frame; re-copy or re-record it")
    finally:
        container.close()


# ------------------------------------------------------------------------------------------------
# Live cameras
# ------------------------------------------------------------------------------------------------
class LiveSource(Protocol):
    """What the recorder needs from a live camera (an OpenCV device, or a stand-in in tests).

    ``read()`` blocks until the next frame and returns it with ``time_s`` = the host's monotonic clock
    (seconds, one clock shared by every camera on the machine), or None when the stream has ended.
    """

    name: str
    nominal_fps: float
    """The rate the camera says it delivers (0 when it does not say)."""

    def read(self) -> Frame | None:
        """The next frame (``time_s`` on the host's monotonic clock), or None when the stream has ended."""
        ...

    def close(self) -> None:
        """Release the camera."""
        ...


def parse_device(spec: str | int) -> int | str:
    """A camera device from the command line: ``0`` -> USB index 0; ``rtsp://...``/``http://...`` -> URL."""
    if isinstance(spec, int):
        return spec
    text = str(spec).strip()
    if text.isdigit():
        return int(text)
    if "://" in text or Path(text).exists():
        return text
    raise ValueError(f"camera device {text!r}: give a USB index (0, 1, ...) or a stream URL (rtsp://..., http://...)")


class CameraSource:
    """A live camera through OpenCV ``VideoCapture`` (USB index, RTSP/HTTP URL, or a file for testing).

    Each frame is stamped with the host clock (``time.monotonic()``) right after it is grabbed, so every
    camera on one machine shares a clock; ``index`` counts frames delivered.
    """

    def __init__(self, device: int | str, name: str = "", size: tuple[int, int] | None = None, fps: float = 0.0):
        self.device = parse_device(device)
        self.name = name or f"cam_{device}"
        self._cap = cv2.VideoCapture(self.device)
        if not self._cap.isOpened():
            raise FrameSourceError(
                f"camera {self.name}: cannot open device {self.device!r}; check that it is plugged in (USB) or "
                "that the URL plays in a media player (RTSP/HTTP), and that no other program holds it"
            )
        if size:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        reported = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.nominal_fps = fps or (reported if 0 < reported < 1000 else 0.0)
        self._index = -1

    def read(self) -> Frame | None:
        """Grab the next frame, stamped with the host's monotonic clock; None when the stream has ended."""
        if not self._cap.grab():
            return None
        host = time.monotonic()
        ok, image = self._cap.retrieve()
        if not ok or image is None:
            return None
        self._index += 1
        return Frame(self._index, host, image)

    def close(self) -> None:
        """Release the device."""
        self._cap.release()

    def __enter__(self) -> CameraSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
