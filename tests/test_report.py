"""mocap report: the take report on a small virtual-studio take (every section, repetitions against the
performer's own truth, overlay videos, offline page rendered by headless Chromium), repetition counting on
exercise motions with a known number of repetitions, and a session whose stages have not run.

The take: 3 cameras at 320x180, 20 fps, 5.3 s of one squat then jumping jacks, synchronized from its
audio. Its 2D keypoints are the true joints projected through each camera at that camera's own frame times
(detection works at this size, about 0.7 px, but costs 14 s here and is tested elsewhere), then the real
triangulation stage; body.npz is the true body (fitting takes a minute and is tested elsewhere).
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from mocap_studio.report.analysis import RepetitionConfig, analyse, count_cycles, joint_angles

CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("overview", "calibration", "sync", "detection", "triangulation", "bones", "trajectories", "angles",
            "body", "export", "overlays", "warnings")
PERIOD_S = {"squat": 2.4, "jumping_jack": 1.2}
"""Seconds per repetition of the virtual studio's exercises (mocap/studio/performer.py), before
each take's personal tempo factor."""
RIG = """name = "report_test3"
description = "3 small cameras on a ring (report test)"
[layout]
kind = "ring"
radius_m = 4.0
height_m = 2.2
start_deg = 30.0
span_deg = 360.0
look_at_m = [0.0, 0.0, 1.0]
[defaults]
size = [320, 180]
frame_rate = 20.0
focal_px = 250.0
distortion = [-0.12, 0.06, 0.0, 0.0, 0.0]
[[cameras]]
name = "cam_1"
offset_s = 0.0
[[cameras]]
name = "cam_2"
offset_s = 0.037
dropped_frames = [41]
[[cameras]]
name = "cam_3"
offset_s = -0.052
"""


def true_repetitions(names, duration_s, seed, window_s):
    """Repetitions the performer does inside ``window_s`` (start, end) on the exercise clock, computed from
    the exercises' definition: exercise k runs from k * segment with phase 0 (standing), its tempo scaled by
    the k-th draw of ``uniform(0.92, 1.08)`` from ``default_rng(seed)`` (as ``exercise_motion`` draws it).

    Returns ({exercise: count}, ambiguous): a repetition counts when its deepest point and the standing
    moments on both sides lie in the window (or the depth there is under 15 %); ``ambiguous`` counts
    repetitions cut by the window, for which no count is right."""
    rng = np.random.default_rng(seed)
    segment = duration_s / len(names)
    counts, ambiguous = {}, 0
    for k, name in enumerate(names):
        period = PERIOD_S[name] / rng.uniform(0.92, 1.08)
        lo, hi = k * segment, (k + 1) * segment
        a, b = max(lo, window_s[0]), min(hi, window_s[1])

        def depth(t, lo=lo, period=period):
            return 0.5 - 0.5 * np.cos(2 * np.pi * (t - lo) / period)

        counts[name] = 0
        for n in range(int(segment / period) + 2):
            deep = lo + (n + 0.5) * period
            if not a <= deep <= b:
                continue
            start, end = max(lo + n * period, a), min(lo + (n + 1) * period, b)
            if depth(start) < 0.15 and depth(end) < 0.15:
                counts[name] += 1
            else:
                ambiguous += 1
    return counts, ambiguous


# ---------------------------------------------------------------------------------------------------
# angles and repetition counting without a take
# ---------------------------------------------------------------------------------------------------
def test_joint_angles_of_a_known_pose():
    from mocap_studio.reconstruction.skeletons import COCO_17

    xyz = np.full((1, 17, 3), np.nan)
    put = {"left_hip": (0.1, 0, 1.0), "right_hip": (-0.1, 0, 1.0), "left_shoulder": (0.2, 0, 1.5),
           "right_shoulder": (-0.2, 0, 1.5), "left_knee": (0.1, -0.4, 1.0), "left_ankle": (0.1, -0.4, 0.6),
           "right_knee": (-0.1, 0, 0.55), "right_ankle": (-0.1, 0, 0.1), "left_elbow": (0.5, 0, 1.5),
           "left_wrist": (0.5, -0.3, 1.5), "right_elbow": (-0.2, 0, 1.2), "right_wrist": (-0.2, 0, 0.9)}
    for name, p in put.items():
        xyz[0, COCO_17.index(name)] = p
    a = {k: float(v[0]) for k, v in joint_angles(xyz, "coco17", np.zeros(1)).items()}
    # the body faces -Y with its left towards +X: the left thigh is forward and level, the shank down
    assert a["hip_flexion_left"] == pytest.approx(90) and a["knee_flexion_left"] == pytest.approx(90)
    assert a["hip_flexion_right"] == pytest.approx(0) and a["knee_flexion_right"] == pytest.approx(0)
    assert a["shoulder_abduction_left"] == pytest.approx(90) and a["elbow_flexion_left"] == pytest.approx(90)
    assert a["shoulder_elevation_right"] == pytest.approx(0) and a["spine_flexion"] == pytest.approx(0)
    with pytest.raises(ValueError, match=r"xyz must have shape \(T, 17, 3\) for coco17"):
        joint_angles(np.zeros((3, 18, 3)), "coco17", np.zeros(3))


def test_hysteresis_counts_whole_cycles_only():
    t = np.arange(0, 10.6, 0.05)
    signal = 50 + 50 * np.sin(2 * np.pi * t / 2.0)  # starts mid-way up and ends at a top: two cycles in part
    intervals, partial = count_cycles(signal, t, enter=80, exit=20)
    assert len(intervals) == 4 and partial == 2  # the first (under way) and the last (still open)
    assert np.allclose(intervals[:, 1], [2.5, 4.5, 6.5, 8.5], atol=0.05)
    gap = signal.copy()
    gap[(t > 4.2) & (t < 5.0)] = np.nan  # a gap over a repetition's top: that one is not counted
    assert len(count_cycles(gap, t, 80, 20)[0]) == 3
    with pytest.raises(ValueError, match="enter .* must be greater than exit"):
        count_cycles(signal, t, enter=20, exit=80)


@pytest.mark.parametrize("seed", range(6))
def test_repetitions_of_exercise_motions_match_their_truth(seed):
    """The exercises on the SMPL-24 skeleton, whole clips: every unambiguous count is exact."""
    from mocap_studio.reconstruction.skeletons import SMPL_24
    from mocap_studio.studio import exercise_motion

    names = ["squat", "jumping_jack"]
    checked = 0
    for duration in (5.0, 9.6, 14.0):
        truth, ambiguous = true_repetitions(names, duration, seed, (0.0, duration))
        if ambiguous:
            continue
        motion = exercise_motion(names, duration, seed=seed)
        xyz = motion.world_positions_m()[:, [motion.joint_index(j) for j in SMPL_24.joints]]
        found = analyse(xyz, "smpl24", np.arange(len(xyz)) / motion.frame_rate).repetitions
        assert {k: r.count for k, r in found.items()} == truth, (seed, duration)
        checked += 1
    assert checked >= 1


def test_repetition_config_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="squat_enter_deg must be greater than squat_exit_deg"):
        RepetitionConfig(squat_enter_deg=10, squat_exit_deg=20)


# ---------------------------------------------------------------------------------------------------
# a session whose stages have not run
# ---------------------------------------------------------------------------------------------------
def test_report_of_an_empty_session_says_what_to_run(tmp_path):
    from mocap_studio.cli import main

    (tmp_path / "session.toml").write_text('[session]\nname = "empty"\n')
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report" / "index.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in text
    assert text.count('data-state="not-run"') >= 8
    assert f"Run `mocap calibrate {tmp_path.resolve()}`" in text and "mocap triangulate" in text
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["figures"]["sections"]["angles"] == "not run"
    assert main(["report", str(tmp_path / "nowhere")]) == 1


def test_unreadable_file_is_shown_not_fatal(tmp_path):
    from mocap_studio.report import write_report

    (tmp_path / "keypoints3d.npz").write_bytes(b"not an npz")
    text = write_report(tmp_path).read_text()
    assert "keypoints3d.npz" in text and 'class="error"' in text


# ---------------------------------------------------------------------------------------------------
# the small take
# ---------------------------------------------------------------------------------------------------
def _project_truth(session, truth_dir):
    """keypoints2d.npz from the true joints, as ``mocap detect`` would lay it out: row k is each camera's
    k-th frame (a dropped frame a missing row), the true joints at that frame's common time projected
    through the true camera, with 0.5 px noise."""
    from mocap_studio.calibration.formats import read_calibration
    from mocap_studio.reconstruction.keypoints import Keypoints2D, load_keypoints3d
    from mocap_studio.report.overlay import interpolate_keypoints

    truth = load_keypoints3d(truth_dir / "keypoints3d_blazepose33.npz")
    rig = read_calibration(truth_dir / "calibration.toml")
    timing = json.loads((truth_dir / "timing.json").read_text())["cameras"]
    rows = max(max(c["frame_indices"]) for c in timing.values()) + 1
    rng = np.random.default_rng(0)
    xy = np.full((len(rig.names), rows, truth.num_joints, 2), np.nan)
    for c, name in enumerate(rig.names):
        cam = timing[name]
        idx, times = np.array(cam["frame_indices"]), np.array(cam["frame_times_s"])
        # held at the truth's ends (a camera may start a few ms before the reference camera)
        common = np.clip(times + cam["offset_s"], truth.frame_times[0], truth.frame_times[-1])
        xyz = interpolate_keypoints(truth.xyz, truth.frame_times, common)
        xy[c, idx] = rig[name].project(xyz) + rng.normal(0, 0.5, (len(idx), truth.num_joints, 2))
    conf = np.where(np.isfinite(xy).all(-1), 0.9, 0.0)
    rate = timing[rig.names[0]]["frame_rate"]
    Keypoints2D(xy, conf, rig.names, "blazepose33", np.arange(rows) / rate).save(session.keypoints2d_path)


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    import time

    anny = pytest.importorskip("mocap_studio.reconstruction.body.anny_model")
    pytest.importorskip("open3d")
    if not anny.anny_cache_ready():
        pytest.skip("the Anny body model cache is not built (see reconstruction/body/cache.py)")
    from mocap_studio.reconstruction.body.io import write_obj
    from mocap_studio.reconstruction.body.measurements import measure_body
    from mocap_studio.report import write_report
    from mocap_studio.session import Session
    from mocap_studio.stages_capture import run_sync
    from mocap_studio.stages_keypoints import run_triangulate
    from mocap_studio.stages_synth import run_synth
    from mocap_studio.studio import StudioConfig

    base = tmp_path_factory.mktemp("report")
    (base / "rig.toml").write_text(RIG)
    config = StudioConfig(rig=str(base / "rig.toml"), motions=("squat", "jumping_jack"), seconds=5.3, seed=3,
                          calibration_views=2, close_ups_per_camera=1, floor_frames=1, claps=2)
    synth = run_synth(base / "take", config)
    session = Session(synth.session_dir)
    shutil.copy(synth.truth_dir / "calibration.toml", session.calibration_path)
    run_sync(session)
    _project_truth(session, synth.truth_dir)
    run_triangulate(session)
    shutil.copy(synth.truth_dir / "body.npz", session.body_path)
    body = anny.AnnyBody()
    (session.root / "measurements.json").write_text(json.dumps(measure_body(body, synth.performance.shape).to_json()))
    write_obj(session.root / "body_rest.obj", body.rest_mesh(synth.performance.shape), body.faces)
    from mocap_studio.stages_export import ExportConfig, run_export

    run_export(session, ExportConfig(formats=("bvh", "trc")))
    calls = []
    start = time.perf_counter()
    path = write_report(session, progress=lambda label, done, total: calls.append((label, done, total)))
    return {"synth": synth, "config": config, "session": session, "html": path, "seconds": time.perf_counter() - start,
            "progress": calls}


def test_report_is_self_contained_with_every_section(take):
    text = take["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the page must not reach the network"
    assert "http://" not in text and "https://" not in text and "<script" not in text
    for section in SECTIONS:
        assert f'<section id="{section}"' in text
    assert 'data-state="not-run"' not in text
    for plot in ("plot-camera-layout", "plot-sync", "plot-detection", "plot-reprojection", "plot-bones",
                 "plot-trajectories", "plot-angles", "plot-reps-squat", "plot-reps-jumping_jack", "plot-body"):
        assert f'id="{plot}"' in text, plot
    assert text.count('class="frame"') == 3 * 4  # a strip of 4 frames per camera
    assert "cam_2: 1 frame(s) dropped" in text  # the rig drops one frame of cam_2
    report = json.loads((take["session"].report_dir / "report.json").read_text())
    assert set(report["figures"]["sections"].values()) == {"ok"}
    assert report["figures"]["html_bytes"] < 3_000_000
    assert take["progress"] and take["progress"][-1][0] == "overlay cam_3"


def test_repetitions_match_the_performers_truth(take):
    """Counts on the triangulated keypoints against the exercises' definition over the same time span."""
    from mocap_studio.reconstruction.keypoints import load_keypoints3d

    synth, config = take["synth"], take["config"]
    clock = synth.performance.times_s  # the exercise clock starts at the performance's first instant
    kp = load_keypoints3d(take["session"].keypoints3d_path)
    window = (kp.frame_times[0] - clock[0], kp.frame_times[-1] - clock[0])
    truth, ambiguous = true_repetitions(config.motions, clock[-1] - clock[0], config.seed, window)
    assert ambiguous == 0 and truth == {"squat": 1, "jumping_jack": 2}
    report = json.loads((take["session"].report_dir / "report.json").read_text())
    assert {k: v["count"] for k, v in report["figures"]["repetitions"].items()} == truth


def test_overlay_videos_decode_and_show_the_body(take):
    session = take["session"]
    for name, source in session.performance_sources().items():
        path = session.report_dir / "overlays" / f"{name}.mp4"
        with av.open(str(path)) as out, av.open(str(source)) as src:
            drawn = [f.to_ndarray(format="bgr24") for f in out.decode(out.streams.video[0])]
            plain = [f.to_ndarray(format="bgr24") for f in src.decode(src.streams.video[0])]
        assert len(drawn) == len(plain) and drawn[0].shape == plain[0].shape == (180, 320, 3)
        # the mesh (yellow) and the skeleton change the frames where the performer is
        middle = len(drawn) // 2
        changed = np.abs(drawn[middle].astype(int) - plain[middle].astype(int)).max(-1) > 40
        assert 200 < changed.sum() < 0.3 * changed.size, (name, changed.sum())


def _screenshot(html: Path, png: Path, profile: Path) -> np.ndarray:
    import cv2

    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--window-size=1400,4000", f"--screenshot={png}", html.as_uri()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.exists(), f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    return cv2.imread(str(png))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (make system-deps)")
def test_page_renders_offline_in_headless_chromium(take, tmp_path):
    """Screenshot the page, and the same page with its images hidden (same layout): the pixels that differ
    are the images. Each such region must be a real picture (varied pixels), not a broken-image icon."""
    import cv2

    html = take["html"]
    shot = _screenshot(html, tmp_path / "page.png", tmp_path / "profile")
    hidden_html = html.with_name("hidden_images.html")
    hidden_html.write_text(html.read_text().replace("</style>", "img{visibility:hidden}</style>", 1))
    try:
        hidden = _screenshot(hidden_html, tmp_path / "hidden.png", tmp_path / "profile")
    finally:
        hidden_html.unlink()
    assert shot.shape == hidden.shape == (4000, 1400, 3)
    diff = (np.abs(shot.astype(int) - hidden.astype(int)).max(-1) > 0).astype(np.uint8)
    diff = cv2.morphologyEx(diff, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(diff)
    boxes = [s for s in stats[1:] if s[2] > 150 and s[3] > 100]  # x, y, w, h, area
    assert len(boxes) >= 6, f"only {len(boxes)} images rendered in the first 4000 px"
    for x, y, w, h, _ in boxes:
        region = shot[y:y + h, x:x + w].astype(float)
        assert region.std() > 10, f"blank image area at x={x} y={y} ({w}x{h})"
        assert len(np.unique(region.reshape(-1, 3), axis=0)) > 50, f"flat image area at x={x} y={y}"
    # the first plot (the camera layout) is where the page puts it: inside the calibration section
    assert any(y < 1500 for _, y, _, _, _ in boxes)


def test_report_checks_flag_out_of_range_figures_and_stale_stages():
    """Figures outside their normal range become warnings (never "every check passed"); a stage older than one
    it reads is named; a joint angle jumping 100 degrees in a frame is named; in-range figures say nothing."""
    import numpy as np
    from mocap_studio.report.checks import angle_jump_checks, figure_checks, freshness_checks

    good = {
        "detect": {"figures": {"per_camera": {"cam01": {"frames_detected": 0.99}}}, "written": "2026-01-01T10:00:00+0000"},
        "triangulate": {"figures": {"fraction_triangulated": 0.98, "mean_cameras_used": 3.6,
                                    "mean_reprojection_error_px": 3.0, "raw_bone_length_variation": 0.02,
                                    "raw_jitter_mean_acceleration_m_s2": 30.0, "jitter_mean_acceleration_m_s2": 20.0,
                                    "per_camera": {"cam01": {"used_fraction": 0.9}},
                                    "per_joint": {"nose": {"triangulated": 1.0}}},
                        "written": "2026-01-01T10:01:00+0000"},
        "fit": {"figures": {"keypoint_residual_median_mm": 12.0, "keypoint_residual_p95_mm": 40.0,
                            "foot_sliding_mm_s": 5.0, "foot_flips": 0}, "written": "2026-01-01T10:02:00+0000"},
    }
    assert figure_checks(good, cameras=4) == [] and freshness_checks(good) == []
    bad = json.loads(json.dumps(good))
    bad["detect"]["figures"]["per_camera"]["cam01"]["frames_detected"] = 0.19
    bad["triangulate"]["figures"].update(mean_cameras_used=1.7, raw_bone_length_variation=0.19,
                                         raw_jitter_mean_acceleration_m_s2=394.0)
    bad["fit"]["figures"].update(keypoint_residual_median_mm=44.0, foot_flips=9)
    bad["detect"]["written"] = "2026-01-01T10:05:00+0000"  # detect re-run after triangulate
    texts = [t for t, _, _ in figure_checks(bad, cameras=4) + freshness_checks(bad)]
    for expected in ("camera cam01: the performer was kept in only 19 %", "from 1.7 cameras", "vary by 19 %",
                     "20x as jittery", "44 mm (median)", "foot flips: 9", "stage triangulate is older than detect"):
        assert any(expected in t for t in texts), (expected, texts)
    times = np.arange(100) / 60.0
    smooth = {"knee": np.linspace(0, 90, 100)}
    assert angle_jump_checks(smooth, times) == []
    jumpy = {"knee": np.where(np.arange(100) == 50, 100.0, 0.0)}
    assert "jumps by more than 20 degrees" in angle_jump_checks(jumpy, times)[0][0]
