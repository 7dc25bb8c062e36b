"""Synthesizing a whole take: a session folder exactly as a real studio would leave it, plus the truth.

Session (read by the pipeline like any real take)::

    session.toml                 [session] board and nominal frame rate
    videos/<camera>.mp4          H.264, each frame stamped with its time on the camera's own clock
                                 (dropped frames leave gaps in the timestamps)
    videos/<camera>.wav          the camera's audio with the claps (Session.audio_path)
    calibration/<camera>.mp4     the board recording: close-ups to every camera, the board carried through
                                 the volume, then laid on the floor (the last frames)

Truth (``Session.truth_dir``; no stage reads it)::

    calibration.toml             the true rig (our calibration TOML)
    timing.json                  per camera: offset_s (common_time = camera_time + offset_s), frame rate,
                                 dropped frames, recorded frame times; clap times on the common clock
    keypoints3d_<format>.npz     3D joints on the reference camera's frame times, every skeleton format
    body.npz                     body model, shape, per-frame pose and translation (same frame times)
    vertices.npy                 (T, V, 3) float32 mesh vertices, only when asked for
    board_poses.npy              (V, 4, 4) world-from-board pose of each calibration frame
    studio.json                  what was asked for (rig, motions, seed, ...)

The calibration recording is frame-aligned across cameras (the board is held still at each pose), so its
frames need no synchronization. Everything is deterministic from the seed.
"""

from __future__ import annotations

import logging
import time
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from mocap_studio.capture.video_writer import VideoWriter
from mocap_studio.studio.performer import (
    MASTER_RATE_HZ,
    Performance,
    PerformerError,
    exercise_motion,
    load_bvh_motion,
    perform,
    place_on_floor,
)
from mocap_studio.studio.rigs import StudioRig, load_rig_preset

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class StudioConfig:
    """What to synthesize (``mocap synth`` options)."""

    rig: str = "ring4"
    """A rig preset name from configs/rigs/ or a rig TOML path."""
    motions: tuple[str, ...] = ("squat",)
    """Built-in exercises, performed one after another (ignored when ``bvh`` is given)."""
    bvh: str = ""
    """A BVH file to perform instead of the exercises (retargeted onto the body)."""
    seconds: float = 6.0
    """Length of every camera's recording, on its own clock."""
    seed: int = 0
    """Seed for everything random: body shape, motion variations, board poses, noise."""
    body_shape: str = "random"
    """'random' (seeded adult) or 'default' (the model's average adult)."""
    scale: float = 1.0
    """Image size factor applied to every camera (tests use small images)."""
    supersample: int = 1
    """Rays per pixel side for the performance (anti-aliasing)."""
    board: str = "charuco_5x7_dict4x4_100"
    """Calibration board preset or TOML path."""
    calibration_views: int = 60
    """Board poses carried through the volume."""
    close_ups_per_camera: int = 6
    """Board poses held up close to each camera."""
    floor_frames: int = 3
    """Frames at the end of the board recording with the board lying on the floor."""
    claps: int = 3
    """Hand claps in the audio, spread over the take."""
    audio_rate_hz: int = 48000
    """Audio sample rate."""
    crf: int = 14
    """H.264 quality (lower is better)."""
    vertices: bool = False
    """Also write the mesh vertices per frame to the truth folder."""


class StudioError(ValueError):
    """A synthesis request that cannot be met: the message says what to change."""


def _check_config(config: StudioConfig) -> None:
    if config.seconds <= 0:
        raise StudioError(f"seconds must be positive, got {config.seconds}")
    if config.body_shape not in ("random", "default"):
        raise StudioError(f"body_shape must be 'random' or 'default', got {config.body_shape!r}")
    if config.scale <= 0 or config.supersample < 1:
        raise StudioError("scale must be positive and supersample at least 1")


# ------------------------------------------------------------------------------------------------
# audio
# ------------------------------------------------------------------------------------------------
def clap_times(rig: StudioRig, seconds: float, count: int, seed: int) -> np.ndarray:
    """(count,) clap times on the common clock, inside every camera's recording with 0.3 s to spare."""
    offsets = np.array([c.offset_s for c in rig.cameras])
    lo, hi = offsets.max() + 0.3, offsets.min() + seconds - 0.3
    if count and hi <= lo:
        raise StudioError(f"the take ({seconds} s) is too short for claps with offsets up to {np.ptp(offsets):.2f} s")
    if count == 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    edges = np.linspace(lo, hi, count + 1)
    return np.sort(edges[:-1] + rng.uniform(0.2, 0.8, count) * np.diff(edges))


def clap_audio(times_s: np.ndarray, claps_s: np.ndarray, seed: int) -> np.ndarray:
    """Audio samples (N,) in [-1, 1] at times ``times_s`` (N,): damped tones starting at each clap time
    (the same sound for every camera, so cross-correlation is exact below one sample) over faint noise."""
    rng = np.random.default_rng(seed)
    out = rng.normal(0.0, 0.002, len(times_s))
    freqs = np.array([900.0, 1700.0, 2600.0, 3900.0])
    phases = np.random.default_rng(1234).uniform(0, 2 * np.pi, len(freqs))
    for c in claps_s:
        dt = times_s - c
        active = (dt >= 0) & (dt < 0.25)
        d = dt[active]
        tone = np.sin(2 * np.pi * freqs[:, None] * d[None] + phases[:, None]).sum(0) / len(freqs)
        out[active] += 0.8 * tone * np.exp(-d / 0.03) * np.clip(d / 5e-4, 0, 1)
    return np.clip(out, -1, 1)


def write_wav(path: Path, samples: np.ndarray, rate_hz: int) -> Path:
    """16-bit mono WAV, written atomically."""
    from mocap_studio.common.fileio import atomic_path

    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes((np.asarray(samples) * 32767).astype("<i2").tobytes())
    return path


# ------------------------------------------------------------------------------------------------
# video
# ------------------------------------------------------------------------------------------------
# ------------------------------------------------------------------------------------------------
# the take
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Take:
    """What :func:`synthesize` made: paths and the truth in memory."""

    session_dir: Path
    truth_dir: Path
    rig: StudioRig
    performance: Performance
    claps_s: np.ndarray
    render_frames_per_second: float


def _body_and_shape(config: StudioConfig):  # noqa: ANN202 - (AnnyBody, (S,) shape)
    from mocap_studio.reconstruction.body.anny_model import AnnyBody

    body = AnnyBody()
    shape = body.default_shape() if config.body_shape == "default" else body.random_shape(np.random.default_rng(config.seed))
    return body, shape


def make_performance(body, shape: np.ndarray, config: StudioConfig, rig: StudioRig) -> Performance:  # noqa: ANN001
    """The performance covering every camera's recording on the common clock."""
    offsets = np.array([c.offset_s for c in rig.cameras])
    start = float(offsets.min()) - 0.1
    duration = float(np.ptp(offsets)) + config.seconds + 0.2
    if config.bvh:
        source, source_rig = load_bvh_motion(config.bvh)
        need = int(np.ceil(duration * source.frame_rate)) + 1
        source = place_on_floor(source.slice_frames(0, min(need, source.num_frames)))
    else:
        from mocap_studio.export.rig import load_rig

        source = exercise_motion(list(config.motions), duration, seed=config.seed, rate_hz=MASTER_RATE_HZ)
        source_rig = load_rig("smpl24")
    return perform(body, shape, source, source_rig, start_s=start)


def _write_truth(truth: Path, body, config: StudioConfig, rig: StudioRig, perf: Performance,  # noqa: ANN001
                 claps: np.ndarray, board_poses: np.ndarray, schedules: dict) -> None:
    from mocap_studio.calibration.formats import write_calibration
    from mocap_studio.common.fileio import save_npz_atomic, write_json_atomic
    from mocap_studio.reconstruction.body.fitting import BodyMotion
    from mocap_studio.reconstruction.body.io import save_body_npz
    from mocap_studio.reconstruction.keypoints import Keypoints3D
    from mocap_studio.reconstruction.skeletons import FORMATS

    truth.mkdir(parents=True, exist_ok=True)
    write_calibration(rig.rig, truth / "calibration.toml", {"source": "virtual studio truth", "rig_preset": rig.name})
    ref = rig.cameras[0]
    n_ref = int(np.floor(config.seconds * ref.frame_rate + 1e-9))
    times = np.arange(n_ref) / ref.frame_rate + ref.offset_s
    pose, trans = perf.sample(times)
    out = body.evaluate(perf.shape, pose, trans)
    C = len(rig.cameras)
    for name in FORMATS:
        if name == "smpl24":
            sem = [body.semantic_joints[j] for j in FORMATS[name].joints]
            xyz = out.joints[:, sem]
        else:
            xyz = body.keypoints(perf.shape, pose, trans, name)
        valid = np.isfinite(xyz).all(-1)
        kp = Keypoints3D(xyz, np.where(valid, 0.0, np.nan), np.broadcast_to(valid[..., None], valid.shape + (C,)).copy(),
                         rig.names, name, frame_times=times)
        kp.save(truth / f"keypoints3d_{name}.npz")
    motion = BodyMotion(body.name, perf.shape, pose, trans, ref.frame_rate, times)
    save_body_npz(truth / "body.npz", motion, body.joint_names, body.parents, body.shape_names)
    if config.vertices:
        from mocap_studio.common.fileio import atomic_path

        with atomic_path(truth / "vertices.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, out.vertices.astype(np.float32))
    save_npz_atomic(truth / "board_poses.npz", world_from_board=board_poses)
    write_json_atomic(truth / "timing.json", {
        "convention": "common_time = camera_time + offset_s; frame i of a camera is at camera time i / frame_rate",
        "reference_camera": ref.name,
        "claps_common_s": claps.tolist(),
        "cameras": {sc.name: {
            "offset_s": sc.offset_s, "frame_rate": sc.frame_rate, "dropped_frames": list(sc.dropped_frames),
            "frame_indices": schedules[sc.name][0].tolist(), "frame_times_s": schedules[sc.name][1].tolist(),
            "size": list(sc.camera.size)} for sc in rig.cameras},
    })
    write_json_atomic(truth / "studio.json", {**asdict(config), "rig_cameras": list(rig.names),
                                              "shape": perf.shape.tolist(), "shape_names": list(body.shape_names),
                                              "motion_source": perf.source})


def _render_performance(session, body, perf: Performance, rig: StudioRig, config: StudioConfig,  # noqa: ANN001
                        schedules: dict, progress: ProgressFn | None) -> float:
    from mocap_studio.studio.render import BodyRenderer, region_colours

    colours = region_colours(body.joint_names, body.skinning_weights(), body.rest_mesh(perf.shape))
    total = sum(len(s[0]) for s in schedules.values())
    done, render_s = 0, 0.0
    for sc in rig.cameras:
        renderer = BodyRenderer(sc.camera, body.faces, colours, supersample=config.supersample, seed=config.seed)
        _, cam_times = schedules[sc.name]
        writer = VideoWriter(session.videos_dir / f"{sc.name}.mp4", sc.frame_rate, config.crf)
        ok = False
        try:
            for start in range(0, len(cam_times), 64):
                chunk = cam_times[start:start + 64]
                pose, trans = perf.sample(chunk + sc.offset_s)
                verts = body.evaluate(perf.shape, pose, trans).vertices
                for k, t in enumerate(chunk):
                    t0 = time.perf_counter()
                    image, _ = renderer.render(verts[k])
                    render_s += time.perf_counter() - t0
                    writer.write(image, float(t))
                    done += 1
                    if progress:
                        progress("rendering the performance", done, total)
            ok = True
        finally:
            writer.close(keep=ok)
    return total / max(render_s, 1e-9)


def _board_poses(rig: StudioRig, config: StudioConfig, board) -> np.ndarray:  # noqa: ANN001
    from mocap_studio.calibration.simulate import close_up_board_poses, floor_board_pose, random_board_poses

    return np.concatenate([
        close_up_board_poses(rig.rig, config.close_ups_per_camera, board.size_m, seed=config.seed + 3),
        random_board_poses(config.calibration_views, seed=config.seed + 1),
        np.repeat(floor_board_pose(board.size_m)[None], max(config.floor_frames, 1), axis=0),
    ])


def _render_calibration(session, rig: StudioRig, board, poses: np.ndarray, config: StudioConfig,  # noqa: ANN001
                        progress: ProgressFn | None) -> None:
    import cv2
    from mocap_studio.calibration.simulate import BoardRenderer

    total, done = len(poses) * len(rig.cameras), 0
    for sc in rig.cameras:
        renderer = BoardRenderer(board, sc.camera, seed=config.seed + 7)
        writer = VideoWriter(session.calibration_recordings_dir / f"{sc.name}.mp4", sc.frame_rate, config.crf)
        ok = False
        try:
            for v, pose in enumerate(poses):
                grey = renderer.render(pose, seed=config.seed * 100003 + v)
                writer.write(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), v / sc.frame_rate)
                done += 1
                if progress:
                    progress("rendering the board recording", done, total)
            ok = True
        finally:
            writer.close(keep=ok)


def synthesize(session_dir: str | Path, config: StudioConfig = StudioConfig(), truth_dir: str | Path | None = None,
               progress: ProgressFn | None = None) -> Take:
    """Write a complete synthetic take to ``session_dir`` and its truth to ``truth_dir`` (default
    ``Session.truth_dir``). Raises StudioError / PerformerError / ConfigError with what to change."""
    import tomli_w
    from mocap_studio.calibration.boards import load_board
    from mocap_studio.session import Session

    _check_config(config)
    rig = load_rig_preset(config.rig)
    if config.scale != 1.0:
        rig = rig.scaled(config.scale)
    if not config.bvh:
        from mocap_studio.studio.performer import _check_exercises

        _check_exercises(config.motions)
    else:
        load_bvh_motion(config.bvh)  # fail before the body model loads
    board = load_board(config.board)
    claps = clap_times(rig, config.seconds, config.claps, config.seed)
    session = Session(session_dir)
    truth = Path(truth_dir) if truth_dir is not None else session.truth_dir
    body, shape = _body_and_shape(config)
    perf = make_performance(body, shape, config, rig)
    schedules = {sc.name: sc.frame_schedule(config.seconds) for sc in rig.cameras}
    session.root.mkdir(parents=True, exist_ok=True)
    from mocap_studio.common.fileio import write_text_atomic

    # no name: the take is named after its folder when read (Session.config), never after a temporary folder the
    # take is built in before it is moved into place (the demo builds in "take.partial")
    write_text_atomic(session.config_path, tomli_w.dumps({"session": {
        "board": config.board, "frame_rate": rig.cameras[0].frame_rate}}))
    poses = _board_poses(rig, config, board)
    for sc in rig.cameras:
        n = int(round(config.seconds * config.audio_rate_hz))
        samples = clap_audio(np.arange(n) / config.audio_rate_hz + sc.offset_s, claps,
                             seed=config.seed + 11 + rig.names.index(sc.name))
        session.videos_dir.mkdir(parents=True, exist_ok=True)
        write_wav(session.audio_path(sc.name), samples, config.audio_rate_hz)
    fps = _render_performance(session, body, perf, rig, config, schedules, progress)
    _render_calibration(session, rig, board, poses, config, progress)
    _write_truth(truth, body, config, rig, perf, claps, poses, schedules)
    log.info("synthesized %s: %d cameras, %.1f s, render %.1f frames/s", session.root, len(rig.cameras), config.seconds, fps)
    return Take(session.root, truth, rig, perf, claps, fps)


__all__ = ["StudioConfig", "StudioError", "PerformerError", "Take", "synthesize", "make_performance", "clap_audio",
           "clap_times"]
