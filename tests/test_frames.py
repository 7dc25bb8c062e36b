"""Streaming frame reader: videos (OpenCV mp4v and PyAV H.264), image folders, and clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from mocap_studio.capture.frames import FrameSourceError, open_frames, probe


def _frame(k: int, size=(96, 64)) -> np.ndarray:
    # The frame index is written as brightness, so decoded frames can be told apart after compression.
    image = np.full((size[1], size[0], 3), 10 + 10 * k, dtype=np.uint8)
    image[:, : size[0] // 4] = 0
    return image


def _write_mp4v(path: Path, n: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 64))
    assert writer.isOpened()
    for k in range(n):
        writer.write(_frame(k))
    writer.release()
    return path


def _write_h264(path: Path, n: int, fps: int) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(_frame(k), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _brightness(image: np.ndarray) -> int:
    return round((float(image[:, 40:].mean()) - 10) / 10)


def test_mp4v_video_frames_times_and_probe(tmp_path):
    path = _write_mp4v(tmp_path / "cam_1.mp4", 20, 10.0)
    info = probe(path)
    assert (info.frame_count, info.fps, info.size, info.kind) == (20, 10.0, (96, 64), "video")
    assert info.duration_s == pytest.approx(2.0)
    frames = list(open_frames(path))
    assert [f.index for f in frames] == list(range(20))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(20) / 10.0, atol=1e-6)
    assert frames[0].image.shape == (64, 96, 3) and frames[0].image.dtype == np.uint8
    assert [_brightness(f.image) for f in frames] == list(range(20))


def test_step_and_max_frames(tmp_path):
    path = _write_mp4v(tmp_path / "cam_1.mp4", 20, 10.0)
    frames = list(open_frames(path, step=3, max_frames=4))
    assert [f.index for f in frames] == [0, 3, 6, 9]
    np.testing.assert_allclose([f.time_s for f in frames], [0.0, 0.3, 0.6, 0.9], atol=1e-6)
    assert [_brightness(f.image) for f in frames] == [0, 3, 6, 9]
    with pytest.raises(ValueError, match="step"):
        open_frames(path, step=0)


def test_pyav_h264_video(tmp_path):
    path = _write_h264(tmp_path / "cam_2.mp4", 12, 25)
    info = probe(path)
    assert info.frame_count == 12 and info.fps == pytest.approx(25.0)
    frames = list(open_frames(path))
    assert len(frames) == 12
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(12) / 25.0, atol=1e-6)
    assert [_brightness(f.image) for f in frames] == list(range(12))


def test_image_folder_natural_order(tmp_path):
    for k in (10, 2, 1, 0):
        cv2.imwrite(str(tmp_path / f"frame_{k}.png"), _frame(k))
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = list(open_frames(tmp_path))
    assert [_brightness(f.image) for f in frames] == [0, 1, 2, 10]  # frame_2 before frame_10
    assert all(math.isnan(f.time_s) for f in frames)
    timed = list(open_frames(tmp_path, fps=50.0, step=2))
    assert [f.index for f in timed] == [0, 2] and [f.time_s for f in timed] == [0.0, 0.04]
    info = probe(tmp_path)
    assert (info.kind, info.frame_count, info.size) == ("images", 4, (96, 64))


def test_corrupt_video_names_the_file(tmp_path):
    good = _write_mp4v(tmp_path / "good.mp4", 20, 10.0)
    broken = tmp_path / "broken_cam.mp4"
    broken.write_bytes(good.read_bytes()[:300])
    with pytest.raises(FrameSourceError, match="broken_cam.mp4"):
        list(open_frames(broken))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(FrameSourceError, match="garbage.mp4.*re-encode"):
        probe(garbage)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(FrameSourceError, match="no images found"):
        open_frames(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        open_frames(tmp_path / "nothing_here.mp4")
    bad = tmp_path / "imgs"
    bad.mkdir()
    (bad / "0.png").write_bytes(b"not a png")
    with pytest.raises(FrameSourceError, match="0.png"):
        list(open_frames(bad))
