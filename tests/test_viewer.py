"""`mocap view`: the take viewer (viser) on a small virtual-studio take, opened in headless Chromium.

The screenshots are checked by their pixels: the body mesh, the skeleton and the cameras are each found as the
pixels that change when that one layer is hidden, and scrubbing the timeline (a click on the slider in the page)
moves the skeleton and the body.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from viewer_takes import small_take

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--disable-gpu-sandbox"]
RENDER_S = 2.5  # software WebGL: time for a change to reach the page and be drawn


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    synth, session = small_take(tmp_path_factory.mktemp("viewer"))
    return {"synth": synth, "session": session}


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (make system-deps)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield b
        finally:
            b.close()


def test_glb_body_follows_the_keypoints(take):
    """The export's skinned GLB, read back and posed by the viewer, covers the true joints on every frame."""
    from mocap_studio.reconstruction.keypoints import load_keypoints3d
    from mocap_studio.reconstruction.skeletons import get_format
    from mocap_studio.viewer.take import load_take

    scene = load_take(take["session"], max_pictures=2)
    assert scene.body is not None and not scene.missing
    truth = load_keypoints3d(take["session"].keypoints3d_path)
    fmt = get_format(truth.skeleton)
    body_joints = [fmt.index(n) for n in ("left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder",
                                          "right_shoulder")]
    worst = 0.0
    for f in range(0, scene.num_frames, 5):
        v = scene.body.vertices_at(f)
        d = np.linalg.norm(v[None] - truth.xyz[f, body_joints][:, None], axis=-1).min(axis=1)
        worst = max(worst, float(d.max()))
    assert worst < 0.12, f"a joint is {worst:.3f} m from the nearest vertex of the posed mesh"
    assert [c.images.shape[0] for c in scene.cameras] == [2, 2, 2]


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


def test_viewer_shows_mesh_skeleton_cameras_and_scrubs(take, browser, tmp_path):
    _check_viewer(take["session"], browser, tmp_path)


@pytest.mark.skipif(os.environ.get("MOCAP_DEMO_CHECK") != "1", reason="the demo take is checked with MOCAP_DEMO_CHECK=1 "
                    "(make test sets it)")
@pytest.mark.demo_take
def test_viewer_on_the_demo_take(browser, tmp_path):
    from mocap_studio.demo import demo_root

    take = demo_root() / "take"
    if not (take / "export").is_dir():
        pytest.skip(f"{take} has no export: run `mocap demo` (tests/test_demo.py does)")
    _check_viewer(take, browser, tmp_path)


def _check_viewer(session, browser, tmp_path):
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


def test_view_of_a_folder_without_calibration_says_what_to_run(tmp_path):
    from mocap_studio.cli import main
    from mocap_studio.viewer.take import load_take

    (tmp_path / "take").mkdir()
    (tmp_path / "take" / "session.toml").write_text("[session]\n")
    assert main(["view", str(tmp_path / "take"), "--port", "0", "--seconds", "0"]) == 1
    with pytest.raises(FileNotFoundError, match="calibration.toml is missing; run `mocap calibrate"):
        load_take(tmp_path / "take")


def _body_pixels(img: np.ndarray) -> np.ndarray:
    """The static page's body colour (a light blue, shaded)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return (b > r + 45) & (b > 90) & (g > r)


def test_report_shows_the_animated_body_from_disk(take, browser, tmp_path):
    """report/index.html opened from file:// with no server: its iframe draws the body, and the body moves
    between two times."""
    import cv2
    from mocap_studio.report import write_report

    start = time.perf_counter()
    index = write_report(take["session"], overrides={"overlays": False, "strip_frames": 1})
    scene_page = index.parent / "scene3d.html"
    text = index.read_text()
    assert 'src="scene3d.html"' in text and "mocap view" in text and "<script" not in text
    assert scene_page.stat().st_size < 3_000_000
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(20_000)
    page.goto(index.as_uri())
    frame = page.frame_locator("#scene3d")
    page.locator("#scene3d").scroll_into_view_if_needed()
    inner = next(f for f in page.frames if f.url.endswith("scene3d.html"))
    inner.wait_for_function("window.scene3d && window.scene3d.drawn > 1")
    shots = []
    for t in (0.2, 1.4):
        inner.evaluate(f"scene3d.pause(); scene3d.setTime({t})")
        inner.wait_for_function(f"Math.abs(scene3d.time - {t}) < 1e-6")
        time.sleep(0.8)
        path = tmp_path / f"scene_{t}.png"
        frame.locator("canvas").screenshot(path=str(path))
        shots.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(int))
    bodies = [_body_pixels(s) for s in shots]
    assert min(b.sum() for b in bodies) > 2000, [int(b.sum()) for b in bodies]
    moved = (bodies[0] ^ bodies[1]).sum()
    assert moved > 0.2 * bodies[0].sum(), f"the body barely moved: {moved} of {bodies[0].sum()} pixels changed"
    assert inner.evaluate("scene3d.frame") == int(np.argmin(np.abs(_times(take["session"]) - 1.4)))
    print(f"report 3D test: {time.perf_counter() - start:.1f} s")


def _times(session) -> np.ndarray:
    from mocap_studio.reconstruction.keypoints import load_keypoints3d

    return load_keypoints3d(session.keypoints3d_path).frame_times
