"""`mocap run`: every stage in order on a take, resuming after an interruption, and bad input or faults met
with a message that names what is wrong and what to do, with nothing already computed lost.

The takes here are cheap: a calibrated ring of 4 cameras (no board recording: calibration.toml is given) and
2D keypoints imported from an npz (projections of a walking BlazePose skeleton with 1 px noise), so that
detection is not needed; triangulation, the body fit, export and the report run for real. Faults that need
videos (a corrupt or missing recording, nobody in view) use tiny stand-in videos and run detection.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import av
import numpy as np
import pytest
from mocap_studio.calibration.formats import write_calibration
from mocap_studio.cli import main
from mocap_studio.pipeline import RunConfig, run_pipeline
from mocap_studio.reconstruction.keypoints import Keypoints2D, Keypoints3D
from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33
from mocap_studio.reconstruction.synthetic import ring_rig, walking_skeleton
from mocap_studio.session import Session

FPS = 30.0
FRAMES = 45
FAST = RunConfig(formats=("bvh", "trc"))  # the export stage's own tests cover every format


def _toml(session: Session, text: str) -> None:
    session.config_path.write_text(f'[session]\nframe_rate = {FPS}\n\n[run]\nformats = ["bvh", "trc"]\n{text}')


def _keypoints(root: Path, rig, xyz: np.ndarray, seed: int = 0, cameras=None) -> Path:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    names = list(cameras or rig.names)
    xy = np.stack([rig[c].project(xyz) if c in rig else rig[rig.names[0]].project(xyz) for c in names])
    xy = xy + rng.normal(0.0, 1.0, xy.shape)
    conf = np.where(np.isfinite(xy).all(-1), 0.9, 0.0)
    path = root.parent / f"{root.name}_detections.npz"
    Keypoints2D(xy, conf, tuple(names), BLAZEPOSE_33.name, np.arange(len(xyz)) / FPS).save(path)
    return path


def make_take(root: Path, xyz: np.ndarray | None = None, cameras=None, seed: int = 0) -> tuple[Session, np.ndarray]:  # noqa: ANN001
    """A session with calibration.toml and imported keypoints; returns it and the true 3D joints."""
    rig = ring_rig(4, seed=1)
    xyz = walking_skeleton(FRAMES, FPS, seed=seed) if xyz is None else xyz
    root.mkdir(parents=True)
    session = Session(root)
    _toml(session, "")
    write_calibration(rig, session.calibration_path)
    source = _keypoints(root, rig, xyz, seed, cameras)
    assert main(["import-keypoints", str(root), str(source), "--format", "npz"]) == 0
    return session, xyz


def _statuses(session: Session) -> dict[str, str]:
    return {o["stage"]: o["status"] for o in json.loads(session.stage_report_path("run").read_text())["outcomes"]}


def _mpjpe_mm(session: Session, xyz: np.ndarray) -> float:
    k3 = Keypoints3D.load(session.keypoints3d_path)
    frames = np.round(k3.frame_times * FPS).astype(int)
    return float(np.nanmean(1000 * np.linalg.norm(k3.xyz - xyz[frames], axis=-1)))


@pytest.fixture(scope="module")
def done_take(tmp_path_factory) -> tuple[Session, np.ndarray]:
    session, xyz = make_take(tmp_path_factory.mktemp("run") / "take")
    assert main(["run", str(session.root)]) == 0
    return session, xyz


def test_run_does_every_stage_then_skips_them(done_take):
    session, xyz = done_take
    first = _statuses(session)
    assert first == {"calibrate": "not needed", "detect": "not needed", "sync": "not needed", "triangulate": "ran",
                     "fit": "ran", "export": "ran", "report": "ran"}
    assert _mpjpe_mm(session, xyz) < 10.0  # 1 px noise, 4 cameras 4.5 m away
    assert session.body_path.exists() and (session.root / "measurements.json").exists()
    assert sorted(p.suffix for p in session.export_dir.iterdir()) == [".bvh", ".trc"]
    assert (session.report_dir / "index.html").exists()
    body_written = session.body_path.stat().st_mtime_ns
    # a second run: nothing changed, nothing redone (the report is cheap and always rewritten)
    result = run_pipeline(session, FAST)
    statuses = {o.stage: o.status for o in result.outcomes}
    assert [statuses[s] for s in ("triangulate", "fit", "export")] == ["up to date"] * 3
    assert session.body_path.stat().st_mtime_ns == body_written
    # settings of how fast the fit runs, never of what it finds, redo nothing
    _toml(session, '\n[fit]\nthreads = 2\nsilhouette_workers = 3\n')
    result = run_pipeline(session, FAST)
    assert {o.stage: o.status for o in result.outcomes}["fit"] == "up to date"
    assert session.body_path.stat().st_mtime_ns == body_written
    # a changed setting redoes its stage and the stages after it, not those before
    _toml(session, '\n[filter]\nmethod = "one_euro"\n')
    result = run_pipeline(session, FAST)
    statuses = {o.stage: o.status for o in result.outcomes}
    assert [statuses[s] for s in ("triangulate", "fit", "export")] == ["ran"] * 3


def test_interrupted_stage_keeps_earlier_outputs_and_resumes(tmp_path, monkeypatch):
    session, _ = make_take(tmp_path / "take")
    import mocap_studio.stages_keypoints as stages_keypoints

    imported = session.keypoints2d_path.read_bytes()

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt

    monkeypatch.setattr(stages_keypoints, "smooth", interrupted)  # Ctrl-C while triangulating
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(session, FAST)
    record = json.loads(session.stage_report_path("run").read_text())
    assert record["error"] == "interrupted during triangulate" and _statuses(session)["triangulate"] == "interrupted"
    assert session.keypoints2d_path.read_bytes() == imported and not session.keypoints3d_path.exists()
    assert not [p for p in session.root.rglob(".*") if p.is_file()], "a temporary file was left behind"
    # the command line's Ctrl-C: a message and exit status 130
    assert main(["run", str(session.root), "--until", "triangulate"]) == 130
    monkeypatch.undo()
    result = run_pipeline(session, RunConfig(stages=("detect", "triangulate")))
    assert {o.stage: o.status for o in result.outcomes} == {"detect": "not needed", "triangulate": "ran"}
    assert session.keypoints3d_path.exists()


def test_full_disk_names_the_file_and_keeps_the_previous_output(done_take, monkeypatch, capsys):
    session, _ = done_take
    bvh = next(session.export_dir.glob("*.bvh"))
    before = bvh.read_bytes()
    import mocap_studio.common.fileio as fileio

    real = fileio.os.replace

    def full(src, dst):  # noqa: ANN001
        if Path(dst).suffix == ".bvh":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", full)
    assert main(["run", str(session.root), "--overwrite", "export"]) == 1
    err = capsys.readouterr().err
    assert "stage 'export' failed" in err and "disk is full" in err and bvh.name in err and "run again" in err
    assert "the outputs of calibrate, detect, sync, triangulate, fit are kept" in err
    monkeypatch.undo()
    assert bvh.read_bytes() == before
    assert not [p for p in session.root.rglob(".*") if p.is_file()], "a temporary file was left behind"


def test_camera_missing_from_the_calibration_is_named(tmp_path, capsys):
    session, _ = make_take(tmp_path / "take", cameras=["cam_1", "cam_2", "cam_3", "cam_4", "cam_9"])
    assert main(["run", str(session.root)]) == 1
    err = capsys.readouterr().err
    assert "stage 'triangulate' failed" in err and "cam_9" in err and "calibration" in err
    assert not session.keypoints3d_path.exists()


def test_nobody_in_view_says_so_and_writes_nothing(tmp_path, capsys):
    rig = ring_rig(4, seed=1)
    (tmp_path / "take").mkdir()
    session = Session(tmp_path / "take")
    write_calibration(rig, session.calibration_path)
    source = _keypoints(session.root, rig, np.full((FRAMES, 33, 3), np.nan))
    assert main(["import-keypoints", str(session.root), str(source), "--format", "npz"]) == 1
    err = capsys.readouterr().err
    assert "nobody was detected in any camera" in err and "in view" in err
    assert not session.keypoints2d_path.exists()


def test_performer_leaving_the_volume_is_reported_and_the_rest_is_fitted(tmp_path):
    xyz = walking_skeleton(70, FPS, seed=2)
    xyz[40:60] = np.nan  # two thirds of a second out of every camera's view
    session, _ = make_take(tmp_path / "take", xyz=xyz)
    assert main(["run", str(session.root), "--until", "fit"]) == 0
    warnings = " ".join(session.read_stage_report("triangulate")["warnings"])
    assert "every joint: 20 frame(s) missing" in warnings and "from frame 40" in warnings, warnings
    k3 = Keypoints3D.load(session.keypoints3d_path)
    assert not k3.valid[40:60].any() and k3.valid[:40].mean() > 0.9
    fit = session.read_stage_report("fit")
    assert any(w.startswith("frames 40-59") and "no keypoints" in w for w in fit["warnings"]), fit["warnings"]
    assert _mpjpe_mm(session, xyz) < 10.0


# ---- videos: corrupt, missing, unequal, empty ------------------------------------------------------------
def _video(path: Path, frames: int, size=(160, 96)) -> None:  # noqa: ANN001
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for k in range(frames):
            image = np.full((size[1], size[0], 3), 40 + k % 5, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _video_take(root: Path, frames: dict[str, int]) -> Session:
    root.mkdir(parents=True)
    session = Session(root)
    _toml(session, '\n[sync]\nmethods = ["keypoints"]\n')
    rig = ring_rig(4, seed=1, size=(160, 96), focal_px=120.0)
    write_calibration(rig, session.calibration_path)
    for name, count in frames.items():
        _video(session.videos_dir / f"{name}.mp4", count)
    return session


def test_corrupt_video_stops_detection_naming_the_file(tmp_path, capsys):
    session = _video_take(tmp_path / "take", {"cam_1": 10, "cam_2": 10})
    (session.videos_dir / "cam_2.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    assert main(["run", str(session.root)]) == 1
    err = capsys.readouterr().err
    assert "stage 'detect' failed" in err and "cam_2.mp4" in err
    assert not session.keypoints2d_path.exists()


def test_empty_scene_missing_and_short_recordings(tmp_path, capsys, caplog):
    """Nobody in any frame; cam_3 calibrated but not recorded; cam_2 much shorter than the others."""
    session = _video_take(tmp_path / "take", {"cam_1": 60, "cam_2": 20, "cam_4": 60})
    assert main(["run", str(session.root)]) == 1
    err = capsys.readouterr().err
    assert "['cam_3'] are in calibration.toml but have no recording" in caplog.text
    assert "camera cam_2: its recording is 1.3 s shorter" in caplog.text
    assert "stage 'detect' failed" in err and "nobody was detected in any camera" in err
    assert not session.keypoints2d_path.exists()


def test_outputs_get_ordinary_file_permissions(tmp_path):
    """Atomic writes go through a private temporary file; the result must not stay private (0600)."""
    import os

    from mocap_studio.common.fileio import write_text_atomic

    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "out.txt", "x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
