"""sync.json applied by `mocap triangulate`: a synthetic take with cameras at 30 and 60 fps and sub-frame
offsets, synchronized by keypoint motion (`mocap sync`) and triangulated, lands within 5 mm of the same take
filmed at one rate without offsets; without sync.json it is measurably worse and the report says why.

Convention: camera frame k is exposed at camera time k / fps and shows the performer at common (true) time
k / fps + offset_s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.calibration.formats import write_calibration
from mocap_studio.capture.sync import SyncError
from mocap_studio.cli import main
from mocap_studio.reconstruction.keypoints import Keypoints2D, Keypoints3D
from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33
from mocap_studio.reconstruction.synthetic import ring_rig, walking_skeleton
from mocap_studio.session import Session
from mocap_studio.stages_keypoints import run_triangulate
from scipy import interpolate

DURATION_S = 6.0
NOISE_PX = 1.0
FPS = {"cam_1": 60.0, "cam_2": 30.0, "cam_3": 60.0, "cam_4": 30.0}
OFFSETS = {"cam_1": 0.0, "cam_2": 0.1234, "cam_3": -0.2047, "cam_4": 0.0371}  # sub-frame at either rate


def _motion(seed: int = 3) -> Callable[[np.ndarray], np.ndarray]:
    """xyz(t): true times (N,) s -> (N, 33, 3) m. The synthetic walk on the spot (hips held over one point
    while the body turns), sampled densely and played back with a smooth, monotone time warp so that its
    speed is not periodic (a periodic motion has no unique lag).

    Walking on the spot, because keypoint-speed sync is biased when the performer crosses the floor: the
    image speed is then mostly the view-dependent translation (0.3-0.5 frame here, against < 0.05)."""
    rate = 1200.0
    dense = walking_skeleton(int(10 * rate), rate, seed=seed)
    hips = [BLAZEPOSE_33.index("left_hip"), BLAZEPOSE_33.index("right_hip")]
    dense[..., :2] -= dense[:, hips, :2].mean(1)[:, None] - np.array([0.2, -0.1])
    spline = interpolate.make_interp_spline(np.arange(len(dense)) / rate, dense, k=3, axis=0)

    def xyz(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, float)
        warped = 1.0 + t + 0.25 * np.sin(1.3 * t) + 0.15 * np.sin(2.9 * t + 1.0)
        return spline(warped)

    return xyz


def _write_video(path: Path, fps: float, frames: int, size: tuple[int, int]) -> None:
    """A stand-in recording: only its frame rate, frame count and image size (the calibrated one) matter."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps), options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for k in range(frames):
            img = np.full((size[1], size[0], 3), k % 200, np.uint8)
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                container.mux(p)
        for p in stream.encode():
            container.mux(p)


def _make_session(root: Path, rig: CameraRig, fps: dict[str, float], offsets: dict[str, float],
                  videos: bool, seed: int) -> Session:
    """keypoints2d.npz as `mocap detect` writes it: row k is each camera's k-th frame, shorter recordings
    padded with NaN, frame times at the first camera's rate."""
    xyz = _motion()
    rng = np.random.default_rng(seed)
    names = list(rig.names)
    counts = {c: int(round(DURATION_S * fps[c])) for c in names}
    T = max(counts.values())
    xy = np.full((len(names), T, 33, 2), np.nan)
    for i, c in enumerate(names):
        t = np.arange(counts[c]) / fps[c] + offsets[c]
        uv = rig[c].project(xyz(t))
        xy[i, : counts[c]] = uv + rng.normal(0.0, NOISE_PX, uv.shape)
    conf = np.where(np.isfinite(xy).all(-1), 0.9, 0.0)
    session = Session(root)
    root.mkdir(parents=True, exist_ok=True)
    write_calibration(rig, session.calibration_path)
    Keypoints2D(xy, conf, tuple(names), BLAZEPOSE_33.name, np.arange(T) / fps[names[0]]).save(session.keypoints2d_path)
    if videos:
        session.videos_dir.mkdir()
        for c in names:
            _write_video(session.videos_dir / f"{c}.mp4", fps[c], counts[c], rig[c].size)
    return session


def _error_mm(k3: Keypoints3D, reference: Keypoints3D) -> np.ndarray:
    """Per frame and joint distance (mm) of ``k3`` from ``reference`` interpolated at k3's frame times."""
    ref = np.stack(
        [np.stack([np.interp(k3.frame_times, reference.frame_times, reference.xyz[:, j, a]) for a in range(3)], -1)
         for j in range(reference.num_joints)], 1,
    )
    inside = (k3.frame_times >= reference.frame_times[0]) & (k3.frame_times <= reference.frame_times[-1])
    return 1000 * np.linalg.norm(k3.xyz[inside] - ref[inside], axis=-1)


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> dict[str, Session]:
    rig = ring_rig(4, seed=1)
    assert list(rig.names) == list(FPS)
    base = tmp_path_factory.mktemp("sync_triangulate")
    single = _make_session(base / "single", rig, dict.fromkeys(FPS, 60.0), dict.fromkeys(FPS, 0.0), False, 1)
    mixed = _make_session(base / "mixed", rig, FPS, OFFSETS, True, 2)
    assert main(["triangulate", str(single.root)]) == 0
    return {"single": single, "mixed": mixed}


def test_sync_then_triangulate_matches_single_rate(takes):
    single, mixed = takes["single"], takes["mixed"]
    reference = Keypoints3D.load(single.keypoints3d_path)

    # without sync.json: the rates are still honoured, but the offsets are not; the report says so
    assert main(["triangulate", str(mixed.root)]) == 0
    report = mixed.read_stage_report("triangulate")
    assert not report["figures"]["sync"]["applied"]
    assert any("no sync.json" in w and "mocap sync" in w for w in report["warnings"])
    unsynced = _error_mm(Keypoints3D.load(mixed.keypoints3d_path), reference)

    assert main(["sync", str(mixed.root), "--method", "keypoints"]) == 0
    sync = json.loads(mixed.sync_path.read_text())["cameras"]
    offset_err = {c: abs(sync[c]["offset_s"] - o) * FPS[c] for c, o in OFFSETS.items()}
    assert max(offset_err.values()) < 0.2, offset_err  # frames of each camera

    assert main(["triangulate", str(mixed.root)]) == 0  # a new sync.json re-runs triangulation
    report = mixed.read_stage_report("triangulate")
    info = report["figures"]["sync"]
    assert info["applied"] and info["sync_file"] == "sync.json" and info["timeline_fps"] == pytest.approx(60.0)
    assert {c: info["per_camera"][c]["method"] for c in FPS} == dict.fromkeys(FPS, "epipolar")  # keypoints + a calibration
    assert info["per_camera"]["cam_2"]["fps"] == pytest.approx(30.0)
    k3 = Keypoints3D.load(mixed.keypoints3d_path)
    assert k3.frame_times[0] == pytest.approx(info["timeline_start_s"])
    assert np.diff(k3.frame_times) == pytest.approx(1 / 60)
    synced = _error_mm(k3, reference)
    truth = _motion()  # cam_1 is the reference (offset 0), so the common clock is the true clock
    to_truth = {name: np.nanmean(1000 * np.linalg.norm(k.xyz - truth(k.frame_times), axis=-1))
                for name, k in (("single rate", reference), ("synced", k3))}
    print(
        f"30/60 fps, offsets {OFFSETS}: offset error (frames) {np.round(list(offset_err.values()), 3)}; "
        f"vs single-rate take: synced mean {np.nanmean(synced):.2f} mm (p95 {np.nanpercentile(synced, 95):.2f}), "
        f"without sync.json mean {np.nanmean(unsynced):.2f} mm (p95 {np.nanpercentile(unsynced, 95):.2f}); "
        f"vs truth: " + ", ".join(f"{k} {v:.2f} mm" for k, v in to_truth.items())
    )
    assert np.nanmean(synced) < 5.0
    assert np.nanmean(unsynced) > 3 * np.nanmean(synced)

    # unchanged inputs: skipped; a camera missing from sync.json: named, with what to do
    assert main(["triangulate", str(mixed.root)]) == 0
    data = json.loads(mixed.sync_path.read_text())
    del data["cameras"]["cam_3"]
    mixed.sync_path.write_text(json.dumps(data))
    with pytest.raises(SyncError, match=r"camera\(s\) \['cam_3'\].*mocap sync"):
        run_triangulate(mixed)
