"""A camera that drops frames: its nominal rate stays right and detection rows follow frame time stamps,
so frames after a drop are not shifted one frame early (which would misalign fast motion across cameras)."""

from fractions import Fraction

import av
import numpy as np
from mocap_studio.capture.frames import open_frames, probe
from mocap_studio.reconstruction.detect2d import ChunkResult, DetectionConfig, detect_sources


def _video_with_drops(path, n: int, fps: int, dropped: set[int]):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for k in range(n):
            if k in dropped:
                continue
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * k, np.uint8), format="bgr24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class _StampExecutor:
    """Stands in for the landmarker: each frame's 'keypoint' x is its true frame number (from pixel value)."""

    def map(self, fn, jobs):
        for job in jobs:
            times, xs = [], []
            for frame in open_frames(job.source, max_frames=job.stop):
                if job.start <= frame.index < job.stop:
                    times.append(frame.time_s)
                    xs.append(np.full((1, 33, 2), round(float(frame.image[20:28, 28:36].mean()) / 8)))
            xy = np.stack(xs)
            yield ChunkResult(job.camera, job.start, xy, np.ones(xy.shape[:3]), np.array(times), 0.0)


def test_dropped_frames_leave_missing_rows(tmp_path):
    dropped = {7, 20}
    path = _video_with_drops(tmp_path / "cam_1.mp4", 30, 30, dropped)
    info = probe(path)
    assert info.frame_count == 28
    assert abs(info.fps - 30.0) < 1e-6  # the nominal rate, not frames / duration
    det = detect_sources({"cam_1": path}, DetectionConfig(chunk_frames=10), executor=_StampExecutor())
    x = det.xy[0, :, 0, 0, 0]
    missing = np.flatnonzero(np.isnan(x))
    assert set(missing.tolist()) == dropped
    kept = np.flatnonzero(np.isfinite(x))
    np.testing.assert_allclose(x[kept], kept)  # row k holds true frame k
