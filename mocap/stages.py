"""The stage registry: every stage of a take behind one contract, shared by the pipeline, the command line and
``session.toml``.

The contract: a stage runner is ``run(session, config=None, overwrite=False, *, progress=None) -> StageReport``.
``config`` is the stage's config dataclass (``None`` reads its table of session.toml), ``overwrite`` redoes the
stage even when its inputs are unchanged, ``progress(label, done, total)`` reports long work. The returned
report is the one written to ``report/<stage>.json``; a stage skipped because it is up to date returns its
previous report with ``skipped`` set.

``TABLES`` lists every table session.toml may hold and the config dataclass it fills; an unknown table is an
error naming the nearest valid one (:func:`check_tables`), and so is an unknown key (``config_from_mapping``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mocap_studio.common.config import ConfigError

if TYPE_CHECKING:
    from mocap_studio.session import Session, StageReport

Progress = Callable[[str, int, int | None], None]
"""progress(label, done, total): the current stage's own progress (total None when unknown)."""

TABLES: dict[str, str] = {
    "session": "mocap_studio.session:SessionConfig",
    "run": "mocap_studio.pipeline:RunConfig",
    "record": "mocap_studio.capture.record:RecordConfig",
    "calibrate": "mocap_studio.calibration.calibrate:CalibrationConfig",
    "detect": "mocap_studio.reconstruction.detect2d:DetectionConfig",
    "associate": "mocap_studio.reconstruction.associate:AssociationConfig",
    "import-keypoints": "mocap_studio.stages_keypoints:ImportConfig",
    "sync": "mocap_studio.capture.sync:SyncConfig",
    "triangulate": "mocap_studio.reconstruction.triangulate:TriangulationConfig",
    "filter": "mocap_studio.reconstruction.filtering:FilterConfig",
    "fit": "mocap_studio.reconstruction.body.fitting:FitConfig",
    "export": "mocap_studio.stages_export:ExportConfig",
    "retarget": "mocap_studio.export.retarget:RetargetConfig",
    "report": "mocap_studio.report:ReportConfig",
}
"""session.toml table -> the config dataclass it fills ("module:Class", imported when needed)."""


class NotNeeded(Exception):
    """Raised before a stage runs when it has nothing to do for this take (the message says why)."""


def _resolve(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def config_class(table: str) -> type:
    """The config dataclass of a session.toml table (see ``TABLES``)."""
    check_table_name(table, "session.toml")
    return _resolve(TABLES[table])


def suggestion(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """"; did you mean X?" for the valid name nearest to ``name``, or "" when none is near."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def check_table_name(table: str, where: str | Path) -> None:
    """Raise ConfigError when ``table`` is not a table session.toml may hold, naming the nearest valid one."""
    if table not in TABLES:
        close = difflib.get_close_matches(table, list(TABLES), n=1)
        hint = f"; did you mean [{close[0]}]?" if close else f"; valid tables are {', '.join(TABLES)}"
        raise ConfigError(f"unknown table [{table}] in {where}{hint}")


def check_tables(raw: Mapping[str, Any], where: str | Path) -> None:
    """Every top-level entry of a parsed session.toml is a known table (a mapping); raise ConfigError if not."""
    for table, value in raw.items():
        check_table_name(table, where)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{table}] must be a table, got {value!r}")


@dataclass(frozen=True)
class Stage:
    """One stage: its name (also its command and its report's name), its session.toml table and its runner."""

    name: str
    table: str
    runner: str
    """"module:function" of ``run(session, config=None, overwrite=False, *, progress=None) -> StageReport``."""
    summary: str

    def config_class(self) -> type:
        """The stage's config dataclass."""
        return config_class(self.table)

    def load_config(self, session: Session, overrides: Mapping[str, Any] | None = None,
                    options: Mapping[str, str] | None = None) -> Any:
        """The stage's config: its session.toml table, then ``overrides`` (blamed on ``options`` when bad)."""
        return session.stage_config(self.table, self.config_class(), overrides, options)

    def run(self, session: Session, config: Any = None, overwrite: bool = False, *,
            progress: Progress | None = None) -> StageReport:
        """Run the stage on ``session`` (the one contract; see the module docstring)."""
        return _resolve(self.runner)(session, config, overwrite, progress=progress)


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("calibrate", "calibrate", "mocap_studio.stages_calibration:run_calibrate",
          "board recordings -> calibration.toml"),
    Stage("detect", "detect", "mocap_studio.stages_keypoints:run_detect", "recordings -> keypoints2d.npz"),
    Stage("import-keypoints", "import-keypoints", "mocap_studio.stages_keypoints:run_import_keypoints",
          "another detector's files -> keypoints2d.npz"),
    Stage("sync", "sync", "mocap_studio.stages_capture:run_sync", "recordings -> sync.json"),
    Stage("triangulate", "triangulate", "mocap_studio.stages_keypoints:run_triangulate",
          "keypoints2d.npz + calibration.toml + sync.json -> keypoints3d.npz, keypoints2d_synced.npz"),
    Stage("fit", "fit", "mocap_studio.stages_body:run_fit", "keypoints3d.npz -> body.npz"),
    Stage("export", "export", "mocap_studio.stages_export:run_export", "body.npz, keypoints3d.npz -> export/"),
    Stage("report", "report", "mocap_studio.report:run_report", "everything -> report/index.html"),
)}
"""Stage name -> :class:`Stage`; ``mocap run`` runs ``PIPELINE`` of them in order."""

PIPELINE: tuple[str, ...] = ("calibrate", "detect", "sync", "triangulate", "fit", "export", "report")
"""The stages of ``mocap run``, in order (import-keypoints replaces detect when used)."""


def effective_config(session: Session) -> dict[str, dict[str, Any]]:
    """Every table of session.toml with every key, defaults filled in (validating the whole file)."""
    check_tables(session.raw_config(), session.config_path)
    out: dict[str, dict[str, Any]] = {}
    for table in TABLES:
        config = session.config() if table == "session" else session.stage_config(table, config_class(table))
        out[table] = _plain(dataclasses.asdict(config))
    return out


def check_session_config(session: Session) -> None:
    """Read every table of the session's session.toml with its dataclass: unknown tables, unknown keys and bad
    values are a ConfigError naming the table (and the nearest valid name)."""
    effective_config(session)


def _plain(value: Any) -> Any:
    """A config value as TOML can hold it: tuples as lists, paths as text, None left out of tables."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


__all__ = ["NotNeeded", "PIPELINE", "Progress", "STAGES", "Stage", "TABLES", "check_session_config",
           "check_table_name", "check_tables", "config_class", "effective_config", "suggestion"]
