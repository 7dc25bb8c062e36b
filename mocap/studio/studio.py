"""Synthesizing a whole take: a session folder exactly as a real studio would leave it, plus the truth.

Session (read by the pipeline like any real take)::

    session.toml                 [session] board and nominal frame rate
    videos/<camera>.mp4          H.264, each frame stamped with its time on the camera's own clock
                                 (dropped frames leave gaps in the timestamps)
    videos/<camera>.wav          the camera's audio with the claps (Session.audio_path; none with audio off)
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
    masks.npz                    the performer's true mask per camera and frame at the image's size, blur 0
                                 (reconstruction/silhouettes.py's format, each camera's own frame times)
    studio.json                  what was asked for (rig, motions, seed, ...)
    scene.json                   the set: background, the platform (height, footprint; the floor stays at Z = 0),
                                 the bystander (which camera it crosses, when, where, frames seen per camera)
    bystander.npz                only with a bystander: its joints on the reference camera's frame times (NaN
                                 while out of the scene), and per camera and frame how many pixels show it and
                                 which of the performer's joints it hides (see _write_bystander_truth)

The calibration recording is frame-aligned across cameras (the board is held still at each pose), so its
frames need no synchronization. Everything is deterministic from the seed.

Real takes are harsher than the default studio; :func:`harsh_config` (``mocap synth --harsh``) films a take like
a real phone recording: 100 frames at 60 fps, already in sync, no audio, four portrait phones, the performer
on a raised platform in a cluttered room, a bystander walking through.
"""

from __future__ import annotations

import logging
import time
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from mocap_studio.capture.video_writer import VideoWriter
from mocap_studio.reconstruction.silhouettes import MaskPacker, MaskSet, downsample_mask, mask_size, pack_mask
from mocap_studio.studio.bystander import Bystander
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
from mocap_studio.studio.scenery import BACKGROUNDS, Platform, Scenery

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
    frames: int = 0
    """When above 0, the take's length in frames of the reference (first) camera; ``seconds`` is then ignored."""
    frame_rate: float = 0.0
    """When above 0, every camera films at this many frames per second (else each camera's preset rate)."""
    in_sync: bool = False
    """Every camera starts at the same instant (offsets 0) and drops no frame, as a take already trimmed to sync."""
    audio: bool = True
    """Write each camera's audio (videos/<camera>.wav) with the claps; False writes none (and no claps)."""
    platform_height_m: float = 0.0
    """The performer stands on a box this high (0: on the floor); the calibration board still lies on the floor."""
    platform_size_m: float = 1.2
    """The platform's least width (square, centred); it grows to keep every foot of the performance on it."""
    background: str = "plain"
    """'plain' (tiled floor, grey walls) or 'textured' (a seeded room: painted walls, posters, shelves, clutter)."""
    bystander: bool = False
    """A second person (another shape, other clothes) walks across the take, in front of one camera's view."""
    performers: int = 1
    """How many performers: 1 performs in place at the centre; several each get a seeded shape, clothes and an
    exercise of their own and move back and forth along lines through the centre, crossing each other's paths
    (``studio/troupe.py``); the truth then holds one folder per performer (``truth/p0/`` ...)."""


HARSH = {"rig": "phones4_portrait", "frames": 100, "frame_rate": 60.0, "in_sync": True, "audio": False, "claps": 0,
         "background": "textured", "bystander": True}
"""What ``--harsh`` sets (the platform height is seeded, see :func:`harsh_config`)."""
PLATFORM_RANGE_M = (0.1, 0.3)
"""The harsh take's platform height is drawn from this range by the seed."""


CROWD_DETECTION = {"min_detection_confidence": 0.2, "min_presence_confidence": 0.3}
"""MediaPipe's thresholds a several-performer take asks for in its session.toml ([detect]): where people overlap
the person detector scores them low, and at its defaults (0.5, 0.5) it reported 1.6 of 3 performers per frame on
a ring4 take (3 performers, seed 0), at these 2.0 (the association drops what the cameras do not agree on);
each performer in two or more cameras within 40 px of the truth: 97.5 / 94.2 / 12.5 % of frames -> 98.3 / 95.0 /
20.8 %."""


def harsh_config(seed: int = 0, **overrides) -> StudioConfig:  # noqa: ANN003 - StudioConfig fields
    """A take as harsh as a real phone recording: :data:`HARSH` (100 frames at 60 fps on four portrait phones,
    in sync, no audio, a textured room, a bystander) and a platform of seeded height in PLATFORM_RANGE_M;
    ``overrides`` (StudioConfig fields) win over all of it."""
    lo, hi = PLATFORM_RANGE_M
    height = round(float(np.random.default_rng([seed, 59]).uniform(lo, hi)), 3)
    return StudioConfig(**{**HARSH, "platform_height_m": height, "seed": seed, **overrides})


class StudioError(ValueError):
    """A synthesis request that cannot be met: the message says what to change."""


def _check_config(config: StudioConfig) -> None:
    if config.seconds <= 0:
        raise StudioError(f"seconds must be positive, got {config.seconds}")
    if config.body_shape not in ("random", "default"):
        raise StudioError(f"body_shape must be 'random' or 'default', got {config.body_shape!r}")
    if config.scale <= 0 or config.supersample < 1:
        raise StudioError("scale must be positive and supersample at least 1")
    if config.frames < 0 or config.frame_rate < 0:
        raise StudioError(f"frames and frame_rate must not be negative, got {config.frames} and {config.frame_rate}")
    if not 0 <= config.platform_height_m <= 1.0 or config.platform_size_m <= 0:
        raise StudioError(f"platform height must be within 0-1 m and its size positive, got {config.platform_height_m} "
                          f"and {config.platform_size_m}")
    if config.background not in BACKGROUNDS:
        raise StudioError(f"background must be one of {list(BACKGROUNDS)}, got {config.background!r}")
    if not 1 <= config.performers <= 8:
        raise StudioError(f"performers must be within 1-8, got {config.performers}")
    if config.performers > 1 and config.platform_height_m > 0:
        raise StudioError("several performers move over the whole floor: a platform is for one performer only "
                          "(drop --platform or --performers)")


def studio_rig(config: StudioConfig) -> StudioRig:
    """The rig the take is filmed with: the preset, scaled, at ``frame_rate`` and in sync when asked."""
    rig = load_rig_preset(config.rig)
    if config.scale != 1.0:
        rig = rig.scaled(config.scale)
    if config.frame_rate > 0:
        rig = rig.with_frame_rate(config.frame_rate)
    if config.in_sync:
        rig = rig.in_sync()
    return rig


def take_seconds(config: StudioConfig, rig: StudioRig) -> float:
    """Length of every camera's recording on its own clock: ``frames`` of the reference camera, or ``seconds``."""
    return config.frames / rig.cameras[0].frame_rate if config.frames > 0 else config.seconds


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
    scenery: Scenery | None = None
    """The static set, None for the plain studio without a platform."""
    bystander: Bystander | None = None
    """The bystander, when there is one."""
    others: tuple[Performance, ...] = ()
    """With several performers, performers 1, 2, ... (``performance`` is performer 0)."""


def _body_and_shape(config: StudioConfig):  # noqa: ANN202 - (AnnyBody, (S,) shape)
    from mocap_studio.reconstruction.body.anny_model import AnnyBody

    body = AnnyBody()
    shape = body.default_shape() if config.body_shape == "default" else body.random_shape(np.random.default_rng(config.seed))
    return body, shape


def performance_span(config: StudioConfig, rig: StudioRig) -> tuple[float, float]:
    """(start, duration) in seconds on the common clock covering every camera's recording with 0.1 s to spare."""
    offsets = np.array([c.offset_s for c in rig.cameras])
    return float(offsets.min()) - 0.1, float(np.ptp(offsets)) + take_seconds(config, rig) + 0.2


def make_performance(body, shape: np.ndarray, config: StudioConfig, rig: StudioRig) -> Performance:  # noqa: ANN001
    """The performance covering every camera's recording on the common clock (raised by the platform's height)."""
    start, duration = performance_span(config, rig)
    if config.bvh:
        source, source_rig = load_bvh_motion(config.bvh)
        need = int(np.ceil(duration * source.frame_rate)) + 1
        source = place_on_floor(source.slice_frames(0, min(need, source.num_frames)))
    else:
        from mocap_studio.export.rig import load_rig

        source = exercise_motion(list(config.motions), duration, seed=config.seed, rate_hz=MASTER_RATE_HZ)
        source_rig = load_rig("smpl24")
    perf = perform(body, shape, source, source_rig, start_s=start)
    if config.platform_height_m > 0:
        perf = replace(perf, trans=perf.trans + np.array([0.0, 0.0, config.platform_height_m]))
    return perf


def make_others(body, config: StudioConfig, rig: StudioRig, first: Performance) -> tuple[Performance, ...]:  # noqa: ANN001
    """With several performers: performer 0 (``first``) put on its path, then performers 1, 2, ... with their own
    seeded shapes and exercises on theirs (:mod:`.troupe`) -> (performer 0, the others)."""
    from mocap_studio.studio.troupe import on_path, performer_motions

    n = config.performers
    out = [on_path(first, 0, n)]
    for i in range(1, n):
        shape = body.random_shape(np.random.default_rng([config.seed, 90, i]))
        own = replace(config, motions=performer_motions(config.motions, i), seed=config.seed + 1000 * i)
        out.append(on_path(make_performance(body, shape, own, rig), i, n))
    return tuple(out)


def make_scenery(body, perf: Performance, config: StudioConfig, rig: StudioRig) -> Scenery | None:  # noqa: ANN001
    """The static set, or None for the plain studio with no platform (rendered exactly as it always was).

    The platform is a square of ``platform_size_m`` centred at the origin, grown to hold every sole vertex of
    the performance (sampled every 4th frame) with 0.2 m to spare."""
    if config.background == "plain" and config.platform_height_m <= 0:
        return None
    platform = None
    if config.platform_height_m > 0:
        from mocap_studio.studio.performer import sole_vertex_ids

        ids = sole_vertex_ids(body, perf.shape)
        soles = np.concatenate([
            body.evaluate(perf.shape, perf.pose_rotvec[a:a + 64:4], perf.trans[a:a + 64:4]).vertices[:, ids, :2]
            for a in range(0, len(perf.times_s), 64)]).reshape(-1, 2)
        half = config.platform_size_m / 2
        lo = np.minimum(soles.min(0) - 0.2, -half)
        hi = np.maximum(soles.max(0) + 0.2, half)
        platform = Platform(config.platform_height_m, round(float(lo[0]), 3), round(float(hi[0]), 3),
                            round(float(lo[1]), 3), round(float(hi[1]), 3))
    return Scenery(config.background, platform, seed=config.seed, clear_radius_m=rig.horizontal_reach_m() + 0.3)


def _write_truth(truth: Path, body, config: StudioConfig, rig: StudioRig, perf: Performance,  # noqa: ANN001
                 claps: np.ndarray, board_poses: np.ndarray, schedules: dict,
                 performers: tuple[Performance, ...] = ()) -> np.ndarray:
    """The truth files but scene.json and bystander.npz; returns the reference camera's frame times. With
    several ``performers`` each one's files go to ``truth/<id>/`` (:func:`troupe.person_ids`) instead of
    ``truth/``."""
    from mocap_studio.calibration.formats import write_calibration
    from mocap_studio.common.fileio import save_npz_atomic, write_json_atomic
    from mocap_studio.studio.troupe import person_ids

    truth.mkdir(parents=True, exist_ok=True)
    write_calibration(rig.rig, truth / "calibration.toml", {"source": "virtual studio truth", "rig_preset": rig.name})
    ref = rig.cameras[0]
    n_ref = int(np.floor(config.seconds * ref.frame_rate + 1e-9))
    times = np.arange(n_ref) / ref.frame_rate + ref.offset_s
    if performers:
        for pid, one in zip(person_ids(len(performers)), performers, strict=True):
            _write_person_truth(truth / pid, body, config, rig, one, times)
    else:
        _write_person_truth(truth, body, config, rig, perf, times)
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
                                              "motion_source": perf.source,
                                              **({"performers_truth": {
                                                  pid: {"shape": one.shape.tolist(), "motion_source": one.source}
                                                  for pid, one in zip(person_ids(len(performers)), performers,
                                                                      strict=True)}} if performers else {})})
    return times


def _write_person_truth(truth: Path, body, config: StudioConfig, rig: StudioRig, perf: Performance,  # noqa: ANN001
                        times: np.ndarray) -> None:
    """One performer's truth in ``truth``: keypoints3d_<format>.npz of every format, body.npz and (when asked)
    vertices.npy, on the reference camera's frame times ``times``."""
    from mocap_studio.reconstruction.body.fitting import BodyMotion
    from mocap_studio.reconstruction.body.io import save_body_npz
    from mocap_studio.reconstruction.keypoints import Keypoints3D
    from mocap_studio.reconstruction.skeletons import FORMATS

    truth.mkdir(parents=True, exist_ok=True)
    ref = rig.cameras[0]
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


def _sample_bodies(body, perf: Performance, times: np.ndarray):  # noqa: ANN001, ANN202 - BodyOutput
    pose, trans = perf.sample(times)
    return body.evaluate(perf.shape, pose, trans)


def _bystander_vertices(body, bystander: Bystander | None, times: np.ndarray) -> list:  # noqa: ANN001
    """Per common time (N,): the bystander's vertices (V, 3), or None while out of the scene (or without one)."""
    if bystander is None:
        return [None] * len(times)
    present = bystander.present(times)
    out: list = [None] * len(times)
    if present.any():
        verts = _sample_bodies(body, bystander.performance, times[present]).vertices
        for k, v in zip(np.flatnonzero(present), verts, strict=True):
            out[k] = v
    return out


def _sighting(labels: np.ndarray, camera, joints: np.ndarray, label: int = 1) -> tuple[int, np.ndarray]:  # noqa: ANN001
    """(pixels showing the bystander, (J,) bool performer joints whose pixel shows the bystander) of one frame;
    labels (H, W) from render_meshes (0 performer, ``label`` the bystander), joints (J, 3) the performer's."""
    uv = np.round(camera.project(joints)).astype(int)
    inside = camera.in_image(uv)
    hidden = np.zeros(len(joints), bool)
    hidden[inside] = labels[uv[inside, 1], uv[inside, 0]] == label
    return int((labels == label).sum()), hidden


def _render_performance(session, body, perf: Performance, rig: StudioRig, config: StudioConfig,  # noqa: ANN001
                        schedules: dict, progress: ProgressFn | None, scenery: Scenery | None = None,
                        bystander: Bystander | None = None, masks: dict | None = None,
                        others: tuple[Performance, ...] = ()) -> tuple[float, dict]:
    """Render and encode every camera's performance video. Returns (frames per second of rendering, per camera
    the bystander's sightings {"pixels": (N,), "hidden": (N, 24)}; empty without a bystander); ``masks`` gets per
    camera the performer's true mask of every frame at TRUTH_MASK_SCALE (the performer's own pixels, where a
    bystander in front hides him not counted). ``others``: more performers, rendered beside ``perf`` in their
    own clothes (:data:`troupe.PALETTES`)."""
    masks = {} if masks is None else masks
    from mocap_studio.reconstruction.skeletons import SMPL_24
    from mocap_studio.studio.render import BodyRenderer, region_colours
    from mocap_studio.studio.troupe import PALETTES

    colours = region_colours(body.joint_names, body.skinning_weights(), body.rest_mesh(perf.shape))
    other = None if bystander is None else region_colours(
        body.joint_names, body.skinning_weights(), body.rest_mesh(bystander.performance.shape), bystander.palette)
    troupe = [region_colours(body.joint_names, body.skinning_weights(), body.rest_mesh(o.shape),
                             PALETTES[(i + 1) % len(PALETTES)]) for i, o in enumerate(others)]
    sem = [body.semantic_joints[j] for j in SMPL_24.joints]
    total = sum(len(s[0]) for s in schedules.values())
    done, render_s = 0, 0.0
    sightings: dict = {}
    for sc in rig.cameras:
        masks[sc.name] = []
        renderer = BodyRenderer(sc.camera, body.faces, colours, supersample=config.supersample, seed=config.seed,
                                scenery=scenery)
        _, cam_times = schedules[sc.name]
        pixels, hidden = np.zeros(len(cam_times), np.int64), np.zeros((len(cam_times), len(sem)), bool)
        writer = VideoWriter(session.videos_dir / f"{sc.name}.mp4", sc.frame_rate, config.crf)
        ok = False
        try:
            for start in range(0, len(cam_times), 64):
                chunk = cam_times[start:start + 64]
                out = _sample_bodies(body, perf, chunk + sc.offset_s)
                passer = _bystander_vertices(body, bystander, chunk + sc.offset_s)
                crowd = [_sample_bodies(body, o, chunk + sc.offset_s).vertices for o in others]
                for k, t in enumerate(chunk):
                    t0 = time.perf_counter()
                    if passer[k] is None and not others:
                        image, mask = renderer.render(out.vertices[k])
                    else:
                        meshes = [(out.vertices[k], colours)] + [(v[k], c) for v, c in zip(crowd, troupe, strict=True)]
                        if passer[k] is not None:
                            meshes.append((passer[k], other))
                        image, labels = renderer.render_meshes(meshes)
                        if passer[k] is not None:
                            pixels[start + k], hidden[start + k] = _sighting(labels, sc.camera, out.joints[k, sem],
                                                                             len(meshes) - 1)
                        mask = labels == 0
                    render_s += time.perf_counter() - t0
                    masks[sc.name].append(pack_mask(downsample_mask(mask, mask_size(*sc.camera.size, TRUTH_MASK_SCALE))))
                    writer.write(image, float(t))
                    done += 1
                    if progress:
                        progress("rendering the performance", done, total)
            ok = True
        finally:
            writer.close(keep=ok)
        if bystander is not None:
            sightings[sc.name] = {"pixels": pixels, "hidden": hidden}
    return total / max(render_s, 1e-9), sightings


def _write_scene_truth(truth: Path, body, rig: StudioRig, config: StudioConfig, scenery: Scenery | None,  # noqa: ANN001
                       bystander: Bystander | None, sightings: dict, schedules: dict, times: np.ndarray) -> None:
    """scene.json (the set and a summary of the bystander) and, with a bystander, bystander.npz: its shape, pose,
    SMPL-24 joints and BlazePose-33 keypoints on the reference frame times ``times`` (NaN while out of the scene)
    and per camera ``frame_indices__<cam>``, ``pixels__<cam>`` (pixels showing it in each recorded frame) and
    ``hidden_performer_joints__<cam>`` ((N, 24) performer SMPL-24 joints whose pixel shows the bystander)."""
    from mocap_studio.common.fileio import save_npz_atomic, write_json_atomic
    from mocap_studio.reconstruction.skeletons import SMPL_24

    platform = scenery.platform if scenery is not None else None
    scene: dict = {"background": config.background, "floor_z_m": 0.0,
                   "platform": platform.to_json() if platform is not None else None,
                   "performer_stands_at_z_m": platform.height_m if platform is not None else 0.0,
                   "calibration_board": "on the floor at Z = 0 (the last frames of the board recording)",
                   "bystander": None}
    if bystander is not None:
        present = bystander.present(times)
        pose, trans = bystander.performance.sample(times)
        out = body.evaluate(bystander.performance.shape, pose, trans)
        joints = out.joints[:, [body.semantic_joints[j] for j in SMPL_24.joints]]
        blaze = body.keypoints(bystander.performance.shape, pose, trans, "blazepose33")
        joints[~present], blaze[~present] = np.nan, np.nan
        per_camera = {}
        for sc in rig.cameras:
            seen = sightings[sc.name]
            per_camera[f"frame_indices__{sc.name}"] = schedules[sc.name][0]
            per_camera[f"pixels__{sc.name}"] = seen["pixels"]
            per_camera[f"hidden_performer_joints__{sc.name}"] = seen["hidden"]
        save_npz_atomic(truth / "bystander.npz", frame_times=times, present=present, joints_smpl24=joints,
                        keypoints_blazepose33=blaze, shape=bystander.performance.shape, pose_rotvec=pose, trans=trans,
                        **per_camera)
        scene["bystander"] = {**bystander.to_json(times), "cameras": {
            name: {"frames": len(seen["pixels"]), "frames_seen": int((seen["pixels"] > 0).sum()),
                   "frames_hiding_performer_joints": int(seen["hidden"].any(1).sum()),
                   "max_pixels": int(seen["pixels"].max(initial=0))} for name, seen in sightings.items()}}
    write_json_atomic(truth / "scene.json", scene)


TRUTH_MASK_SCALE = 1.0
"""The true masks (truth/masks.npz) are kept at this fraction of each camera's image size: the image's own, as the
detect stage's default ``mask_scale`` (at a quarter, MediaPipe's masks could not be told from the truth at the
outline's tips: their 0.7-0.8 px short heads and soles, ``detect2d.MEDIAPIPE_MASK_BLUR``, were within a quarter
mask's pixel)."""


def _write_truth_masks(truth: Path, rig: StudioRig, schedules: dict, masks: dict) -> None:
    """truth/masks.npz: the performer's true mask per camera and frame (the silhouettes' format), on each
    camera's own clock; cameras of other sizes than the first are left out (one mask size per file)."""
    first = rig.cameras[0].camera.size
    cams = [sc for sc in rig.cameras if tuple(sc.camera.size) == tuple(first) and masks.get(sc.name)]
    if not cams:
        return
    T = max(len(masks[sc.name]) for sc in cams)
    packer = MaskPacker((len(cams), T), mask_size(*first, TRUTH_MASK_SCALE))
    present = np.zeros((len(cams), T), bool)
    times = np.full((len(cams), T), np.nan)
    for i, sc in enumerate(cams):
        n = len(masks[sc.name])
        for t in range(n):
            packer.add_packed((i, t), *masks[sc.name][t])
        present[i, :n] = True
        times[i, :n] = schedules[sc.name][1][:n]
    sizes = np.array([sc.camera.size for sc in cams])
    MaskSet(tuple(sc.name for sc in cams), packer.build(), present, times, TRUTH_MASK_SCALE, sizes).save(
        truth / "masks.npz")


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


def _check_motion(config: StudioConfig) -> None:
    """Fail on unknown exercises or an unreadable BVH before the body model loads."""
    if not config.bvh:
        from mocap_studio.studio.performer import _check_exercises

        _check_exercises(config.motions)
    else:
        load_bvh_motion(config.bvh)


def _write_audio(session, config: StudioConfig, rig: StudioRig, claps: np.ndarray) -> None:  # noqa: ANN001
    session.videos_dir.mkdir(parents=True, exist_ok=True)
    for sc in rig.cameras:
        n = int(round(config.seconds * config.audio_rate_hz))
        samples = clap_audio(np.arange(n) / config.audio_rate_hz + sc.offset_s, claps,
                             seed=config.seed + 11 + rig.names.index(sc.name))
        write_wav(session.audio_path(sc.name), samples, config.audio_rate_hz)


def _plan_bystander(body, config: StudioConfig, rig: StudioRig, scenery: Scenery | None) -> Bystander:  # noqa: ANN001
    """The take's bystander, crossing during the reference camera's recording, clear of the platform."""
    from mocap_studio.studio.bystander import plan_bystander

    platform = scenery.platform if scenery is not None else None
    corner = 0.0 if platform is None else float(np.hypot(max(-platform.x0, platform.x1), max(-platform.y0, platform.y1)))
    start, duration = performance_span(config, rig)
    ref = rig.cameras[0].offset_s
    return plan_bystander(body, rig, start, duration, (ref, ref + config.seconds), config.seed, clear_of_m=corner)


def synthesize(session_dir: str | Path, config: StudioConfig = StudioConfig(), truth_dir: str | Path | None = None,
               progress: ProgressFn | None = None) -> Take:
    """Write a complete synthetic take to ``session_dir`` and its truth to ``truth_dir`` (default
    ``Session.truth_dir``). Raises StudioError / PerformerError / ConfigError with what to change."""
    import tomli_w
    from mocap_studio.calibration.boards import load_board
    from mocap_studio.common.fileio import write_text_atomic
    from mocap_studio.session import Session

    _check_config(config)
    rig = studio_rig(config)
    config = replace(config, seconds=take_seconds(config, rig))  # the length, however it was asked for
    _check_motion(config)
    board = load_board(config.board)
    claps = clap_times(rig, config.seconds, config.claps if config.audio else 0, config.seed)
    session = Session(session_dir)
    truth = Path(truth_dir) if truth_dir is not None else session.truth_dir
    body, shape = _body_and_shape(config)
    perf = make_performance(body, shape, config, rig)
    performers = make_others(body, config, rig, perf) if config.performers > 1 else ()
    perf, others = (performers[0], performers[1:]) if performers else (perf, ())
    scenery = make_scenery(body, perf, config, rig)
    bystander = _plan_bystander(body, config, rig, scenery) if config.bystander else None
    schedules = {sc.name: sc.frame_schedule(config.seconds) for sc in rig.cameras}
    session.root.mkdir(parents=True, exist_ok=True)
    # no name: the take is named after its folder when read (Session.config), never after a temporary folder the
    # take is built in before it is moved into place (the demo builds in "take.partial")
    tables: dict = {"session": {"board": config.board, "frame_rate": rig.cameras[0].frame_rate}}
    if performers:  # detect every performer (and the bystander) and follow them all
        tables["detect"] = {"num_poses": config.performers + int(config.bystander), **CROWD_DETECTION}
        tables["associate"] = {"people": config.performers}
    write_text_atomic(session.config_path, tomli_w.dumps(tables))
    poses = _board_poses(rig, config, board)
    if config.audio:
        _write_audio(session, config, rig, claps)
    masks: dict = {}
    fps, sightings = _render_performance(session, body, perf, rig, config, schedules, progress, scenery, bystander,
                                         masks, others)
    _render_calibration(session, rig, board, poses, config, progress)
    times = _write_truth(truth, body, config, rig, perf, claps, poses, schedules, performers)
    _write_scene_truth(truth, body, rig, config, scenery, bystander, sightings, schedules, times)
    _write_truth_masks(truth, rig, schedules, masks)
    log.info("synthesized %s: %d cameras, %.1f s, render %.1f frames/s", session.root, len(rig.cameras), config.seconds, fps)
    return Take(session.root, truth, rig, perf, claps, fps, scenery, bystander, others)


__all__ = ["StudioConfig", "StudioError", "PerformerError", "Take", "synthesize", "make_performance", "clap_audio",
           "clap_times", "HARSH", "harsh_config", "studio_rig", "take_seconds", "make_scenery", "performance_span"]
