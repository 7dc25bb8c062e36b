"""The session folder: the one class that knows every path of a take.

Layout (DESIGN.md)::

    session.toml                what the take is (SessionConfig) plus one table per stage's config
    videos/<camera>.<ext>       or images/<camera>/...   the performance
    videos/<camera>.wav         the camera's sound, when recorded beside the video (the virtual studio does)
    calibration/<camera>.<ext>  or calibration/<camera>/...   the board recordings
    calibration.toml            the camera rig (aniposelib/Pose2Sim TOML)
    sync.json, keypoints2d.npz, keypoints3d.npz, body.npz
    keypoints2d_synced.npz      the 2D keypoints triangulation used, on the take's one timeline (fit, report)
    masks.npz                   the performer's mask per camera and frame (detect; the fit's silhouettes)
    export/                     exported files
    report/<stage>.json         each stage's report; report/index.html the take report
    truth/                      a synthetic take's known truth (``mocap synth``); no stage reads it
    people.json                 several people ([associate] people): their ids and how each was found (detect)
    people/<id>/                one person's folder (:class:`PersonSession`): keypoints2d.npz, keypoints3d.npz,
                                body.npz, export/, report/ ... under today's names; the rest is the take's

Stages never look for files themselves: they ask this class. A stage records the fingerprint of its inputs
and settings in its report, so a re-run with unchanged inputs is skipped (an interrupted run resumes).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mocap_studio.common.config import ConfigError, config_from_mapping, load_toml
from mocap_studio.common.fileio import fingerprint, write_json_atomic
from mocap_studio.common.order import natural_key

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
T = TypeVar("T")


@dataclass(frozen=True)
class SessionConfig:
    """The ``[session]`` table of ``session.toml``."""

    name: str = ""
    """A label for the take (defaults to the folder name)."""
    board: str = "charuco_5x7_dict4x4_100"
    """The calibration board: a name from configs/boards/ or a path to a board TOML (relative to the session)."""
    cameras: tuple[str, ...] = ()
    """Cameras to use, by name; empty means every camera found in videos/ or images/ and calibration/."""
    frame_rate: float = 0.0
    """Nominal frame rate of the performance in frames per second; 0 means read it from the videos."""


@dataclass(frozen=True)
class StageReport:
    """What a stage did: written to ``report/<stage>.json``; every stage runner returns one."""

    stage: str
    inputs_fingerprint: str
    outputs: tuple[str, ...]
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    skipped: bool = False
    """True when the stage was up to date and did not run (this is its previous report); not written."""

    @classmethod
    def from_record(cls, data: dict[str, Any], skipped: bool = False) -> StageReport:
        """A report read back from ``report/<stage>.json``."""
        return cls(str(data.get("stage", "")), str(data.get("inputs_fingerprint", "")),
                   tuple(data.get("outputs", ())), dict(data.get("figures", {})), tuple(data.get("warnings", ())),
                   float(data.get("seconds", 0.0)), skipped)


class NotASessionError(FileNotFoundError):
    """A folder that holds nothing of a take (no session.toml, recordings, calibration or stage outputs)."""


class Session:
    """A take's folder. Every path of a take comes from here."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self._raw: tuple[tuple[int, int], dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"Session({str(self.root)!r})"

    # ---- fixed paths
    @property
    def config_path(self) -> Path:
        """``session.toml``: what the take is, and one table per stage's config."""
        return self.root / "session.toml"

    @property
    def videos_dir(self) -> Path:
        """``videos/``: one recording per camera."""
        return self.root / "videos"

    @property
    def truth_dir(self) -> Path:
        """A synthetic take's truth (``truth/``): the virtual studio writes it, no stage reads it."""
        return self.root / "truth"

    @property
    def images_dir(self) -> Path:
        """``images/``: one image folder per camera (instead of videos)."""
        return self.root / "images"

    @property
    def calibration_recordings_dir(self) -> Path:
        """``calibration/``: the board recordings, one per camera."""
        return self.root / "calibration"

    @property
    def calibration_path(self) -> Path:
        """``calibration.toml``: the camera rig."""
        return self.root / "calibration.toml"

    @property
    def sync_path(self) -> Path:
        """``sync.json``: per-camera time offsets."""
        return self.root / "sync.json"

    def timestamps_path(self, camera: str) -> Path:
        """Host timestamps of a recorded camera (``videos/<camera>.timestamps.csv``, from ``mocap record``)."""
        return self.videos_dir / f"{camera}.timestamps.csv"

    def audio_path(self, camera: str) -> Path:
        """A separate sound recording of a camera (``videos/<camera>.wav``), used when its video has none."""
        return self.videos_dir / f"{camera}.wav"

    @property
    def keypoints2d_path(self) -> Path:
        """``keypoints2d.npz``: the 2D keypoints of every camera."""
        return self.root / "keypoints2d.npz"

    @property
    def masks_path(self) -> Path:
        """``masks.npz``: the performer's mask per camera and frame (reconstruction/silhouettes.py's format)."""
        return self.root / "masks.npz"

    @property
    def keypoints2d_synced_path(self) -> Path:
        """The 2D keypoints triangulation used, on the take's one timeline (written by ``mocap triangulate``)."""
        return self.root / "keypoints2d_synced.npz"

    @property
    def keypoints3d_path(self) -> Path:
        """``keypoints3d.npz``: the triangulated keypoints."""
        return self.root / "keypoints3d.npz"

    @property
    def body_path(self) -> Path:
        """``body.npz``: the fitted body motion."""
        return self.root / "body.npz"

    @property
    def export_dir(self) -> Path:
        """``export/``: the exported files."""
        return self.root / "export"

    @property
    def report_dir(self) -> Path:
        """``report/``: stage reports and the take report."""
        return self.root / "report"

    def stage_report_path(self, stage: str) -> Path:
        """``report/<stage>.json``: what the stage did on its last run."""
        return self.report_dir / f"{stage}.json"

    def stage_asset_dir(self, stage: str) -> Path:
        """Pictures and side files of one stage's report (``report/<stage>/``)."""
        return self.report_dir / stage

    # ---- several people
    @property
    def people_path(self) -> Path:
        """``people.json``: the take's people when several are reconstructed (ids, tracks, figures)."""
        return self.root / "people.json"

    @property
    def people_dir(self) -> Path:
        """``people/``: one folder per person (``people/<id>/``)."""
        return self.root / "people"

    def person_ids(self) -> tuple[str, ...]:
        """The ids of the take's people as ``people.json`` lists them; () for a single-performer take."""
        if not self.people_path.exists():
            return ()
        try:
            data = json.loads(self.people_path.read_text())
            return tuple(str(p["id"]) for p in data["people"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{self.people_path}: unreadable ({e}); run `mocap detect {self.root} --overwrite` "
                             "to write it again") from e

    def person(self, person_id: str) -> PersonSession:
        """One person's session (``people/<id>/``): that person's keypoints, fit, exports and report, sharing
        the take's recordings, calibration, sync and settings."""
        return PersonSession(self, person_id)

    def people(self) -> tuple[PersonSession, ...]:
        """Every person's session, in id order; () for a single-performer take."""
        return tuple(self.person(p) for p in self.person_ids())

    # ---- what the folder is
    def is_session(self) -> bool:
        """True when the folder holds anything of a take: session.toml, recordings, a calibration or any stage's
        output."""
        marks = (self.config_path, self.videos_dir, self.images_dir, self.calibration_recordings_dir,
                 self.calibration_path, self.sync_path, self.keypoints2d_path, self.keypoints3d_path, self.body_path,
                 self.report_dir)
        return any(p.exists() for p in marks)

    def require(self) -> Session:
        """This session, after checking that its folder is a take's; raises NotASessionError otherwise."""
        if not self.root.is_dir():
            raise NotASessionError(f"{self.root}: no such session folder; give the take's folder")
        if not self.is_session():
            raise NotASessionError(
                f"{self.root} is not a session folder (no {self.config_path.name}, {self.videos_dir.name}/, "
                f"{self.images_dir.name}/, {self.calibration_recordings_dir.name}/, {self.calibration_path.name} or "
                f"{self.keypoints2d_path.name}); give the take's folder, or start one with `mocap record`, "
                "`mocap synth` or `mocap import-keypoints`")
        return self

    # ---- configuration
    def raw_config(self) -> dict[str, Any]:
        """session.toml as parsed (every table known, see ``stages.TABLES``); {} when there is none."""
        if not self.config_path.exists():
            return {}
        stat = self.config_path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._raw is None or self._raw[0] != stamp:
            from mocap_studio.stages import check_tables

            raw = load_toml(self.config_path)
            check_tables(raw, self.config_path)
            self._raw = (stamp, raw)
        return self._raw[1]

    def config(self) -> SessionConfig:
        """The ``[session]`` table; the take's name defaults to the folder's name."""
        raw = self.raw_config().get("session", {})
        cfg = config_from_mapping(SessionConfig, raw, f"{self.config_path} [session]")
        return cfg if cfg.name else SessionConfig(**{**cfg.__dict__, "name": self.root.name})

    def stage_config(self, stage: str, cls: type[T], overrides: dict[str, Any] | None = None,
                     options: dict[str, str] | None = None) -> T:
        """The stage's config: its table in session.toml, then ``overrides`` (e.g. from the command line).

        A bad value in the table is blamed on session.toml; a bad override on its command-line option
        (``options`` maps a key to the option's text; default ``--key-with-dashes``).
        """
        table = dict(self.raw_config().get(stage, {}))
        config = config_from_mapping(cls, table, f"{self.config_path} [{stage}]")
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        if not given:
            return config
        merged = dict(table)
        for key, value in given.items():
            option = (options or {}).get(key, "--" + key.replace("_", "-"))
            merged[key] = value
            config = config_from_mapping(cls, merged, option)
        return config

    def board_path(self) -> Path | str:
        """The board definition named in session.toml: a path if it names a file, else a preset name."""
        board = self.config().board
        candidate = self.root / board
        return candidate if candidate.suffix == ".toml" or candidate.exists() else board

    # ---- recordings, found by camera name
    def _sources(self, folder: Path) -> dict[str, Path]:
        """Camera name -> video file or image folder directly under ``folder``, in natural order."""
        found: dict[str, Path] = {}
        if not folder.is_dir():
            return found
        for p in folder.iterdir():
            if p.name.startswith("."):
                continue
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
                name = p.stem
            elif p.is_dir() and any(q.suffix.lower() in IMAGE_EXTENSIONS for q in p.iterdir()):
                name = p.name
            else:
                continue
            if name in found:
                raise ConfigError(
                    f"{folder}: camera {name!r} has two recordings ({found[name].name} and {p.name}); keep one"
                )
            found[name] = p
        selected = self.config().cameras
        if selected:
            missing = [c for c in selected if c not in found]
            if missing:
                raise FileNotFoundError(
                    f"{folder}: no recording for camera(s) {missing} listed in {self.config_path}; "
                    f"found {sorted(found, key=natural_key)}"
                )
            found = {c: found[c] for c in selected}
        return {k: found[k] for k in sorted(found, key=natural_key)}

    def performance_sources(self) -> dict[str, Path]:
        """Camera name -> the performance recording (``videos/<camera>.<ext>`` or ``images/<camera>/``)."""
        sources = self._sources(self.videos_dir)
        for name, path in self._sources(self.images_dir).items():
            if name in sources:
                raise ConfigError(f"camera {name!r} has both {sources[name]} and {path}; keep one")
            sources[name] = path
        return {k: sources[k] for k in sorted(sources, key=natural_key)}

    def calibration_sources(self) -> dict[str, Path]:
        """Camera name -> board recording (``calibration/<camera>.<ext>`` or ``calibration/<camera>/``)."""
        return self._sources(self.calibration_recordings_dir)

    # ---- stage bookkeeping
    def inputs_fingerprint(self, inputs: list[Path], settings: Any) -> str:
        """A fingerprint of the input files (a folder by every file in it) and the settings; equal means unchanged."""
        files: list[Path] = []
        for p in inputs:
            files.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
        settings_text = json.dumps(settings, sort_keys=True, default=str)
        settings_digest = hashlib.sha256(settings_text.encode()).hexdigest()[:16]
        return fingerprint(files, root=self.root) + ":" + settings_digest

    def is_up_to_date(self, stage: str, inputs_fingerprint: str, outputs: list[Path]) -> bool:
        """True when the stage's last report has the same inputs and all its outputs exist."""
        path = self.stage_report_path(stage)
        if not path.exists() or not all(p.exists() for p in outputs):
            return False
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            return False
        return previous.get("inputs_fingerprint") == inputs_fingerprint

    def write_stage_report(self, report: StageReport) -> Path:
        """Write ``report/<stage>.json`` atomically; returns its path."""
        data = {
            "stage": report.stage,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "inputs_fingerprint": report.inputs_fingerprint,
            "outputs": [str(Path(o).relative_to(self.root)) if Path(o).is_absolute() else str(o) for o in report.outputs],
            "seconds": round(report.seconds, 3),
            "figures": report.figures,
            "warnings": list(report.warnings),
        }
        return write_json_atomic(self.stage_report_path(report.stage), data)

    def read_stage_report(self, stage: str) -> dict[str, Any] | None:
        """``report/<stage>.json`` as written, or None when the stage never ran."""
        path = self.stage_report_path(stage)
        return json.loads(path.read_text()) if path.exists() else None

    def previous_report(self, stage: str) -> StageReport:
        """The stage's last report, marked ``skipped`` (what a runner returns when it is up to date)."""
        return StageReport.from_record(self.read_stage_report(stage) or {"stage": stage}, skipped=True)


def open_session(root: str | Path) -> Session:
    """The session of folder ``root``: one person's (:class:`PersonSession`) where ``root`` is ``people/<id>/`` of
    a take whose people.json lists that id, else the take's own."""
    path = Path(root).expanduser().resolve()
    if path.parent.name == "people":
        take = Session(path.parent.parent)
        if take.people_path.exists() and path.name in take.person_ids():
            return take.person(path.name)
    return Session(path)


def take_session(root: str | Path, command: str) -> Session:
    """The take of folder ``root`` for a command that works on a whole take (``mocap detect``, ``sync``, ``run``,
    ``calibrate``); a person's folder (``people/<id>/``) is refused with the command to run on the take."""
    session = open_session(root)
    if isinstance(session, PersonSession):
        raise NotASessionError(f"{session.root} is person {session.person_id} of the take {session.take.root}: "
                               f"`mocap {command}` works on the whole take; run `mocap {command} {session.take.root}`")
    return session


class PersonSession(Session):
    """One person of a several-people take: the folder ``people/<id>/`` of the take holds that person's stage
    outputs under today's names (keypoints2d.npz, keypoints2d_synced.npz, keypoints3d.npz, body.npz, masks.npz,
    export/, report/), so every stage and reader of a single-person take reads one person's folder; session.toml,
    the recordings, the calibration, sync.json and the truth's rig are the take's."""

    def __init__(self, take: Session, person_id: str):
        if not person_id or "/" in person_id or person_id.startswith("."):
            raise ValueError(f"{take.root}: {person_id!r} is not a person id (p0, p1, ...)")
        super().__init__(take.people_dir / person_id)
        self.take = take
        self.person_id = person_id

    def __repr__(self) -> str:
        return f"PersonSession({str(self.take.root)!r}, {self.person_id!r})"

    @property
    def config_path(self) -> Path:
        """The take's ``session.toml``."""
        return self.take.config_path

    @property
    def videos_dir(self) -> Path:
        """The take's ``videos/``."""
        return self.take.videos_dir

    @property
    def images_dir(self) -> Path:
        """The take's ``images/``."""
        return self.take.images_dir

    @property
    def calibration_recordings_dir(self) -> Path:
        """The take's ``calibration/``."""
        return self.take.calibration_recordings_dir

    @property
    def calibration_path(self) -> Path:
        """The take's ``calibration.toml``."""
        return self.take.calibration_path

    @property
    def sync_path(self) -> Path:
        """The take's ``sync.json``."""
        return self.take.sync_path

    @property
    def truth_dir(self) -> Path:
        """The take's truth (``truth/``); a synthetic take's per-person truth is ``truth/<id>/``."""
        return self.take.truth_dir

    @property
    def people_path(self) -> Path:
        """The take's ``people.json``."""
        return self.take.people_path

    def person_ids(self) -> tuple[str, ...]:
        """A person has no people of its own."""
        return ()

    def config(self) -> SessionConfig:
        """The take's ``[session]`` table, named ``<take> <id>`` unless it names itself."""
        cfg = self.take.config()
        return SessionConfig(**{**cfg.__dict__, "name": f"{cfg.name} {self.person_id}"})

    def board_path(self) -> Path | str:
        """The take's board."""
        return self.take.board_path()

    def inputs_fingerprint(self, inputs: list[Path], settings: Any) -> str:
        """As the take's (the inputs are named relative to the take's folder: the calibration lies outside the
        person's)."""
        return self.take.inputs_fingerprint(inputs, settings)
