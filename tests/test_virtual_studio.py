"""The virtual studio: rig presets, exercises, bad inputs, and one small synthesized take checked against
its own truth (silhouette, timestamps, claps, calibration back to the true rig, determinism)."""

import json
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from mocap_studio.cli import main
from mocap_studio.common.config import ConfigError
from mocap_studio.studio import PerformerError, StudioConfig, exercise_motion, load_bvh_motion, load_rig_preset
from mocap_studio.studio.rigs import rig_presets


def test_rig_presets_load_with_offsets_and_drops():
    assert {"ring4", "ring8", "phones3", "phones4_portrait"} <= set(rig_presets())
    ring8 = load_rig_preset("ring8")
    assert len(ring8.cameras) == 8 and ring8.cameras[0].offset_s == 0.0
    phones = load_rig_preset("phones3")
    assert sorted({c.frame_rate for c in phones.cameras}) == [30.0, 60.0]
    cam = phones["phone_2"]
    idx, times = cam.frame_schedule(3.0)
    assert len(idx) == 180 - 3 and 70 not in idx and np.allclose(times, idx / 60.0)
    # every camera looks at the volume: the origin's vertical line projects inside the image
    for c in ring8.rig:
        assert c.in_image(c.project(np.array([[0.0, 0.0, 1.0]])))[0]


def test_bad_rig_inputs_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no rig preset named 'ring5'.*ring4"):
        load_rig_preset("ring5")
    bad = tmp_path / "rig.toml"
    bad.write_text('[layout]\nkind = "ring"\n[defaults]\nsize = [64, 48]\nframe_rate = 30.0\nfocal_px = 50.0\n'
                   '[[cameras]]\nname = "a"\nofset_s = 0.1\n')
    with pytest.raises(ConfigError, match=r"rig.toml \[\[cameras\]\] #1: unknown key\(s\) \['ofset_s'\]"):
        load_rig_preset(bad)


def test_exercises_keep_the_feet_on_the_floor():
    motion = exercise_motion(["squat", "jumping_jack", "lunge", "arm_circles", "walk_on_the_spot"], 5.0, seed=1)
    pos = motion.world_positions_m()
    assert motion.num_frames == 601 and np.isfinite(pos).all()
    feet = [motion.joint_index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    assert np.allclose(pos[:, feet, 2].min(1), pos[0, feet, 2].min(), atol=1e-6)
    assert np.ptp(pos[:, 0, 2]) > 0.2  # the squat moves the hips down
    again = exercise_motion(["squat", "jumping_jack", "lunge", "arm_circles", "walk_on_the_spot"], 5.0, seed=1)
    assert np.array_equal(again.local_rotmat, motion.local_rotmat)
    with pytest.raises(PerformerError, match=r"unknown exercise\(s\) \['burpee'\]; choose from"):
        exercise_motion(["squat", "burpee"], 2.0)


def test_a_performer_sways_but_never_vibrates():
    # the studio's "little life" was once white noise per 120 Hz sample on every joint: the hips shook 2-3 cm
    # from one 30 fps frame to the next (median acceleration 28 m/s^2), which no body does, and the trajectory
    # filter and the fit's smoothing were scored against that shaking truth
    from mocap_studio.studio.performer import LIFE_RAD, life

    sway = life(np.random.default_rng(5), (2401, 24, 3), 120.0)[::4]  # 20 s, seen at 30 frames a second
    assert 0.7 * LIFE_RAD < sway.std() < 1.3 * LIFE_RAD
    assert np.std(sway[2:] - 2 * sway[1:-1] + sway[:-2]) < 0.05 * LIFE_RAD  # white noise: 2.4 x LIFE_RAD
    motion = exercise_motion(["squat", "arm_circles"], 4.0, seed=3)
    pos = motion.world_positions_m()[::4]
    hips = [motion.joint_index(n) for n in ("left_hip", "right_hip")]
    acc = np.linalg.norm(pos[2:, hips] - 2 * pos[1:-1, hips] + pos[:-2, hips], axis=-1) * 30.0**2
    assert np.median(acc) < 4.0, f"the hips accelerate at {np.median(acc):.1f} m/s^2 (median)"


def test_unreadable_bvh_is_named(tmp_path):
    bad = tmp_path / "broken.bvh"
    bad.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0\n")
    with pytest.raises(PerformerError, match="broken.bvh: cannot use this BVH file"):
        load_bvh_motion(bad)
    with pytest.raises(PerformerError, match="missing.bvh: no such BVH file"):
        load_bvh_motion(tmp_path / "missing.bvh")


def test_synth_command_rejects_bad_inputs(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "a"), "--rig", "ring5"]) == 1
    assert "no rig preset named 'ring5'" in capsys.readouterr().err.replace("\n", " ")
    assert main(["synth", str(tmp_path / "b"), "--motion", "squat,moonwalk"]) == 1
    assert "unknown exercise(s) ['moonwalk']" in capsys.readouterr().err.replace("\n", " ")
    assert main(["synth", str(tmp_path / "c"), "--bvh", str(tmp_path / "none.bvh")]) == 1
    assert "no such BVH file" in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "a").exists()


# ---------------------------------------------------------------------------------------------------
# one small take (the body model's cache is needed)
# ---------------------------------------------------------------------------------------------------
CONFIG = StudioConfig(rig="ring4", motions=("squat", "jumping_jack"), seconds=1.5, seed=3, scale=0.625,
                      calibration_views=80, close_ups_per_camera=6, claps=2)


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    anny = pytest.importorskip("mocap_studio.reconstruction.body.anny_model")
    pytest.importorskip("open3d")
    if not anny.anny_cache_ready():
        pytest.skip("the Anny body model cache is not built (see reconstruction/body/cache.py)")
    from mocap_studio.stages_synth import run_synth

    root = tmp_path_factory.mktemp("synth") / "take"
    return run_synth(root, CONFIG)


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(float(f.pts * f.time_base), f.to_ndarray(format="bgr24")) for f in container.decode(stream)]


def test_session_folder_is_complete_and_timestamps_match_the_truth(take):
    from mocap_studio.session import Session

    session = Session(take.session_dir)
    assert list(session.performance_sources()) == list(take.rig.names)
    assert list(session.calibration_sources()) == list(take.rig.names)
    assert session.config().board == CONFIG.board
    timing = json.loads((take.truth_dir / "timing.json").read_text())
    for sc in take.rig.cameras:
        truth = timing["cameras"][sc.name]
        assert truth["offset_s"] == sc.offset_s and truth["dropped_frames"] == list(sc.dropped_frames)
        times = [t for t, _ in _decode(session.videos_dir / f"{sc.name}.mp4")]
        expected = np.array(truth["frame_times_s"])
        assert len(times) == len(expected) == int(CONFIG.seconds * sc.frame_rate) - len(
            [d for d in sc.dropped_frames if d < CONFIG.seconds * sc.frame_rate])
        assert np.allclose(times, expected, atol=1e-4)
    for name in ("smpl24", "blazepose33", "coco17", "halpe26", "body25"):
        assert (take.truth_dir / f"keypoints3d_{name}.npz").exists()
    assert (take.truth_dir / "calibration.toml").exists() and (take.truth_dir / "body.npz").exists()


def test_claps_arrive_delayed_by_each_cameras_offset(take):
    from mocap_studio.session import Session

    session = Session(take.session_dir)
    for sc in take.rig.cameras:
        with wave.open(str(session.audio_path(sc.name))) as w:
            rate = w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32767
        loud = np.abs(samples) > 0.05
        first = np.flatnonzero(loud)[0] / rate
        expected = take.claps_s[0] - sc.offset_s  # common = camera + offset
        assert abs(first - expected) < 1e-3, (sc.name, first, expected)


def test_truth_joints_land_on_the_rendered_body(take):
    """Silhouette check: every camera's frames; SMPL-24 body joints projected with the true camera fall on
    pixels that differ from the empty studio (the rendered body)."""
    from mocap_studio.reconstruction.body.anny_model import AnnyBody
    from mocap_studio.reconstruction.keypoints import load_keypoints3d
    from mocap_studio.reconstruction.skeletons import SMPL_24
    from mocap_studio.studio.render import BodyRenderer
    from mocap_studio.studio.studio import make_performance

    body = AnnyBody()
    perf = make_performance(body, take.performance.shape, CONFIG, take.rig)
    assert np.array_equal(perf.pose_rotvec, take.performance.pose_rotvec)  # deterministic from the seed
    # the truth file is the performance at the reference camera's frame times
    truth = load_keypoints3d(take.truth_dir / "keypoints3d_smpl24.npz")
    pose, trans = perf.sample(truth.frame_times)
    joints = body.evaluate(perf.shape, pose, trans).joints[:, [body.semantic_joints[j] for j in SMPL_24.joints]]
    assert np.abs(joints - truth.xyz).max() < 1e-5
    hits = []
    for sc in take.rig.cameras:
        empty = BodyRenderer(sc.camera, body.faces, np.zeros((body.num_vertices, 3)), seed=CONFIG.seed).background
        empty_bgr = np.clip(empty[..., ::-1] * 255 + 0.5, 0, 255)
        frames = _decode(take.session_dir / "videos" / f"{sc.name}.mp4")[::4]
        times = np.array([t for t, _ in frames]) + sc.offset_s
        pose, trans = perf.sample(times)
        xyz = body.evaluate(perf.shape, pose, trans).joints[:, [body.semantic_joints[j] for j in SMPL_24.joints]]
        uv = np.round(sc.camera.project(xyz)).astype(int)
        for (_, image), points in zip(frames, uv, strict=True):
            mask = np.abs(image.astype(float) - empty_bgr).max(-1) > 25
            import cv2

            mask = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            hits.extend(mask[points[:, 1], points[:, 0]])
    assert np.mean(hits) > 0.97, np.mean(hits)


def test_board_recording_calibrates_back_to_the_true_rig(take):
    from mocap_studio.calibration.compare import compare_rigs
    from mocap_studio.calibration.formats import read_calibration
    from mocap_studio.session import Session

    session = Session(take.session_dir)
    assert main(["calibrate", str(take.session_dir)]) == 0
    cmp = compare_rigs(read_calibration(session.calibration_path), read_calibration(take.truth_dir / "calibration.toml"))
    # 800x450 H.264 images and 110 board views; full-size takes do better (README)
    assert cmp.centre_error_m.max() < 0.04, cmp.summary()
    assert cmp.rotation_error_deg.max() < 1.0, cmp.summary()


# ---------------------------------------------------------------------------------------------------
# BVH skeletons of every kind perform, soles on the floor, and the rigs' cameras see the performer
# ---------------------------------------------------------------------------------------------------
SHARED_BVH = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap_files" / "bvh"
SHARED_FILES = ("AV_8Walk_Meredith_HVHA_Rep1.bvh", "cmu_12_01_walk.bvh", "diem-a_anger_bvh_example.bvh",
                "mixamo_rig_test_freebvh.bvh", "mocapbank_test.bvh")


def _write_bvh(path, joints):
    """A 3-frame BVH: ``joints`` is [(name, parent index, (x, y, z) offset in cm, Y up)], the root first."""
    lines = ["HIERARCHY"]
    depth = {}

    def block(j):
        name, _, off = joints[j]
        pad = "  " * depth[j]
        head = "ROOT" if j == 0 else "JOINT"
        chans = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if j == 0 else "3 Zrotation Xrotation Yrotation"
        lines.extend([f"{pad}{head} {name}", pad + "{", f"{pad}  OFFSET {off[0]} {off[1]} {off[2]}", f"{pad}  CHANNELS {chans}"])
        kids = [k for k, (_, p, _) in enumerate(joints) if p == j]
        for k in kids:
            depth[k] = depth[j] + 1
            block(k)
        if not kids:
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0 5 0", pad + "  }"])
        lines.append(pad + "}")

    depth[0] = 0
    block(0)
    channels = 6 + 3 * (len(joints) - 1)
    lines += ["MOTION", "Frames: 3", "Frame Time: 0.0333333"]
    lines += [" ".join(["0", "95", "0"] + ["0"] * (channels - 3))] * 3
    path.write_text("\n".join(lines) + "\n")
    return path


UE_LIKE = [  # Unreal-style names (thigh_l, calf_l, upperarm_l, ...), no preset has them
    ("pelvis", -1, (0, 0, 0)), ("spine_01", 0, (0, 10, 0)), ("spine_02", 1, (0, 15, 0)), ("spine_03", 2, (0, 15, 0)),
    ("neck_01", 3, (0, 15, 0)), ("head", 4, (0, 10, 0)),
    ("clavicle_l", 3, (5, 12, 0)), ("upperarm_l", 6, (12, 0, 0)), ("lowerarm_l", 7, (28, 0, 0)), ("hand_l", 8, (25, 0, 0)),
    ("clavicle_r", 3, (-5, 12, 0)), ("upperarm_r", 10, (-12, 0, 0)), ("lowerarm_r", 11, (-28, 0, 0)),
    ("hand_r", 12, (-25, 0, 0)),
    ("thigh_l", 0, (9, -5, 0)), ("calf_l", 14, (0, -42, 0)), ("foot_l", 15, (0, -40, 0)), ("ball_l", 16, (0, -7, 12)),
    ("thigh_r", 0, (-9, -5, 0)), ("calf_r", 18, (0, -42, 0)), ("foot_r", 19, (0, -40, 0)), ("ball_r", 20, (0, -7, 12)),
]


def test_unknown_bvh_naming_is_mapped_by_aliases_and_topology(tmp_path):
    from mocap_studio.export.rig import REQUIRED

    motion, rig = load_bvh_motion(_write_bvh(tmp_path / "ue_like.bvh", UE_LIKE))
    assert set(REQUIRED) <= set(rig.bones)
    assert rig.bones["left_collar"] == "clavicle_l" and rig.bones["left_shoulder"] == "upperarm_l"
    assert rig.bones["right_hip"] == "thigh_r" and rig.bones["right_foot"] == "ball_r"
    assert rig.bones["neck"] == "neck_01" and rig.bones["spine3"] == "spine_03" and rig.bones["pelvis"] == "pelvis"
    # centimetres guessed from the leg length; the rest pose stands along +Z
    rest = motion.rest_positions_m()
    assert rest[motion.joint_index("head"), 2] - rest[motion.joint_index("foot_l"), 2] == pytest.approx(1.52, abs=0.01)


def test_bvh_without_legs_is_refused_naming_the_bones_and_the_file(tmp_path):
    legless = [j for j in UE_LIKE if not j[0].startswith(("thigh", "calf", "foot", "ball"))]
    with pytest.raises(PerformerError, match=r"legless.bvh: .*no humanoid bone found for \['left_hip', 'right_hip', "
                                             r"'left_knee', 'right_knee', 'left_ankle', 'right_ankle'\]"):
        load_bvh_motion(_write_bvh(tmp_path / "legless.bvh", legless))


@pytest.fixture(scope="module")
def anny():
    anny_model = pytest.importorskip("mocap_studio.reconstruction.body.anny_model")
    if not anny_model.anny_cache_ready():
        pytest.skip("the Anny body model cache is not built (see reconstruction/body/cache.py)")
    body = anny_model.AnnyBody()
    return body, body.default_shape()


@pytest.mark.parametrize("name", SHARED_FILES)
def test_every_shared_bvh_performs_with_the_soles_on_the_floor(anny, name):
    """Every BVH in ../shared performs (CMU, Mixamo, no neck, Z up, 'LeftShoulder' as the upper arm); the
    lowest sole vertex of the posed mesh touches Z = 0 at the source's foot contacts and never goes below."""
    from mocap_studio.export.foot_ik import contact_frames
    from mocap_studio.studio.performer import perform, place_on_floor, sole_heights

    path = SHARED_BVH / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data folder is not mounted next to the repository)")
    body, shape = anny
    source, source_rig = load_bvh_motion(path)
    source = place_on_floor(source.slice_frames(0, min(source.num_frames, int(2 * source.frame_rate))))
    perf = perform(body, shape, source, source_rig)
    assert np.isfinite(perf.pose_rotvec).all() and np.isfinite(perf.trans).all()
    heights = sole_heights(body, shape, perf.pose_rotvec, perf.trans)
    contact = contact_frames(source, source_rig)
    contact = contact["left"] | contact["right"]
    assert contact.mean() > 0.5, name
    assert np.abs(heights[contact]).max() < 0.01, (name, heights[contact].min(), heights[contact].max())
    assert heights.min() > -0.003, (name, heights.min())
    # upright: the head well above the pelvis, the pelvis above the ankles, over the whole clip
    joints = body.evaluate(shape, perf.pose_rotvec[::10], perf.trans[::10]).joints
    head, pelvis, ankle = (joints[:, body.semantic_joints[j], 2] for j in ("head", "pelvis", "left_ankle"))
    assert (head - pelvis > 0.4).all() and (pelvis - ankle > 0.5).all(), name


@pytest.mark.parametrize("preset", ["ring8", "phones3", "phones4_portrait"])
def test_rig_cameras_see_the_performer(anny, preset):
    """One tiny render per camera of the ring8, phones3 and phones4_portrait presets: every body joint of an
    exercise projects into the image onto rendered body pixels."""
    pytest.importorskip("open3d")
    from mocap_studio.export.rig import load_rig
    from mocap_studio.studio.performer import perform
    from mocap_studio.studio.render import BodyRenderer, region_colours

    body, shape = anny
    perf = perform(body, shape, exercise_motion(["jumping_jack"], 0.5, rate_hz=30.0), load_rig("smpl24"))
    out = body.evaluate(shape, perf.pose_rotvec[-1:], perf.trans[-1:])
    joints = out.joints[0, [body.semantic_joints[j] for j in ("head", "pelvis", "left_wrist", "right_wrist",
                                                               "left_ankle", "right_ankle")]]
    colours = region_colours(body.joint_names, body.skinning_weights(), body.rest_mesh(shape))
    rig = load_rig_preset(preset).scaled(0.2)
    for sc in rig.cameras:
        _, mask = BodyRenderer(sc.camera, body.faces, colours).render(out.vertices[0])
        uv = np.round(sc.camera.project(joints)).astype(int)
        assert sc.camera.in_image(uv).all(), (preset, sc.name, uv)
        import cv2

        mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert mask[uv[:, 1], uv[:, 0]].mean() >= 5 / 6, (preset, sc.name)
        assert mask.mean() > 0.01, (preset, sc.name, mask.mean())
