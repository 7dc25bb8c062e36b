"""The one H.264 writer: mp4 files for recordings, the virtual studio and the report's overlay videos.

Frames carry their own time stamps (seconds; strictly increasing presentation times, so a dropped frame
leaves a gap rather than shifting later frames). The file is written under a hidden temporary name beside
the target and renamed over it only when closed with ``keep=True``: a reader never sees half a file, and an
interrupted writer leaves the previous file (if any) untouched.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

TIME_BASE = Fraction(1, 90000)
"""Presentation time unit of every video we write (the MPEG 90 kHz clock)."""


class VideoWriter:
    """H.264 (yuv420p) mp4 at nominal ``frame_rate``; the size comes from the first frame (an odd width or
    height loses its last column or row: 4:2:0 needs even sizes)."""

    def __init__(self, path: str | os.PathLike, frame_rate: float, crf: int = 18, preset: str = "veryfast"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.writing{self.path.suffix}")
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        self.frame_rate, self.crf, self.preset = float(frame_rate), int(crf), preset
        self.stream: av.VideoStream | None = None
        self.last_pts = -1
        self.frames = 0

    def write(self, image_bgr: np.ndarray, time_s: float) -> None:
        """Encode one (H, W, 3) BGR uint8 frame at ``time_s`` seconds (opens the stream at the first frame's size)."""
        if self.stream is None:
            h, w = image_bgr.shape[:2]
            self.stream = self.container.add_stream("libx264", rate=Fraction(round(self.frame_rate * 1000), 1000))
            self.stream.width, self.stream.height = w - w % 2, h - h % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.codec_context.time_base = TIME_BASE
            self.stream.options = {"crf": str(self.crf), "preset": self.preset}
        h, w = self.stream.height, self.stream.width
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_bgr[:h, :w]), format="bgr24")
        pts = max(int(round(time_s / TIME_BASE)), self.last_pts + 1)
        frame.pts, frame.time_base, self.last_pts = pts, TIME_BASE, pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self, keep: bool = True) -> Path | None:
        """Flush and close; with ``keep`` (and at least one frame) move the file into place and return its path,
        else remove the temporary file."""
        try:
            if keep and self.stream is not None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()
        if keep and self.stream is not None:
            os.replace(self.tmp, self.path)
            return self.path
        self.tmp.unlink(missing_ok=True)
        return None


__all__ = ["TIME_BASE", "VideoWriter"]
