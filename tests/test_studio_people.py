"""The virtual studio with several performers (`mocap synth --performers N`): each performer has a shape, clothes
and an exercise of their own, their paths cross, the truth has one folder per performer with today's file names,
and the take's session.toml asks detect and associate for every performer. One performer renders as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mocap_studio.common.config import load_toml
from mocap_studio.reconstruction.keypoints import Keypoints3D
from mocap_studio.studio import StudioConfig, synthesize
from mocap_studio.studio.troupe import crossing_offsets, min_separation_m


def test_paths_cross_but_bodies_keep_apart():
    t = np.linspace(0, 10, 2001)
    for n in (2, 3, 4):
        paths = [crossing_offsets(t, i, n)[:, :2] for i in range(n)]
        for p in paths:  # every line goes through the centre, and its performer reaches it
            assert np.linalg.norm(p, axis=-1).min() < 0.01 and np.linalg.norm(p, axis=-1).max() == pytest.approx(1, 0.01)
        assert min_separation_m(n) == pytest.approx(np.sin(np.pi / n), abs=0.01)
    assert np.allclose(crossing_offsets(t, 0, 1), 0.0) and min_separation_m(1) == float("inf")


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("troupe") / "take"
    take = synthesize(root, StudioConfig(performers=2, seconds=0.5, scale=0.25, in_sync=True, audio=False, claps=0,
                                         calibration_views=2, close_ups_per_camera=1, floor_frames=1))
    return take


def test_truth_per_performer(two):
    truth = two.truth_dir
    assert (truth / "calibration.toml").exists() and (truth / "timing.json").exists()
    assert not (truth / "keypoints3d_blazepose33.npz").exists()  # the people's files are in their folders
    joints = []
    for pid in ("p0", "p1"):
        assert (truth / pid / "body.npz").exists()
        k3 = Keypoints3D.load(truth / pid / "keypoints3d_blazepose33.npz")
        assert k3.xyz.shape[0] == 15 and np.isfinite(k3.xyz).all()
        joints.append(k3.xyz)
    apart = np.linalg.norm(joints[0].mean(1) - joints[1].mean(1), axis=-1)
    assert apart.min() > 0.6  # two bodies, never one inside the other
    studio = json.loads((truth / "studio.json").read_text())
    shapes = studio["performers_truth"]
    assert studio["performers"] == 2 and shapes["p0"]["shape"] != shapes["p1"]["shape"]
    assert shapes["p0"]["motion_source"] != shapes["p1"]["motion_source"]
    assert len(two.others) == 1


def test_session_asks_for_every_performer(two):
    tables = load_toml(two.session_dir / "session.toml")
    assert tables["associate"] == {"people": 2}
    assert tables["detect"]["num_poses"] == 2 and tables["detect"]["min_detection_confidence"] < 0.5


def test_both_performers_in_the_pictures(two):
    """Each performer's projected pelvis lands on a body pixel in most frames of a camera (the other may hide it
    now and then): both were rendered."""
    import av
    from mocap_studio.calibration.formats import read_calibration

    rig = read_calibration(two.truth_dir / "calibration.toml")
    cam = rig.names[0]
    with av.open(str(two.session_dir / "videos" / f"{cam}.mp4")) as box:
        frames = [f.to_ndarray(format="rgb24") for f in box.decode(video=0)]
    for pid in ("p0", "p1"):
        k3 = Keypoints3D.load(two.truth_dir / pid / "keypoints3d_smpl24.npz")
        uv = np.round(rig[cam].project(k3.xyz[:, 0])).astype(int)  # the pelvis
        on_body = []
        for img, (u, v) in zip(frames, uv, strict=False):
            if 0 <= v < img.shape[0] and 0 <= u < img.shape[1]:
                on_body.append(img[v, u].astype(int).std() > 8 or img[v, u].mean() < 90)  # not the grey wall
        assert np.mean(on_body) > 0.5, pid


def test_one_performer_keeps_the_layout():
    with pytest.raises(ValueError, match="performers must be within"):
        synthesize("/nonexistent", StudioConfig(performers=0))
    with pytest.raises(ValueError, match="platform is for one performer"):
        synthesize("/nonexistent", StudioConfig(performers=2, platform_height_m=0.2))


def test_people_are_scored_against_their_own_truth(two, tmp_path):
    """people_scores: each estimated person matched to their true performer by place alone, whatever the ids; the
    per-vertex error from the true bodies when the studio wrote no mesh; a person who changes places is seen."""
    import shutil

    from mocap_studio.people_scores import score_people
    from mocap_studio.session import Session

    take = tmp_path / "take"
    shutil.copytree(two.session_dir, take)
    shutil.copy(take / "truth" / "calibration.toml", take / "calibration.toml")
    assert not (take / "truth" / "p0" / "vertices.npy").exists()
    truth = {pid: Keypoints3D.load(take / "truth" / pid / "keypoints3d_blazepose33.npz") for pid in ("p0", "p1")}
    for pid, tid in (("pa", "p1"), ("pb", "p0")):  # ids unlike the truth's, in the other order
        folder = take / "people" / pid
        folder.mkdir(parents=True)
        truth[tid].save(folder / "keypoints3d.npz")
        shutil.copy(take / "truth" / tid / "body.npz", folder / "body.npz")
    (take / "people.json").write_text(json.dumps({"people": [{"id": "pa", "frames_seen_by_two_cameras": 1.0},
                                                             {"id": "pb", "frames_seen_by_two_cameras": 0.9}]}))
    scores = score_people(Session(take))["people"]
    assert scores["pa"]["truth"] == "p1" and scores["pb"]["truth"] == "p0" and scores["pb"]["found"] == 0.9
    for row in scores.values():
        assert row["mpjpe_body_mm"] < 0.1 and row["per_vertex_error_mm"] < 0.1 and row["identity_switches"] == 0
    moved = truth["p1"]
    T = moved.xyz.shape[0]
    xyz = moved.xyz.copy()
    xyz[T - 4:] = truth["p0"].xyz[T - 4:]  # pa ends on p0's body
    Keypoints3D(xyz, moved.error, moved.cameras_used, moved.camera_names, moved.skeleton,
                moved.frame_times).save(take / "people" / "pa" / "keypoints3d.npz")
    row = score_people(Session(take))["people"]["pa"]
    assert row["truth"] == "p1" and row["identity_switches"] == 1 and row["frames_on_another"] == 4
    assert row["mpjpe_body_mm"] > 4 / T * 500
