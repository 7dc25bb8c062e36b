"""The harsh virtual studio (issue 13, real footage): options that make a take as hard as a real phone recording,
each checked numerically: in sync without audio, 100 frames at 60 fps, portrait phones, a raised platform, a
textured room, a bystander, and whole-body left/right swaps in synthetic 2D keypoints."""

import json
import math

import av
import numpy as np
import pytest
from mocap_studio.cli import build_parser
from mocap_studio.commands.synth import config_from_args
from mocap_studio.reconstruction.synthetic import apply_lr_swaps, lr_swap_runs, make_scene
from mocap_studio.studio import StudioConfig, load_rig_preset
from mocap_studio.studio.studio import HARSH, PLATFORM_RANGE_M, StudioError, harsh_config, studio_rig, take_seconds


# ---------------------------------------------------------------------------------------------------
# options and presets (no rendering)
# ---------------------------------------------------------------------------------------------------
def test_portrait_phone_preset_is_placed_like_real_phones():
    rig = load_rig_preset("phones4_portrait")
    sizes = [sc.camera.size for sc in rig.cameras]
    assert sorted(sizes) == [(1080, 1920)] * 3 + [(1088, 1920)]
    assert all(sc.frame_rate == 60.0 for sc in rig.cameras)
    for sc in rig.cameras:
        c = sc.camera
        assert 2.99 <= np.hypot(*c.center[:2]) <= 4.01 and 1.6 <= c.center[2] <= 1.9, (c.name, c.center)
        assert abs(c.K[0, 0] - 1680) < 10
        # a person 1.9 m tall standing on a 0.3 m platform at the centre is wholly in every portrait view
        body = np.array([[x * w, y * w, z] for x in (-1, 1) for y in (-1, 1) for z, w in ((0.3, 0.35), (2.2, 0.2))])
        assert c.in_image(c.project(body)).all(), c.name
    # rolled phones: the image's x axis leaves the horizontal by the preset's roll (phone_4: -24 degrees)
    tilt = {sc.name: math.degrees(math.asin(sc.camera.R[0, 2])) for sc in rig.cameras}
    assert tilt["phone_4"] == pytest.approx(-24.0, abs=3.0)
    assert tilt["phone_1"] == pytest.approx(12.0, abs=3.0)


def test_in_sync_rig_has_no_offsets_nor_drops_and_frame_rate_is_settable():
    config = StudioConfig(rig="phones3", in_sync=True, frame_rate=60.0, frames=100)
    rig = studio_rig(config)
    assert [sc.offset_s for sc in rig.cameras] == [0.0] * 3
    assert all(sc.dropped_frames == () and sc.frame_rate == 60.0 for sc in rig.cameras)
    assert take_seconds(config, rig) == pytest.approx(100 / 60)
    assert all(len(sc.frame_schedule(take_seconds(config, rig))[0]) == 100 for sc in rig.cameras)
    # without the options, the preset's offsets, drops and mixed rates stay
    plain = studio_rig(StudioConfig(rig="phones3"))
    assert any(sc.offset_s != 0 for sc in plain.cameras) and {sc.frame_rate for sc in plain.cameras} == {30.0, 60.0}


def test_harsh_config_and_its_command_line():
    config = harsh_config(seed=5)
    for key, value in HARSH.items():
        assert getattr(config, key) == value
    assert PLATFORM_RANGE_M[0] <= config.platform_height_m <= PLATFORM_RANGE_M[1]
    assert harsh_config(seed=6).platform_height_m != config.platform_height_m  # drawn by the seed
    args = build_parser().parse_args(["synth", "out", "--harsh", "--seed", "5", "--platform", "0.25",
                                      "--no-bystander", "--scale", "0.5"])
    parsed = config_from_args(args)
    assert parsed == harsh_config(seed=5, platform_height_m=0.25, bystander=False, scale=0.5)
    plain = config_from_args(build_parser().parse_args(["synth", "out", "--in-sync", "--no-audio", "--frames", "100",
                                                        "--fps", "60", "--background", "textured"]))
    assert plain == StudioConfig(in_sync=True, audio=False, frames=100, frame_rate=60.0, background="textured")
    assert config_from_args(build_parser().parse_args(["synth", "out"])) == StudioConfig()


def test_bad_harsh_options_are_named(tmp_path):
    from mocap_studio.studio import synthesize

    with pytest.raises(StudioError, match="platform height must be within 0-1 m"):
        synthesize(tmp_path / "a", StudioConfig(platform_height_m=1.5))
    with pytest.raises(StudioError, match="background must be one of"):
        synthesize(tmp_path / "b", StudioConfig(background="jungle"))
    with pytest.raises(StudioError, match="frames and frame_rate must not be negative"):
        synthesize(tmp_path / "c", StudioConfig(frames=-1))


# ---------------------------------------------------------------------------------------------------
# left/right swaps in synthetic 2D keypoints
# ---------------------------------------------------------------------------------------------------
def test_lr_swaps_match_their_truth():
    clean = make_scene(num_frames=100, num_cameras=4, frame_rate=60.0, seed=3)
    scene = make_scene(num_frames=100, num_cameras=4, frame_rate=60.0, seed=3, swap_fraction=0.3)
    swapped = scene.swapped
    assert swapped.shape == (4, 100) and not clean.swapped.any()
    per_camera = swapped.sum(1)
    assert (per_camera > 0).sum() == 1 and 30 <= per_camera.max() <= 45  # ~30 of 100 frames in one view
    flip = scene.keypoints.format.flip_permutation
    xy, xy0 = scene.keypoints.xy, clean.keypoints.xy
    # swapped views hold the clean detections with every label swapped; the rest is untouched
    assert np.array_equal(xy[swapped], xy0[swapped][:, flip], equal_nan=True)
    assert np.array_equal(xy[~swapped], xy0[~swapped], equal_nan=True)
    assert np.array_equal(scene.keypoints.confidence[swapped], clean.keypoints.confidence[swapped][:, flip])
    # the truth of swaps is exactly where the labels moved: a swapped view puts a left joint on the right one
    left = scene.keypoints.format.index("left_wrist")
    c = int(np.argmax(per_camera))
    right_uv = scene.rig.cameras[c].project(scene.truth[:, flip[left]])
    left_uv = scene.rig.cameras[c].project(scene.truth[:, left])
    ok = clean.inliers[c, :, left] & clean.inliers[c, :, flip[left]] & (np.linalg.norm(left_uv - right_uv, axis=-1) > 30)
    near_right = np.linalg.norm(xy[c, :, left] - right_uv, axis=-1) < 10
    assert ok.sum() > 30 and (ok & swapped[c]).sum() > 10 and np.array_equal(near_right[ok], swapped[c][ok])
    # a joint read from its mirror is no inlier; the nose (no mirror) keeps its flag
    nose = scene.keypoints.format.index("nose")
    assert not scene.inliers[c][swapped[c]][:, left].any()
    assert np.array_equal(scene.inliers[c][swapped[c]][:, nose], clean.inliers[c][swapped[c]][:, nose])
    # runs, not single frames
    runs = np.flatnonzero(np.diff(np.r_[0, swapped[c].astype(int), 0]) == 1)
    assert len(runs) <= 8


def test_lr_swap_runs_and_their_checks():
    runs = lr_swap_runs(6, 200, 0.2, cameras=2, run_frames=(4, 8), seed=1)
    assert (runs.sum(1) > 0).sum() == 2 and all(40 <= n <= 48 for n in runs.sum(1) if n)
    assert np.array_equal(runs, lr_swap_runs(6, 200, 0.2, cameras=2, run_frames=(4, 8), seed=1))
    with pytest.raises(ValueError, match="fraction must be within 0-1"):
        lr_swap_runs(4, 10, 1.5)
    scene = make_scene(num_frames=5, num_cameras=2, seed=0)
    with pytest.raises(ValueError, match=r"swapped must have shape \(2, 5\)"):
        apply_lr_swaps(scene.keypoints, np.zeros((2, 4), bool))


# ---------------------------------------------------------------------------------------------------
# the set and the bystander's walk (no video)
# ---------------------------------------------------------------------------------------------------
def test_walk_keeps_the_planted_foot_still_and_moves_along_its_heading():
    from mocap_studio.studio.bystander import walk_motion

    heading = math.radians(30)
    motion = walk_motion(3.0, heading, seed=2, rate_hz=60.0)
    pos = motion.world_positions_m()
    feet = {s: pos[:, [motion.joint_index(f"{s}_ankle"), motion.joint_index(f"{s}_foot")]] for s in ("left", "right")}
    low = np.minimum(feet["left"][..., 2].min(1), feet["right"][..., 2].min(1))
    assert np.allclose(low, low[0], atol=1e-6)  # always a foot on the floor
    left_down = feet["left"][..., 2].min(1) <= feet["right"][..., 2].min(1)
    toe = np.where(left_down[:, None], feet["left"][:, 1, :2], feet["right"][:, 1, :2])
    same = left_down[1:] == left_down[:-1]
    slide = np.linalg.norm(np.diff(toe, axis=0), axis=-1)[same] * 60
    assert np.median(slide) < 1e-6  # the planted foot does not slide
    travel = motion.root_translation_m[-1, :2] - motion.root_translation_m[0, :2]
    assert 0.8 < np.linalg.norm(travel) / 3.0 < 1.5  # a walking pace, m/s
    assert math.degrees(abs(math.atan2(travel[1], travel[0]) - heading)) < 5


def test_textured_room_is_textured_and_clutter_keeps_clear_of_the_cameras():
    pytest.importorskip("open3d")
    import cv2
    from mocap_studio.studio.render import BodyRenderer
    from mocap_studio.studio.scenery import Platform, Scenery

    rig = load_rig_preset("phones4_portrait").scaled(0.25)
    faces = np.array([[0, 1, 2]])
    colours = np.zeros((3, 3))
    scenery = Scenery("textured", Platform(0.2, -0.6, 0.6, -0.6, 0.6), seed=1, clear_radius_m=4.3)
    for lo, hi, _, kind in scenery.boxes():
        if kind == "clutter":
            assert np.hypot(*np.clip(np.zeros(2), lo[:2], hi[:2])) >= 4.3
    sharpness = {}
    for name, set_ in (("plain", None), ("textured", scenery)):
        r = BodyRenderer(rig.cameras[0].camera, faces, colours, seed=1, scenery=set_)
        grey = cv2.cvtColor((r.background * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        sharpness[name] = cv2.Laplacian(grey, cv2.CV_64F).var()
        assert np.isfinite(r.floor_depth).mean() > (0.99 if set_ else 0.3)
        if set_ is not None:  # the static depth at the platform's centre is the distance to its top, not the floor
            top = np.array([0.0, 0.0, 0.2])
            uv = np.round(r.camera.project(top[None])[0]).astype(int)
            assert r.floor_depth[uv[1], uv[0]] == pytest.approx(np.linalg.norm(top - r.camera.center), rel=0.01)
    assert sharpness["textured"] > 3 * sharpness["plain"], sharpness


# ---------------------------------------------------------------------------------------------------
# one small harsh take (the body model's cache is needed)
# ---------------------------------------------------------------------------------------------------
HARSH_TAKE = harsh_config(seed=2, scale=0.25, calibration_views=8, close_ups_per_camera=1, floor_frames=1)


@pytest.fixture(scope="module")
def harsh(tmp_path_factory):
    anny = pytest.importorskip("mocap_studio.reconstruction.body.anny_model")
    pytest.importorskip("open3d")
    if not anny.anny_cache_ready():
        pytest.skip("the Anny body model cache is not built (see reconstruction/body/cache.py)")
    from mocap_studio.stages_synth import run_synth

    root = tmp_path_factory.mktemp("harsh") / "take"
    return run_synth(root, HARSH_TAKE)


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(float(f.pts * f.time_base), f.to_ndarray(format="bgr24")) for f in container.decode(stream)]


def test_harsh_take_is_in_sync_without_audio_portrait_and_short(harsh):
    from mocap_studio.session import Session

    session = Session(harsh.session_dir)
    timing = json.loads((harsh.truth_dir / "timing.json").read_text())
    assert timing["claps_common_s"] == [] and len(harsh.claps_s) == 0
    assert not list(session.videos_dir.glob("*.wav"))
    assert session.config().frame_rate == 60.0
    times = {}
    for sc in harsh.rig.cameras:
        cam = timing["cameras"][sc.name]
        assert cam["offset_s"] == 0.0 and cam["dropped_frames"] == [] and cam["frame_rate"] == 60.0
        assert not session.audio_path(sc.name).exists()
        frames = _decode(session.videos_dir / f"{sc.name}.mp4")
        times[sc.name] = np.array([t for t, _ in frames])
        h, w = frames[0][1].shape[:2]
        assert (w, h) == tuple(cam["size"]) and h > w  # portrait
    assert len({tuple(harsh.rig[n].camera.size) for n in times}) == 2  # one phone records 1088 wide
    ref = times[harsh.rig.names[0]]
    assert len(ref) == 100 and np.allclose(np.diff(ref), 1 / 60, atol=1e-4)
    for t in times.values():
        assert np.array_equal(t, ref)  # every camera's frames at the same instants


def test_harsh_take_stands_on_the_platform(harsh):
    from mocap_studio.reconstruction.body.anny_model import AnnyBody
    from mocap_studio.reconstruction.body.io import load_body_npz
    from mocap_studio.reconstruction.keypoints import load_keypoints3d
    from mocap_studio.studio.performer import sole_heights

    scene = json.loads((harsh.truth_dir / "scene.json").read_text())
    height = HARSH_TAKE.platform_height_m
    assert scene["platform"]["height_m"] == height and scene["performer_stands_at_z_m"] == height
    assert scene["floor_z_m"] == 0.0
    lo, hi = np.array(scene["platform"]["min_xy_m"]), np.array(scene["platform"]["max_xy_m"])
    assert (hi - lo >= HARSH_TAKE.platform_size_m - 1e-9).all()
    truth = load_body_npz(harsh.truth_dir / "body.npz")
    soles = sole_heights(AnnyBody(), truth.shape, truth.pose_rotvec, truth.trans)
    assert soles.min() > height - 0.005 and np.percentile(soles, 10) < height + 0.01  # on it, not floating
    kp = load_keypoints3d(harsh.truth_dir / "keypoints3d_blazepose33.npz")
    feet = [kp.format.index(n) for n in ("left_heel", "right_heel", "left_foot_index", "right_foot_index")]
    assert np.nanmin(kp.xyz[:, feet, 2]) > height - 0.01
    assert (kp.xyz[:, feet, :2] > lo - 1e-6).all() and (kp.xyz[:, feet, :2] < hi + 1e-6).all()
    # the calibration board still lies on the floor: its last pose has its corners at Z = 0
    poses = np.load(harsh.truth_dir / "board_poses.npz")["world_from_board"]
    assert abs(poses[-1, 2, 3]) < 1e-9 and np.allclose(poses[-1, 2, :3], [0, 0, -1])


def test_harsh_take_has_a_bystander_where_the_truth_says(harsh):
    """The frame where the truth counts most bystander pixels, re-rendered with and without the bystander: those
    pixels (as many as the truth counts) show the bystander in the video; the crossed camera sees the bystander
    hide some of the performer's joints."""
    from mocap_studio.reconstruction.body.anny_model import AnnyBody
    from mocap_studio.session import Session
    from mocap_studio.studio.render import BodyRenderer, region_colours

    scene = json.loads((harsh.truth_dir / "scene.json").read_text())["bystander"]
    truth = np.load(harsh.truth_dir / "bystander.npz")
    assert truth["present"].all() and scene["reference_frames_present"] == 100  # a short take: in it throughout
    assert np.isfinite(truth["joints_smpl24"]).all() and truth["joints_smpl24"].shape == (100, 24, 3)
    crossed = scene["camera_crossed"]
    assert scene["cameras"][crossed]["frames_hiding_performer_joints"] > 0
    for name, cam in scene["cameras"].items():
        hidden = truth[f"hidden_performer_joints__{name}"]
        assert (truth[f"pixels__{name}"][hidden.any(1)] > 0).all()  # hidden only where it is seen
        assert cam["frames_seen"] == int((truth[f"pixels__{name}"] > 0).sum())
    body = AnnyBody()
    perf, other = harsh.performance, harsh.bystander
    colours = region_colours(body.joint_names, body.skinning_weights(), body.rest_mesh(perf.shape))
    session = Session(harsh.session_dir)
    for name in (crossed, harsh.rig.names[(harsh.rig.names.index(crossed) + 2) % 4]):
        sc = harsh.rig[name]
        video = _decode(session.videos_dir / f"{name}.mp4")
        pixels = truth[f"pixels__{name}"]
        k = int(np.argmax(pixels))
        renderer = BodyRenderer(sc.camera, body.faces, colours, seed=HARSH_TAKE.seed, scenery=harsh.scenery)
        at = np.array([video[k][0]])
        alone, _ = renderer.render(body.evaluate(perf.shape, *perf.sample(at)).vertices[0])
        # the bystander's pixels in that frame, as the take rendered them
        other_colours = region_colours(body.joint_names, body.skinning_weights(), body.rest_mesh(other.performance.shape),
                                       other.palette)
        both, labels = renderer.render_meshes([(body.evaluate(perf.shape, *perf.sample(at)).vertices[0], colours),
                                               (body.evaluate(other.performance.shape, *other.performance.sample(at)).vertices[0],
                                                other_colours)])
        shown = labels == 1
        assert shown.sum() == pixels[k] > 500, (name, shown.sum(), pixels[k])
        frame = video[k][1].astype(int)
        # there the video shows the bystander, not what is behind (the encoder blurs fine texture elsewhere alike)
        like_both = (np.abs(frame - both.astype(int)).max(-1) <= 30)[shown].mean()
        unlike_alone = (np.abs(frame - alone.astype(int)).max(-1) > 30)[shown].mean()
        assert like_both > 0.85 and unlike_alone > 0.6, (name, like_both, unlike_alone)
