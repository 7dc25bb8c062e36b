"""Small virtual-studio takes for the viewer and live tests (shared, built once per test module), and the
viewer's check in the browser (tests/test_viewer.py on a small take, tests/test_demo.py on the demo take)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

RENDER_S = 2.5  # software WebGL: time for a change to reach the page and be drawn
TARGET_OFFLINE_MM = 40.0  # `mocap live --replay` against the offline triangulation: median joint difference


def rig_toml(name: str, cameras: int, size: tuple[int, int], frame_rate: float, focal_px: float) -> str:
    """A ring rig of ``cameras`` cameras, all in sync except for small offsets."""
    cams = "".join(f'[[cameras]]\nname = "cam_{i + 1}"\noffset_s = {0.011 * i:.3f}\n' for i in range(cameras))
    return f"""name = "{name}"
description = "{cameras} cameras on a ring (viewer tests)"
[layout]
kind = "ring"
radius_m = 4.0
height_m = 2.2
start_deg = 20.0
span_deg = 360.0
look_at_m = [0.0, 0.0, 1.0]
[defaults]
size = [{size[0]}, {size[1]}]
frame_rate = {frame_rate}
focal_px = {focal_px}
distortion = [0.0, 0.0, 0.0, 0.0, 0.0]
{cams}"""


def small_take(base: Path, *, cameras: int = 3, size: tuple[int, int] = (320, 180), seconds: float = 2.0,
               frame_rate: float = 20.0, focal_px: float = 250.0, motions: tuple[str, ...] = ("jumping_jack",),
               glb: bool = True, seed: int = 5):
    """Render a short take; the true calibration as its calibration.toml, the true 3D keypoints as its
    keypoints3d.npz (per-joint error a known ramp), the true body fitted and exported as a skinned GLB."""
    pytest.importorskip("open3d")
    from mocap_studio.reconstruction.keypoints import Keypoints3D, load_keypoints3d
    from mocap_studio.session import Session
    from mocap_studio.stages_synth import run_synth
    from mocap_studio.studio import StudioConfig

    base.mkdir(parents=True, exist_ok=True)
    (base / "rig.toml").write_text(rig_toml(f"viewer_test{cameras}", cameras, size, frame_rate, focal_px))
    config = StudioConfig(rig=str(base / "rig.toml"), motions=motions, seconds=seconds, seed=seed, calibration_views=2,
                          close_ups_per_camera=1, floor_frames=1, claps=1)
    synth = run_synth(base / "take", config)
    session = Session(synth.session_dir)
    shutil.copy(synth.truth_dir / "calibration.toml", session.calibration_path)
    truth = load_keypoints3d(synth.truth_dir / "keypoints3d_blazepose33.npz")
    T, J = truth.xyz.shape[:2]
    error = np.tile(np.linspace(1.0, 20.0, J), (T, 1))  # every colour of the quality scale
    Keypoints3D(truth.xyz, error, np.ones((T, J, cameras), bool), truth.camera_names if len(truth.camera_names) == cameras
                else tuple(f"cam_{i + 1}" for i in range(cameras)), "blazepose33", truth.frame_times).save(
        session.keypoints3d_path)
    if glb:
        anny = pytest.importorskip("mocap_studio.reconstruction.body.anny_model")
        if not anny.anny_cache_ready():
            pytest.skip("the Anny body model cache is not built (see reconstruction/body/cache.py)")
        from mocap_studio.stages_export import ExportConfig, run_export

        shutil.copy(synth.truth_dir / "body.npz", session.body_path)
        run_export(session, ExportConfig(formats=("glb",)))
    return synth, session


def _shot(page, path: Path) -> np.ndarray:
    import cv2

    time.sleep(RENDER_S)
    page.screenshot(path=str(path))
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(int)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).max(axis=-1) > 30


def _quality_pixels(img: np.ndarray) -> np.ndarray:
    """Pixels of the joint quality colours (saturated red / yellow / green, no blue) in the 3D view (the left
    part of the page below the notification, clear of the control panel)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    found = (np.maximum(r, g) > 150) & (b < 80) & (np.abs(r - g) + np.maximum(r, g) - b > 150)
    found[:200] = False
    found[:, 650:] = False
    return found


def check_viewer(session, browser, tmp_path):  # noqa: ANN001
    """`mocap view` on a session's take in the browser: the body, the skeleton and the cameras each change the
    pixels when hidden, and a click on the timeline moves the skeleton and the body (within a minute)."""
    from mocap_studio.viewer.app import TakeViewer
    from mocap_studio.viewer.take import load_take

    start = time.perf_counter()
    scene = load_take(session, max_pictures=4)
    viewer = TakeViewer(scene, port=0)
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.set_default_timeout(20_000)
        page.goto(viewer.url)
        deadline = time.monotonic() + 20
        while not viewer.server.get_clients() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert viewer.server.get_clients(), "the page never connected to the viewer"
        page.get_by_text("frame", exact=True).wait_for()
        full = _shot(page, tmp_path / "full.png")

        viewer.show_body.value = False
        no_body = _shot(page, tmp_path / "no_body.png")
        mesh = _changed(full, no_body)
        assert mesh.sum() > 1500, f"hiding the body changed {mesh.sum()} pixels"

        skeleton = _quality_pixels(no_body)
        assert skeleton.sum() > 150, f"{skeleton.sum()} skeleton-coloured pixels"
        # the skeleton is where the body was drawn
        ys, xs = np.nonzero(mesh)
        box = skeleton[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert box.sum() > 0.6 * skeleton.sum()

        for handle in viewer._frustums.values():
            handle.visible = False
        no_cameras = _shot(page, tmp_path / "no_cameras.png")
        cameras = _changed(no_body, no_cameras)
        assert cameras.sum() > 1500, f"hiding the cameras changed {cameras.sum()} pixels"
        for handle in viewer._frustums.values():
            handle.visible = True

        # scrub: click the timeline slider in the page at 80 % of its length
        first = viewer.frame
        assert first == viewer.first_full_frame() and np.isfinite(scene.xyz[first]).all(axis=-1).mean() > 0.85
        slider = page.get_by_role("slider").first
        box = slider.bounding_box()
        track = page.locator(".mantine-Slider-track").first.bounding_box()
        page.mouse.click(track["x"] + 0.8 * track["width"], box["y"] + box["height"] / 2)
        deadline = time.monotonic() + 10
        while viewer.frame == first and time.monotonic() < deadline:
            time.sleep(0.1)
        expected = 0.8 * (scene.num_frames - 1)
        assert abs(viewer.frame - expected) <= 0.1 * scene.num_frames, (viewer.frame, expected)
        later = _shot(page, tmp_path / "later.png")
        moved = _quality_pixels(later) ^ skeleton
        assert moved.sum() > 0.3 * skeleton.sum(), "the skeleton did not move when the timeline was scrubbed"
        rot0, pos0 = scene.body.joint_poses(first)
        rot1, pos1 = scene.body.joint_poses(viewer.frame)
        np.testing.assert_allclose(viewer._body.bones[0].position, pos1[0], atol=1e-6)
        assert np.abs(pos1 - pos0).max() > 0.1
    finally:
        viewer.stop()
    seconds = time.perf_counter() - start
    print(f"viewer test: {seconds:.1f} s")
    assert seconds < 60
