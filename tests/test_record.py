"""The recorder with a stand-in camera device (frames and host timestamps we control): the recording logic
is the real one. Checks playable H.264 files, timestamps, dropped-frame detection and a clean Ctrl-C stop."""

from __future__ import annotations

import _thread
import signal
import threading
import time

import numpy as np
import pytest
from mocap_studio.capture.frames import Frame, open_frames, parse_device, probe
from mocap_studio.capture.record import RecordConfig, detect_drops, read_timestamps, record


class FakeCamera:
    """Stands in for the device only: frames whose brightness encodes their index, at given host times."""

    def __init__(
        self, name: str, times: np.ndarray | None, fps: float, size=(64, 48), sleep_s: float = 0.0, close_s: float = 0.0
    ):
        self.name, self.nominal_fps, self.size = name, fps, size
        self.times, self.sleep_s, self.close_s = times, sleep_s, close_s
        self.index = -1
        self.closed = False

    def read(self) -> Frame | None:
        self.index += 1
        if self.times is not None and self.index >= len(self.times):
            return None
        if self.sleep_s:
            time.sleep(self.sleep_s)
        t = self.times[self.index] if self.times is not None else time.monotonic()
        image = np.full((self.size[1], self.size[0], 3), (20 + 3 * self.index) % 230, np.uint8)
        return Frame(self.index, float(t), image)

    def close(self) -> None:
        time.sleep(self.close_s)  # a device that takes its time to release
        self.closed = True


def _paths(tmp_path, names):
    videos = {c: tmp_path / "videos" / f"{c}.mp4" for c in names}
    stamps = {c: tmp_path / "videos" / f"{c}.timestamps.csv" for c in names}
    return videos, stamps


def test_detect_drops():
    t = np.arange(30) / 30.0
    t = np.delete(t, [10, 11, 20])  # three frames lost in two gaps
    count, gaps = detect_drops(100.0 + t, 30.0)
    assert count == 3 and [g[0] for g in gaps] == [10, 18]
    assert detect_drops(t[:1], 30.0) == (0, [])


def test_record_two_cameras_different_rates_and_drops(tmp_path):
    rng = np.random.default_rng(0)
    t60 = 50.0 + np.arange(60) / 60.0 + rng.normal(0, 0.0005, 60)
    t30 = 50.013 + np.delete(np.arange(33), [7, 8, 9, 25]) / 30.0  # 4 frames dropped
    cams = {"cam_1": FakeCamera("cam_1", t60, 60.0, (64, 48)), "cam_2": FakeCamera("cam_2", t30, 30.0, (81, 59))}
    videos, stamps = _paths(tmp_path, cams)
    stats, interrupted = record(cams, videos, stamps, RecordConfig())
    assert not interrupted and all(c.closed for c in cams.values())
    assert stats["cam_1"].frames == 60 and stats["cam_1"].dropped_frames == 0
    assert stats["cam_2"].frames == 29 and stats["cam_2"].dropped_frames == 4
    assert [g[0] for g in stats["cam_2"].gaps] == [7, 22]
    # the video plays back every frame with its true timing (host time since the first frame, 1 ms clock)
    for c, cam in cams.items():
        frames = list(open_frames(videos[c]))
        assert len(frames) == len(cam.times)
        np.testing.assert_allclose([f.time_s for f in frames], cam.times - cam.times[0], atol=0.0011)
        levels = np.array([float(f.image.mean()) for f in frames])
        assert (np.diff(levels) > 1.5).all()  # every frame present once, in order
        video_t, host_t = read_timestamps(stamps[c])
        np.testing.assert_allclose(host_t, cam.times, atol=1e-6)
        np.testing.assert_allclose(video_t, [f.time_s for f in frames], atol=1e-6)
    assert probe(videos["cam_2"]).size == (80, 58)  # H.264 4:2:0 needs even sizes
    assert not list((tmp_path / "videos").glob(".*"))  # no temporary files left


@pytest.mark.parametrize("names", [("cam_1",), ("cam_1", "cam_2")])
def test_ctrl_c_leaves_playable_files(tmp_path, names):
    # The devices take 0.3 s to close after the stop, so record() must really wait for every camera's file:
    # in CPython 3.11 a Ctrl-C landing in Thread.join() marks the running thread as stopped, and waiting by
    # join() returned before the files were in place (a flaky CI failure once; the one-camera case failed
    # every time with that code).
    # The Ctrl-C is simulated through Python's own SIGINT handler, as a user's Ctrl-C reaches `mocap record`'s
    # fresh process. In the whole suite an earlier test in this process can leave another handler installed,
    # which swallows the simulated Ctrl-C (CI: record() then ran to its 20 s limit), so the test installs the
    # default handler itself and puts back whatever it found.
    found = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cams = {c: FakeCamera(c, None, 100.0, sleep_s=0.01, close_s=0.3) for c in names}
    videos, stamps = _paths(tmp_path, cams)
    timer = threading.Timer(0.6, _thread.interrupt_main)
    timer.start()
    try:
        stats, interrupted = record(cams, videos, stamps, RecordConfig(max_seconds=20))
    finally:
        timer.cancel()
        if found is not None:  # None: a handler installed outside Python, which cannot be put back from here
            signal.signal(signal.SIGINT, found)
    assert interrupted, f"the simulated Ctrl-C did not stop the recording (SIGINT handler found: {found!r})"
    for c in cams:
        assert stats[c].frames > 5
        frames = list(open_frames(videos[c]))
        assert len(frames) == stats[c].frames
        assert len(read_timestamps(stamps[c])[0]) == stats[c].frames


def test_max_seconds_and_device_specs(tmp_path):
    cams = {"cam_1": FakeCamera("cam_1", None, 100.0, sleep_s=0.01)}
    videos, stamps = _paths(tmp_path, cams)
    start = time.monotonic()
    stats, interrupted = record(cams, videos, stamps, RecordConfig(max_seconds=0.3))
    # the deadline stops it (this camera never ends); the bound is generous: a loaded machine must not fail it
    assert not interrupted and time.monotonic() - start < 15 and stats["cam_1"].frames > 5
    assert parse_device("0") == 0 and parse_device("rtsp://10.0.0.2/live") == "rtsp://10.0.0.2/live"
    with pytest.raises(ValueError, match="USB index"):
        parse_device("webcam")


class BrokenCamera(FakeCamera):
    """A device whose driver fails mid-take with an error nobody planned for."""

    def read(self) -> Frame | None:
        if self.index >= 9:
            raise RuntimeError("USB device disconnected")
        return super().read()


def test_a_camera_failing_mid_take_keeps_its_frames_and_says_so(tmp_path):
    cams = {"cam_1": BrokenCamera("cam_1", None, 100.0, sleep_s=0.01), "cam_2": FakeCamera("cam_2", None, 100.0, sleep_s=0.01)}
    videos, stamps = _paths(tmp_path, cams)
    stats, interrupted = record(cams, videos, stamps, RecordConfig(max_seconds=0.5))
    assert not interrupted and all(c.closed for c in cams.values())
    assert "cam_1" in stats["cam_1"].error and "USB device disconnected" in stats["cam_1"].error
    assert "after 10 frames" in stats["cam_1"].error and not stats["cam_2"].error
    for c in cams:  # the frames before the failure play, with their timestamps
        assert len(list(open_frames(videos[c]))) == stats[c].frames == len(read_timestamps(stamps[c])[0])
    assert stats["cam_1"].frames == 10 and stats["cam_2"].frames > 10
