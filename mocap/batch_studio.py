"""A studio folder: many takes, their shared settings and the calibrations they use (``mocap batch``).

Layout::

    STUDIO/
      studio.toml                 optional: shared settings, per-take choices, per-stage resources (below)
      calibrations/<name>/        calibration sessions: board recordings (calibration/<camera>.mp4, calibrated
                                  once by the batch) or a ready calibration.toml; used by several takes
      takes/<take>/               one session folder per take (if there is no takes/ folder, every session
                                  folder directly under STUDIO but calibrations/ and batch/ is a take)
      batch/summary.json          written by ``mocap batch``: per take status, figures, warnings
      batch/summary.html          the same as a table

studio.toml (every table and key optional; an unknown one is an error naming it)::

    [studio]
    name = "tuesday"             # a label for the summary (default: the folder's name)
    takes = "takes"              # the folder of takes, relative to STUDIO
    calibrations = "calibrations"
    calibration = "morning"      # the calibration of takes that name none and cannot be matched by date

    [defaults.export]            # any session.toml table: shared by every take; a take's own values win
    formats = ["bvh", "trc"]

    [take.walk_03]               # per take: its calibration by name, its date, or leave it out of the batch
    calibration = "afternoon"
    date = "2026-12-04T14:10"
    skip = false

    [calibration.afternoon]
    date = "2026-12-04T13:00"    # else a leading date in the folder's name (2026-12-04 or 2026-12-04_1300)

    [resources.fit]              # per-stage Ray resources (see mocap_studio.batch.STAGE_RESOURCES)
    cpus = 2
    memory_mb = 3000
    gpus = 0

A take without its own board recordings or calibration.toml gets one calibration session's calibration.toml,
chosen in this order: named in ``[take.<name>]``; by date (the latest calibration dated at or before the take);
``[studio] calibration``; the only calibration session there is. The copy is recorded in the take's
``report/batch-calibration.json``; a calibration.toml the batch did not put there is never replaced.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import html
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mocap_studio.common.config import ConfigError, load_toml
from mocap_studio.common.fileio import write_bytes_atomic, write_json_atomic, write_text_atomic
from mocap_studio.common.order import natural_key
from mocap_studio.session import Session
from mocap_studio.stages import check_tables, suggestion

STUDIO_FILE = "studio.toml"
SUMMARY_DIR = "batch"
MARKER = "batch-calibration.json"

_TABLES = {"studio", "defaults", "take", "calibration", "resources"}
_STUDIO_KEYS = {"name", "takes", "calibrations", "calibration"}
_TAKE_KEYS = {"calibration", "date", "skip"}
_CALIBRATION_KEYS = {"date"}
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T_ ](\d{2}):?(\d{2}))?")


class StudioError(ValueError):
    """A studio folder or studio.toml that cannot be used; the message names the file or take and the remedy."""


class StudioSession(Session):
    """A take read with the studio's shared settings under its own session.toml (the take's values win)."""

    def __init__(self, root: str | Path, defaults: dict[str, Any] | None = None):
        super().__init__(root)
        self.defaults = copy.deepcopy(defaults or {})

    def raw_config(self) -> dict[str, Any]:
        """The studio's ``[defaults]`` tables with session.toml's over them, key by key."""
        own = super().raw_config()
        if not self.defaults:
            return own
        merged = copy.deepcopy(self.defaults)
        for table, values in own.items():
            merged[table] = {**merged.get(table, {}), **values}
        return merged

    def __reduce__(self) -> tuple:
        return (StudioSession, (str(self.root), self.defaults))


@dataclass(frozen=True)
class Take:
    """One take of the studio: its folder, its name, its calibration session (None: the take has its own)."""

    name: str
    root: Path
    calibration: str | None = None
    date: dt.datetime | None = None


@dataclass
class Studio:
    """A studio folder read: its takes, calibration sessions, shared settings and per-stage resources."""

    root: Path
    name: str
    takes: list[Take]
    calibrations: dict[str, Path]
    defaults: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Resources] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    """Take name -> why it cannot run (no calibration found ...); reported as failed, the others run."""

    @property
    def summary_dir(self) -> Path:
        """``batch/``: where the summary is written."""
        return self.root / SUMMARY_DIR

    def session(self, take: Take) -> StudioSession:
        """The take's session, with the studio's shared settings."""
        return StudioSession(take.root, self.defaults)


@dataclass(frozen=True)
class Resources:
    """What one task of a stage asks of a Ray node; the scheduler places it where that much is free."""

    cpus: float = 1.0
    """CPU cores (Ray's num_cpus)."""
    memory_mb: int = 0
    """Memory to reserve in MiB (Ray's memory resource; 0 reserves none)."""
    gpus: float = 0.0
    """GPUs (Ray's num_gpus); no stage uses a GPU yet (MediaPipe and the fit run on the CPU), so 0 by default."""

    def ray_options(self) -> dict[str, Any]:
        """These resources as Ray task options."""
        out: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.memory_mb:
            out["memory"] = int(self.memory_mb) * 2**20
        return out


STAGE_RESOURCES: dict[str, Resources] = {
    "calibrate": Resources(1, 1000),
    "detect": Resources(1, 800),
    "sync": Resources(1, 500),
    "triangulate": Resources(1, 500),
    "fit": Resources(1, 2000),
    "export": Resources(1, 1500),
    "report": Resources(1, 1000),
}
"""Per stage, what one of its tasks asks for (detect: per camera and chunk of frames; the others per take), as
measured here: MediaPipe's landmarker holds ~0.5 GB, the fit's body model and torch ~1.5 GB. Override per
studio in studio.toml ``[resources.<stage>]``."""


def stage_resources(table: dict[str, Any], path: Path | str) -> dict[str, Resources]:
    """STAGE_RESOURCES with studio.toml's ``[resources.<stage>]`` over them; bad names or values raise StudioError."""
    out = dict(STAGE_RESOURCES)
    for stage, values in table.items():
        where = f"{path} [resources.{stage}]"
        if stage not in STAGE_RESOURCES:
            raise StudioError(f"{where}: unknown stage{suggestion(stage, list(STAGE_RESOURCES))} "
                              f"(stages: {', '.join(STAGE_RESOURCES)})")
        _check_keys(values, {"cpus", "memory_mb", "gpus"}, where)
        merged = {**out[stage].__dict__, **values}
        if not all(isinstance(v, (int, float)) and v >= 0 for v in merged.values()) or merged["cpus"] <= 0:
            raise StudioError(f"{where}: cpus must be > 0, memory_mb and gpus >= 0 (numbers), got {values}")
        out[stage] = Resources(float(merged["cpus"]), int(merged["memory_mb"]), float(merged["gpus"]))
    return out


def take_resources(resources: dict[str, Resources], stages: tuple[str, ...]) -> Resources:
    """What a take's task asks for: the most any of its stages but detect needs (detect runs in its own tasks)."""
    chosen = [resources[s] for s in stages if s != "detect"] or [resources["sync"]]
    return Resources(max(r.cpus for r in chosen), max(r.memory_mb for r in chosen), max(r.gpus for r in chosen))


def _date(text: Any, where: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError as e:
        raise StudioError(f"{where}: date {text!r} is not an ISO date (2026-12-04 or 2026-12-04T13:00)") from e


def _name_date(name: str) -> dt.datetime | None:
    m = _DATE.match(name)
    if not m:
        return None
    try:
        day = dt.datetime.fromisoformat(m.group(1))
    except ValueError:
        return None
    return day.replace(hour=int(m.group(2)), minute=int(m.group(3))) if m.group(2) else day


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise StudioError(f"{where} must be a table, got {table!r}")
    for key in table:
        if key not in allowed:
            raise StudioError(f"{where}: unknown key {key!r}{suggestion(key, sorted(allowed))} "
                              f"(valid: {', '.join(sorted(allowed))})")


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        raw = load_toml(path)
    except (ConfigError, ValueError) as e:
        raise StudioError(f"{path}: {e}; fix the file (TOML) or remove it to use the defaults") from e
    for table in raw:
        if table not in _TABLES:
            raise StudioError(f"{path}: unknown table [{table}]{suggestion(table, sorted(_TABLES))} "
                              f"(valid: {', '.join(sorted(_TABLES))})")
    return raw


def _sessions_under(folder: Path, exclude: set[str]) -> dict[str, Path]:
    found = {}
    for p in sorted(folder.iterdir(), key=lambda q: natural_key(q.name)) if folder.is_dir() else []:
        if p.is_dir() and not p.name.startswith(".") and p.name not in exclude and Session(p).is_session():
            found[p.name] = p
    return found


def read_studio(root: str | Path) -> Studio:
    """Read a studio folder (see the module docstring); raises StudioError naming the file and the remedy."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise StudioError(f"{root}: no such studio folder; give the folder that holds the takes (and studio.toml)")
    path = root / STUDIO_FILE
    raw = _read_toml(path)
    studio = raw.get("studio", {})
    _check_keys(studio, _STUDIO_KEYS, f"{path} [studio]")
    defaults = raw.get("defaults", {})
    if defaults:
        try:
            check_tables(defaults, f"{path} [defaults]")
        except ConfigError as e:
            raise StudioError(f"{e}; [defaults.<table>] holds session.toml tables shared by every take") from e
    calibrations_dir = root / studio.get("calibrations", "calibrations")
    calibrations = _sessions_under(calibrations_dir, set())
    takes_dir = root / studio.get("takes", "takes")
    if "takes" in studio and not takes_dir.is_dir():
        raise StudioError(f"{path} [studio] takes = {studio['takes']!r}: {takes_dir} is not a folder; create it or "
                          "fix the setting")
    if not takes_dir.is_dir():
        takes_dir = root
    found = _sessions_under(takes_dir, {calibrations_dir.name, SUMMARY_DIR} if takes_dir == root else set())
    per_take = raw.get("take", {})
    for name, table in per_take.items():
        _check_keys(table, _TAKE_KEYS, f"{path} [take.{name}]")
        if name not in found:
            raise StudioError(f"{path} [take.{name}]: no take {name!r} in {takes_dir}{suggestion(name, list(found))}")
    cal_dates = {}
    for name, table in raw.get("calibration", {}).items():
        _check_keys(table, _CALIBRATION_KEYS, f"{path} [calibration.{name}]")
        if name not in calibrations:
            raise StudioError(f"{path} [calibration.{name}]: no calibration session {name!r} in {calibrations_dir}"
                              f"{suggestion(name, list(calibrations))}")
        if "date" in table:
            cal_dates[name] = _date(table["date"], f"{path} [calibration.{name}]")
    for name in calibrations:
        cal_dates.setdefault(name, _name_date(name))
    resources = stage_resources(raw.get("resources", {}), path)
    result = Studio(root, str(studio.get("name", root.name)), [], calibrations, defaults, resources)
    default_cal = studio.get("calibration")
    if default_cal is not None and default_cal not in calibrations:
        raise StudioError(f"{path} [studio] calibration = {default_cal!r}: no such calibration session in "
                          f"{calibrations_dir}{suggestion(str(default_cal), list(calibrations))}")
    if not found:
        raise StudioError(f"{root}: no take found in {takes_dir} (a take is a session folder: session.toml, videos/ "
                          "...); put the takes there, or set [studio] takes in studio.toml")
    for name, take_root in found.items():
        table = per_take.get(name, {})
        if table.get("skip"):
            result.skipped.append(name)
            continue
        date = _date(table["date"], f"{path} [take.{name}]") if "date" in table else _name_date(name)
        try:
            calibration = _choose_calibration(name, Session(take_root), table, date, calibrations, cal_dates,
                                              default_cal, path)
        except StudioError as e:
            result.problems[name] = str(e)
            calibration = None
        result.takes.append(Take(name, take_root, calibration, date))
    return result


def _choose_calibration(name: str, session: Session, table: dict[str, Any], date: dt.datetime | None,
                        calibrations: dict[str, Path], cal_dates: dict[str, dt.datetime | None],
                        default: str | None, path: Path) -> str | None:
    """The calibration session a take uses (None: it has its own board recordings or calibration.toml)."""
    named = table.get("calibration")
    if named is not None:
        if named not in calibrations:
            raise StudioError(f"take {name}: {path} [take.{name}] calibration = {named!r} is not a calibration session "
                              f"(have: {', '.join(calibrations) or 'none'}){suggestion(str(named), list(calibrations))}")
        return str(named)
    if session.calibration_sources():
        return None
    if session.calibration_path.exists() and not (session.report_dir / MARKER).exists():
        return None
    if date is not None:
        dated = [(d, n) for n, d in cal_dates.items() if d is not None and d <= date]
        if dated:
            return max(dated)[1]
    if default is not None:
        return str(default)
    if len(calibrations) == 1:
        return next(iter(calibrations))
    have = ", ".join(calibrations) or "none"
    raise StudioError(f"take {name}: no calibration (no board recordings or calibration.toml in the take, calibration "
                      f"sessions: {have}); name one in {path} [take.{name}] calibration = \"...\", give dates, or set "
                      "[studio] calibration")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_calibration(take: Session, calibration: Session, name: str) -> str:
    """Copy the calibration session's calibration.toml into the take (atomically), unless the take holds one the
    batch did not put there. Returns what was done, for the take's summary."""
    source = calibration.calibration_path
    if not source.exists():
        raise FileNotFoundError(f"calibration session {name} ({calibration.root}) has no {source.name}; its board "
                                f"recordings did not calibrate (see {calibration.stage_report_path('calibrate')})")
    target = take.calibration_path
    marker = take.report_dir / MARKER
    wanted = _digest(source)
    if target.exists():
        record = json.loads(marker.read_text()) if marker.exists() else None
        ours = record is not None and record.get("sha256") == _digest(target)
        if not ours:
            return f"kept the take's own {target.name} (calibration session {name} not used)"
        if record.get("sha256") == wanted:
            return f"calibration from {name} (unchanged)"
    write_bytes_atomic(target, source.read_bytes())
    shutil.copystat(source, target)
    write_json_atomic(marker, {"calibration_session": name, "source": str(source), "sha256": wanted})
    return f"calibration from {name}"


# ---- the summary table -------------------------------------------------------------------------------------
KEY_FIGURES = {
    "detect": ("frames", "detection_frames_per_second"),
    "triangulate": ("fraction_triangulated", "mean_reprojection_error_px"),
    "fit": ("keypoint_residual_median_mm", "flips", "foot_sliding_mm_s"),
}
"""Stage -> the figures of its report shown in the summary."""


def take_figures(session: Session) -> tuple[dict[str, Any], list[str]]:
    """A take's key figures (stage.figure -> value) and every stage's warnings ("stage: text")."""
    figures: dict[str, Any] = {}
    warnings: list[str] = []
    run = session.read_stage_report("run") or {}
    for outcome in run.get("outcomes", []):
        stage = outcome["stage"]
        figures[f"{stage}.seconds"] = outcome.get("seconds")
        try:
            report = session.read_stage_report(stage) or {}
        except (OSError, json.JSONDecodeError):
            continue
        if outcome.get("status") == "ran" or outcome.get("status") == "up to date":
            figures[f"{stage}.seconds"] = report.get("seconds", outcome.get("seconds"))
        for key in KEY_FIGURES.get(stage, ()):
            value = report.get("figures", {}).get(key)
            if isinstance(value, (int, float)):
                figures[f"{stage}.{key}"] = round(float(value), 4)
        warnings += [f"{stage}: {w}" for w in report.get("warnings", [])]
    return figures, warnings


def write_summary(studio: Studio, rows: list[dict[str, Any]], extra: dict[str, Any]) -> tuple[Path, Path]:
    """Write batch/summary.json and batch/summary.html atomically; returns their paths."""
    out = studio.summary_dir
    data = {"studio": studio.name, "root": str(studio.root), **extra, "takes": rows}
    json_path = write_json_atomic(out / "summary.json", data)
    columns = sorted({k for r in rows for k in r.get("figures", {})})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["take", "status", "seconds", *columns, "warnings"])
    body = []
    for r in rows:
        colour = {"failed": "#fdd", "done": "#dfd"}.get(r["status"], "#eee")
        cells = [html.escape(r["take"]), html.escape(r["status"] + (f": {r['error']}" if r.get("error") else "")),
                 f"{r.get('seconds', 0):.1f}"]
        cells += [html.escape("" if r.get("figures", {}).get(c) is None else f"{r['figures'][c]:g}") for c in columns]
        cells.append("<br>".join(html.escape(w) for w in r.get("warnings", [])))
        body.append(f"<tr style='background:{colour}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    facts = "".join(f"<li>{html.escape(str(k))}: {html.escape(json.dumps(v))}</li>" for k, v in extra.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>batch {html.escape(studio.name)}</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px;"
            "vertical-align:top}table{border-collapse:collapse}</style></head><body>"
            f"<h1>Batch of studio {html.escape(studio.name)}</h1><ul>{facts}</ul>"
            f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>")
    html_path = write_text_atomic(out / "summary.html", page)
    return json_path, html_path


__all__ = ["KEY_FIGURES", "MARKER", "STAGE_RESOURCES", "STUDIO_FILE", "Resources", "Studio", "StudioError",
           "StudioSession", "Take", "install_calibration", "read_studio", "stage_resources", "take_figures",
           "take_resources", "write_summary"]
