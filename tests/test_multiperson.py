"""Several people in one take through the pipeline: every person gets a folder of their own (people/<id>/) with
today's file names, triangulated against their own truth; a single-performer take writes no people.

The take is cheap (as in test_pipeline.py): a calibrated ring of 4 cameras and 2D keypoints imported from an npz
holding three people per frame in any order (test_associate's crossing scene: two people crossing at arm's
reach, a third walking round the edge seen by two cameras only, occlusions, a mirrored run of one view)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from mocap_studio.calibration.formats import write_calibration
from mocap_studio.cli import main
from mocap_studio.pipeline import RunConfig, run_pipeline
from mocap_studio.reconstruction.keypoints import Keypoints3D
from mocap_studio.session import PersonSession, Session
from test_associate import _crossing

FPS = 30.0


def _take(root: Path, people: object) -> tuple[Session, np.ndarray]:
    """A session with calibration.toml and three people's keypoints imported (``[associate] people``);
    returns it and the people's true joints (N, T, J, 3)."""
    calibration, det, _, bodies, _ = _crossing(0, people=3, fps=FPS)
    root.mkdir(parents=True)
    session = Session(root)
    value = f'"{people}"' if isinstance(people, str) else people
    session.config_path.write_text(f"[session]\nframe_rate = {FPS}\n\n[associate]\npeople = {value}\n")
    write_calibration(calibration, session.calibration_path)
    source = root.parent / f"{root.name}_detections.npz"
    np.savez(source, xy=det.xy, confidence=det.confidence, camera_names=np.array(det.camera_names),
             skeleton=np.array(det.skeleton), frame_times=np.asarray(det.frame_times))
    assert main(["import-keypoints", str(root), str(source), "--format", "npz"]) == 0
    return session, bodies


def _error_mm(k3: Keypoints3D, truth: np.ndarray) -> np.ndarray:
    """(T,) mean joint distance in mm per frame (NaN where nothing was triangulated)."""
    frames = np.round(np.asarray(k3.frame_times) * FPS).astype(int)
    distance = 1000 * np.linalg.norm(k3.xyz - truth[frames], axis=-1)
    seen = np.isfinite(distance).any(-1)
    return np.where(seen, np.nanmean(np.where(seen[:, None], distance, 0.0), axis=-1), np.nan)


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> tuple[Session, np.ndarray]:
    session, bodies = _take(tmp_path_factory.mktemp("people") / "take", 3)
    run_pipeline(session, RunConfig(stages=("triangulate",)))
    return session, bodies


def test_every_person_is_triangulated_in_a_folder_of_their_own(three):
    session, bodies = three
    assert session.person_ids() == ("p0", "p1", "p2")
    listed = json.loads(session.people_path.read_text())["people"]
    assert [p["folder"] for p in listed] == ["people/p0", "people/p1", "people/p2"]
    matched = []
    for person in session.people():
        assert isinstance(person, PersonSession) and person.calibration_path == session.calibration_path
        assert person.keypoints2d_path.exists() and person.keypoints2d_synced_path.exists()
        assert person.stage_report_path("triangulate").exists()
        k3 = Keypoints3D.load(person.keypoints3d_path)
        errors = np.array([np.nanmedian(_error_mm(k3, b)) for b in bodies])
        who = int(np.argmin(errors))
        matched.append(who)
        per_frame = _error_mm(k3, bodies[who])
        found = np.isfinite(per_frame)
        # 2 px noise at 1800 px focal, one camera a degree off: a few centimetres for the two people every camera
        # sees; the edge walker is seen by two cameras only (one of them possibly the camera a degree off: about
        # 15 cm); never another person (their errors stay over 0.4 m)
        assert np.nanmedian(per_frame) < (40 if who < 2 else 250), (person.person_id, who, errors)
        assert np.sort(errors)[1] > 400 and np.nanmax(per_frame) < 400, (person.person_id, who, errors)
        assert found.mean() >= (0.95 if who < 2 else 0.8), (person.person_id, who, found.mean())
    assert sorted(matched) == [0, 1, 2]
    # the take's own outputs are the performer's (p0), as in a single-performer take
    top = Keypoints3D.load(session.keypoints3d_path)
    assert np.allclose(top.xyz, Keypoints3D.load(session.person("p0").keypoints3d_path).xyz, equal_nan=True)
    outcomes = {o["stage"]: o["status"] for o in json.loads(session.stage_report_path("run").read_text())["outcomes"]}
    assert outcomes == {"triangulate p0": "ran", "triangulate p1": "ran", "triangulate p2": "ran",
                        "triangulate": "ran"}


def test_report_section_lists_every_person(three):
    from mocap_studio.report.people import section_people, section_person

    session, _ = three
    section = section_people(session)
    html = "".join(section.body)
    assert section.id == "people" and all(f"<td>{p}</td>" in html for p in ("p0", "p1", "p2"))
    assert 'id="people-paths"' in html  # the paths over the floor (no videos here: no frame to draw on)
    assert section_people(session.person("p0")) is None
    # each person's own report is linked from the take's page, report/index.html
    person = session.person("p1")
    page = person.report_dir / "index.html"
    page.write_text("<html></html>")
    try:
        html = "".join(section_people(session).body)
    finally:
        page.unlink()
    href = re.search(r'<a href="([^"]+)">p1</a>', html).group(1)
    assert (session.report_dir / href).resolve() == page.resolve(), href
    # and a person's own page links back to the take's
    assert section_person(session) is None
    back = re.search(r'<a href="([^"]+)">', "".join(section_person(person).body)).group(1)
    assert (person.report_dir / back).resolve() == (session.report_dir / "index.html").resolve(), back


def test_a_rerun_skips_every_person(three):
    session, _ = three
    result = run_pipeline(session, RunConfig(stages=("triangulate",)))
    assert {o.stage: o.status for o in result.outcomes} == {
        "triangulate p0": "up to date", "triangulate p1": "up to date", "triangulate p2": "up to date",
        "triangulate": "up to date"}


def test_stage_commands_on_a_persons_folder(three, capsys):
    from mocap_studio.session import open_session, take_session

    session, _ = three
    folder = session.person("p1").root
    person = open_session(folder)
    assert isinstance(person, PersonSession) and person.person_id == "p1" and person.take.root == session.root
    assert type(open_session(session.root)) is Session
    before = Keypoints3D.load(person.keypoints3d_path).xyz
    person.keypoints3d_path.unlink()
    assert main(["triangulate", str(folder)]) == 0  # one person's stage on their folder, the take's calibration
    assert np.allclose(Keypoints3D.load(person.keypoints3d_path).xyz, before, equal_nan=True)
    assert not (folder / "calibration.toml").exists() and not (folder / "people").exists()
    with pytest.raises(FileNotFoundError, match=f"person p1 of the take {session.root}"):
        take_session(folder, "detect")
    capsys.readouterr()
    assert main(["detect", str(folder)]) == 1
    said = capsys.readouterr()
    assert f"run `mocap detect {session.root}`" in " ".join((said.out + said.err).split())


def test_one_performer_writes_no_people(tmp_path):
    from mocap_studio.report.people import section_people

    session, _ = _take(tmp_path / "take", 1)
    assert not session.people_path.exists() and session.person_ids() == () and section_people(session) is None
    assert "people" not in session.read_stage_report("import-keypoints")["figures"]


def test_person_folder_checked(tmp_path):
    session = Session(tmp_path)
    for bad in ("", "../x", ".hidden"):
        with pytest.raises(ValueError, match="not a person id"):
            session.person(bad)
    session.people_path.write_text("{not json")
    with pytest.raises(ValueError, match="people.json"):
        session.person_ids()


def test_a_crowds_fits_use_the_crowds_kernel(tmp_path):
    from mocap_studio.reconstruction.body.fitting import FitConfig
    from mocap_studio.stages_body import fit_config_for

    lone, crowd = Session(tmp_path / "lone"), Session(tmp_path / "crowd")
    for session, people in ((lone, None), (crowd, 3)):
        session.root.mkdir()
        session.config_path.write_text("[fit]\nrobust_scale = 3.5\ncrowd_robust_scale = 1.25\n"
                                       + (f"\n[associate]\npeople = {people}\n" if people else ""))
    config = lone.stage_config("fit", FitConfig)
    assert fit_config_for(lone, config).robust_scale == 3.5
    assert fit_config_for(crowd, config).robust_scale == 1.25
    assert fit_config_for(PersonSession(crowd, "p1"), config).robust_scale == 1.25


def test_a_crowds_weak_views_score(tmp_path):
    from mocap_studio.reconstruction.triangulate import TriangulationConfig
    from mocap_studio.stages_keypoints import triangulate_config_for

    lone, crowd = Session(tmp_path / "lone"), Session(tmp_path / "crowd")
    for session, people in ((lone, None), (crowd, "all")):
        session.root.mkdir()
        session.config_path.write_text("[triangulate]\ncrowd_weak_view_weight = 0.25\n"
                                       + (f'\n[associate]\npeople = "{people}"\n' if people else ""))
    config = lone.stage_config("triangulate", TriangulationConfig)
    assert triangulate_config_for(lone, config).weak_view_weight == 0.0  # a lone performer's weak views only offer
    assert triangulate_config_for(crowd, config).weak_view_weight == 0.25
    assert triangulate_config_for(PersonSession(crowd, "p1"), config).weak_view_weight == 0.25
    with pytest.raises(ValueError, match="weak_view_weight"):
        TriangulationConfig(crowd_weak_view_weight=2.0)


def test_a_view_kept_weak_as_hidden_does_not_count_as_finding_the_person(tmp_path):
    from mocap_studio.reconstruction.keypoints import Keypoints2D, load_keypoints2d
    from mocap_studio.stages_keypoints import _write_people

    session = Session(tmp_path / "take")
    session.root.mkdir()
    conf = np.full((3, 4, 33), 0.9)
    conf[1, 2:] = 0.1  # camera 2 hides the person in frames 2 and 3: kept as a weak view
    conf[2, 3:] = 0.0  # camera 3 lost them in frame 3
    kp = Keypoints2D(np.zeros((3, 4, 33, 2)), conf, ("a", "b", "c"), "blazepose33", np.arange(4) / 30.0)
    figures: dict = {}
    _write_people(session, {"p0": kp}, figures, hidden_confidence=0.1)
    row = json.loads(session.people_path.read_text())["people"][0]
    assert row["frames_seen_by_two_cameras"] == 0.75 and row["frames_found_per_camera"] == {"a": 1.0, "b": 0.5,
                                                                                           "c": 0.75}
    kp.save(session.person("p0").keypoints2d_path)  # as read back (float32), the same
    _write_people(session, {"p0": load_keypoints2d(session.person("p0").keypoints2d_path)}, figures, 0.1)
    assert json.loads(session.people_path.read_text())["people"][0] == row
    _write_people(session, {"p0": kp}, figures)  # no views kept weak: any confidence finds
    assert json.loads(session.people_path.read_text())["people"][0]["frames_seen_by_two_cameras"] == 1.0
