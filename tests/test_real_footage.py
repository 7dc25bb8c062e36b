"""Issue 13, real footage: `mocap run` on takes as hard as real phone recordings, with no manual step.

1. A harsh virtual-studio take (`mocap synth --harsh`: 4 portrait phones, 100 frames at 60 fps, recorded in
   sync with no audio, a raised platform, a textured room, a bystander who hides the performer from one phone
   for a while), at half size, through `mocap run` with only videos/, the board recording and session.toml:
   scored against its truth (sync, limbs, ground, flips, report honesty). Seed 8: a take the development did
   not look at (seeds 5, 21 and 33 were used for it).
2. Pose2Sim's multi-person demo (real footage: 4 phones, 1088x1920, in sync, no audio, two people and a
   bystander; its Qualisys calibration imported with `mocap calibrate --import`), where installed by
   `make bench-setup`: `mocap run` completes, says how it synchronized, and its report does not call the take
   clean. (Its single-person demo and checkerboard photos are kept aside for acceptance: not used here.)

Both run the whole pipeline (about 2-4 minutes each on 2 cores), so they run where MOCAP_DEMO_CHECK=1 is set,
as `make test` does; a plain `pytest` skips them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from mocap_studio.cli import main
from mocap_studio.session import Session

pytestmark = pytest.mark.skipif(
    os.environ.get("MOCAP_DEMO_CHECK") != "1",
    reason="whole takes through `mocap run` (~5 min on 2 cores) run with MOCAP_DEMO_CHECK=1 (make test sets it)",
)

LIMBS = [f"{side}_{j}" for side in ("left", "right") for j in ("shoulder", "elbow", "wrist", "knee", "ankle")]


@pytest.fixture(scope="module")
def harsh(tmp_path_factory) -> Session:
    from mocap_studio.studio.studio import harsh_config, synthesize

    root = tmp_path_factory.mktemp("harsh") / "take"
    synthesize(root, harsh_config(8, scale=0.5))
    assert main(["run", str(root)]) == 0
    return Session(root)


def test_in_sync_take_without_audio_is_synchronized_without_a_manual_step(harsh):
    from mocap_studio.capture.sync import read_sync

    offsets = read_sync(harsh.sync_path)
    report = harsh.read_stage_report("sync")
    for c, o in offsets.items():
        # recorded in sync: either offsets of zero on the recordings' evidence, or sure epipolar offsets near 0
        assert o.method in ("zero-evident", "epipolar"), (c, o)
        assert abs(o.offset_s) * 60 < 0.5, (c, o)
    if any(o.method == "zero-evident" for o in offsets.values()):
        assert any("offsets set to zero" in w and "equal frame counts" in w for w in report["warnings"])


def test_limbs_against_the_truth(harsh):
    from mocap_studio.demo import to_truth_world
    from mocap_studio.reconstruction.keypoints import load_keypoints3d

    est = load_keypoints3d(harsh.keypoints3d_path)
    truth = load_keypoints3d(harsh.truth_dir / "keypoints3d_blazepose33.npz")
    R, t = to_truth_world(harsh)
    idx = [est.format.index(n) for n in LIMBS]
    err = 1000 * np.linalg.norm(est.xyz[:, idx] @ R.T + t - truth.xyz[: est.num_frames, idx], axis=-1)
    worst = np.nanmax(err, axis=1)
    print(f"harsh take limbs: mean {np.nanmean(err):.1f} mm, frames with a limb > 150 mm {(worst > 150).sum()}, "
          f"missing {100 * np.isnan(err).mean():.1f} %")
    assert np.nanmean(err) < 40
    assert (worst > 150).sum() <= 3
    assert np.isnan(err).mean() < 0.15


def test_report_is_honest_about_the_take(harsh):
    page = (harsh.root / "report" / "index.html").read_text()
    report = json.loads((harsh.root / "report" / "report.json").read_text())
    # the bystander hides the performer from one phone: that camera is named, the take is not called clean
    assert report["warnings"]
    assert "every check passed" not in page


def _pose2sim_demo() -> Path | None:
    try:
        import Pose2Sim
    except ImportError:
        return None
    root = Path(Pose2Sim.__file__).parent / "Demo_MultiPerson"
    return root if (root / "videos").is_dir() else None


def test_pose2sim_multi_person_demo_runs_end_to_end(tmp_path):
    demo = _pose2sim_demo()
    if demo is None:
        pytest.skip("Pose2Sim's Demo_MultiPerson is not installed (`make bench-setup` installs the pose2sim wheel)")
    take = tmp_path / "take"
    shutil.copytree(demo / "videos", take / "videos")
    assert main(["calibrate", str(take), "--import", str(demo / "calibration" / "Calib.qca.txt")]) == 0
    assert main(["run", str(take)]) == 0
    session = Session(take)
    sync = json.loads(session.sync_path.read_text())["cameras"]
    assert all(abs(c["offset_s"]) * 60 < 0.5 for c in sync.values())
    tri = session.read_stage_report("triangulate")["figures"]
    assert tri["fraction_triangulated"] > 0.8
    fit = session.read_stage_report("fit")["figures"]
    print("Pose2Sim multi-person demo: triangulated", tri["fraction_triangulated"], "cameras used",
          tri["mean_cameras_used"], "raw segment variation", tri["raw_bone_length_variation"], "fit s",
          fit.get("seconds"))
    page = (take / "report" / "index.html").read_text()
    assert "every check passed" not in page  # two people and a bystander: never a clean take
