"""`mocap demo` end to end: the demo take (4 cameras 1280x720, 6 s, board recording, audio claps, cameras out of
sync) through every stage, scored against the virtual studio's truth with the issue's bounds.

It renders the take once into .cache/demo (about 3 minutes on 2 cores, reused by `make demo` and later runs)
and runs the whole pipeline (about 2-3 minutes), so it runs where MOCAP_DEMO_CHECK=1 is set: `make test` sets
it; a plain `pytest` skips it. Every test that reads the demo take is here (the live replay and the viewer on it
too), so that make test's workers, which keep a module on one worker, run them after the take is built.
"""

from __future__ import annotations

import json
import os

import pytest
from mocap_studio.cli import main
from mocap_studio.demo import TARGETS, demo_root
from viewer_takes import TARGET_OFFLINE_MM, check_viewer

pytestmark = pytest.mark.skipif(
    os.environ.get("MOCAP_DEMO_CHECK") != "1",
    reason="the whole demo (~6 min on 2 cores) runs with MOCAP_DEMO_CHECK=1 (make test sets it)",
)


@pytest.fixture(scope="module")
def scores() -> dict:
    if os.environ.get("MOCAP_BLENDER_CHECK") == "1":  # as `make demo` does: Blender first, for the export preview
        from mocap_studio.export.blender_preview import PreviewUnavailable, blender_python

        try:
            blender_python(install=True)
        except PreviewUnavailable:
            pass  # the preview test below says why
    assert main(["demo"]) == 0
    return json.loads((demo_root() / "take" / "report" / "demo.json").read_text())


def test_demo_completes_and_writes_every_output(scores):
    take = demo_root() / "take"
    run = json.loads((take / "report" / "run.json").read_text())
    assert [o["status"] for o in run["outcomes"]] and all(o["status"] in ("ran", "up to date") for o in run["outcomes"])
    for name in (
        "calibration.toml",
        "sync.json",
        "keypoints2d.npz",
        "keypoints3d.npz",
        "body.npz",
        "measurements.json",
        "report/index.html",
    ):
        assert (take / name).exists(), name
    exported = {p.suffix for p in (take / "export").iterdir()}
    assert {".bvh", ".fbx", ".glb", ".usdz", ".obj", ".trc"} <= exported
    # the fit's per-take landmark offsets are in its report and on the page
    offsets = json.loads((take / "report" / "fit.json").read_text())["figures"]["marker_offsets_mm"]
    assert "left_ear" in offsets and len(offsets["left_ear"]) == 3
    assert "Detector landmarks against the body model" in (take / "report" / "index.html").read_text()
    print("demo stage seconds:", scores["stage_seconds"], "pipeline", scores["pipeline_seconds"], "s")


@pytest.mark.parametrize("figure", sorted(TARGETS))
def test_demo_meets_the_bound(scores, figure):
    # measured: camera centres 3.2 mm, sync 0.005 ms, MPJPE 14.0 mm, per vertex 24.2 mm, height 4.1 mm (with the
    # silhouettes, DEMO_FIT; keypoints alone 29.3 mm and 21.5 mm)
    print(f"{figure}: {scores[figure]:.2f} (bound {TARGETS[figure]})")
    assert scores[figure] <= TARGETS[figure]


def test_demo_report_shows_blender_importing_the_exports(scores):
    from mocap_studio.export.blender_preview import PreviewUnavailable, blender_python

    try:
        blender_python()
    except PreviewUnavailable as e:
        pytest.skip(str(e))
    take = demo_root() / "take"
    export = json.loads((take / "report" / "export.json").read_text())["figures"]
    if "picture" not in export.get("blender_preview", {}):  # exported before Blender was installed: export again
        assert main(["run", str(take), "--from", "export", "--overwrite", "export,report"]) == 0
        export = json.loads((take / "report" / "export.json").read_text())["figures"]
    preview = export["blender_preview"]
    assert preview["fbx_bvh_difference_mm"] < 0.1, preview
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(take / preview["picture"]).convert("RGB"), float)
    frames = len(preview["frames"])
    for k, panel in enumerate(np.array_split(rgb, frames, axis=1)):  # one panel per frame, left to right
        blue = (panel[..., 2] - panel[..., 0] > 40).mean()  # the FBX character
        orange = (panel[..., 0] - panel[..., 2] > 40).mean()  # the BVH character
        assert blue > 0.002 and orange > 0.002, f"panel {k}: FBX {blue:.4f}, BVH {orange:.4f} of the pixels"
    assert 'id="blender-preview"' in (take / "report" / "index.html").read_text()


def test_replay_of_the_demo_take_matches_its_offline_triangulation(scores, tmp_path):
    """Two of the demo's four 1280x720 cameras, 3 s, through `mocap live --replay`: the live skeletons against the
    demo's own (four-camera) triangulation. Speed is printed, not judged (the targets are for 640x360; the speed
    is judged in tests/test_live.py)."""
    out = tmp_path / "live"
    load = os.getloadavg()
    take = demo_root() / "take"
    assert main(["live", str(out), "--replay", str(take), "--cameras", "cam_1,cam_2", "--seconds", "3", "--no-view"]) == 0
    f = json.loads((out / "report" / "live.json").read_text())["figures"]
    print("demo replay:", json.dumps(f), "load average at start:", load)
    assert not f["errors"] and f["skeletons"] >= 15
    assert f["offline_difference"]["mean_joint_mm"]["median"] <= TARGET_OFFLINE_MM, f["offline_difference"]


def test_viewer_on_the_demo_take(scores, browser, tmp_path):
    check_viewer(demo_root() / "take", browser, tmp_path)
