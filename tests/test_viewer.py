"""`mocap view`: the take viewer (viser) on a small virtual-studio take, opened in headless Chromium.

The screenshots are checked by their pixels: the body mesh, the skeleton and the cameras are each found as the
pixels that change when that one layer is hidden, and scrubbing the timeline (a click on the slider in the page)
moves the skeleton and the body.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from viewer_takes import check_viewer, small_take


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    synth, session = small_take(tmp_path_factory.mktemp("viewer"))
    return {"synth": synth, "session": session}


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


def test_viewer_shows_mesh_skeleton_cameras_and_scrubs(take, browser, tmp_path):
    check_viewer(take["session"], browser, tmp_path)


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
