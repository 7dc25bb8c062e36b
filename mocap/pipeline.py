"""``mocap run``: every stage of a take in order, each skipped when its inputs are unchanged.

Order: calibrate, detect, sync, triangulate, fit, export, report. Detection comes before sync so that a take
without sound can be synchronized from the keypoints' motion; with audio the order does not matter. Each
stage is the same function its own command calls, so a stage's outputs, report and skip rule are the same
whether it ran alone or here. ``report/run.json`` records what every stage did on the last run (ran, was up
to date, was not needed, failed), how long it took, and the error if one stopped the run.

A failing stage stops the run with a :class:`PipelineError` naming the stage and what to do; everything
earlier stages wrote stays (every output is written atomically), so the next run resumes at that stage.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mocap_studio.common.fileio import write_json_atomic
from mocap_studio.session import Session

log = logging.getLogger(__name__)

STAGES = ("calibrate", "detect", "sync", "triangulate", "fit", "export", "report")
MODELS = ("anny", "smpl", "smplh", "smplx")

Progress = Callable[[str, int, int | None], None]
"""progress(label, done, total): the current stage's own progress (total None when unknown)."""


@dataclass(frozen=True)
class RunConfig:
    """The ``[run]`` table of session.toml; command-line options override it."""

    stages: tuple[str, ...] = STAGES
    """Stages to run, a subset of calibrate, detect, sync, triangulate, fit, export, report (run in that order)."""
    model: str = ""
    """Body model for the fit: anny (default), smpl, smplh or smplx; empty keeps the [fit] table's choice."""
    formats: tuple[str, ...] = ()
    """Export formats (see ``mocap export``); empty keeps the [export] table's choice."""
    rig: str = ""
    """Export target rig; empty keeps the [export] table's choice."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
        if self.model and self.model not in MODELS:
            raise ValueError(f"unknown body model {self.model!r}; choose from {list(MODELS)}")


@dataclass
class StageOutcome:
    stage: str
    status: str
    """"ran", "up to date", "not needed" (with the reason in ``note``), "failed" or "interrupted"."""
    seconds: float = 0.0
    note: str = ""


@dataclass
class RunResult:
    outcomes: list[StageOutcome] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(o.seconds for o in self.outcomes)

    def by_stage(self) -> dict[str, StageOutcome]:
        return {o.stage: o for o in self.outcomes}


class PipelineError(RuntimeError):
    """A stage failed; the message names the stage, the cause, and says how to resume."""


class NotNeeded(Exception):
    """Raised by a stage step that has nothing to do for this take (the message says why)."""


def _written(session: Session, stage: str) -> str | None:
    report = session.read_stage_report(stage)
    return None if report is None else f"{report.get('written')}:{report.get('inputs_fingerprint')}"


# ---- one step per stage: the same runners the stage commands call ----------------------------------------
def _calibrate(session: Session, force: bool, progress: Progress | None) -> None:
    from mocap_studio.stages_calibration import run_session

    if not session.calibration_sources():
        if session.calibration_path.exists():
            raise NotNeeded(f"no board recordings in {session.calibration_recordings_dir.name}/; "
                            f"using the existing {session.calibration_path.name}")
        raise FileNotFoundError(
            f"{session.root}: neither board recordings ({session.calibration_recordings_dir}/<camera>.mp4) nor a "
            f"calibration file ({session.calibration_path}); record the board with every camera, or copy a "
            "calibration (aniposelib/Pose2Sim TOML) there")
    run_session(session, force=force, progress=progress)


def _detect(session: Session, force: bool, progress: Progress | None) -> None:
    from mocap_studio.stages_keypoints import run_detect

    if session.keypoints2d_path.exists():
        if session.read_stage_report("import-keypoints"):
            raise NotNeeded("keypoints2d.npz was imported (mocap import-keypoints); not detecting over it")
        if not session.performance_sources():
            raise NotNeeded("no recordings; using the existing keypoints2d.npz")

    def detect_progress(done: int, total: int, fps: float) -> None:
        if progress:
            progress(f"detecting keypoints ({fps:.0f} frames/s)", done, total)

    run_detect(session, None, force, detect_progress)


def _sync(session: Session, force: bool, progress: Progress | None) -> None:
    from mocap_studio.stages_capture import run_sync

    if len(session.performance_sources()) < 2:
        raise NotNeeded("fewer than two camera recordings to compare; keypoints taken as synchronized")
    if session.sync_path.exists() and session.read_stage_report("sync") is None:
        raise NotNeeded(f"using the existing {session.sync_path.name} (not written by mocap sync)")
    run_sync(session, None, force)


def _triangulate(session: Session, force: bool, progress: Progress | None) -> None:
    from mocap_studio.stages_keypoints import run_triangulate

    run_triangulate(session, None, force)


def _fit(session: Session, force: bool, progress: Progress | None, model: str = "") -> None:
    from mocap_studio.stages_body import run_fit

    run_fit(session, {"model": model or None}, force=force)


def _export(session: Session, force: bool, progress: Progress | None, formats: tuple[str, ...] = (),
            rig: str = "") -> None:
    from mocap_studio.stages_export import ExportConfig, run_export

    config = session.stage_config("export", ExportConfig)
    if formats:
        config = replace(config, formats=tuple(formats))
    if rig:
        config = replace(config, rig=rig)
    run_export(session, config, overwrite=force)


def _report(session: Session, force: bool, progress: Progress | None) -> None:
    from mocap_studio.report import write_report

    write_report(session, progress=progress)


def _explain(error: BaseException) -> str:
    """The error's own message, plus advice for the failures every stage can meet."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" while writing {error.filename}" if error.filename else ""
        return (f"the disk is full{where}; free some space (the take's folder needs room for the stage's outputs) "
                "and run again")
    if isinstance(error, MemoryError):
        return "out of memory; close other programs, or process fewer cameras or frames at a time"
    text = str(error) or type(error).__name__
    return text if isinstance(error, (ValueError, KeyError, FileNotFoundError, RuntimeError)) else \
        f"{type(error).__name__}: {text}"


def run_pipeline(
    session: Session,
    config: RunConfig | None = None,
    force: tuple[str, ...] = (),
    progress: Progress | None = None,
    on_stage: Callable[[StageOutcome], None] | None = None,
    before: Callable[[str, RunResult], None] | None = None,
) -> RunResult:
    """Run the chosen stages of ``session`` in order; returns what each did.

    ``force`` names stages to redo even when up to date; ``before(stage, result so far)`` is called before
    each stage runs. Raises :class:`PipelineError` when a stage fails
    (after writing ``report/run.json``); a KeyboardInterrupt is recorded there too and passed on.
    """
    if not session.root.is_dir():
        raise FileNotFoundError(f"{session.root}: no such session folder")
    if config is None:
        config = session.stage_config("run", RunConfig)
    steps: dict[str, Callable[..., None]] = {
        "calibrate": _calibrate, "detect": _detect, "sync": _sync, "triangulate": _triangulate,
        "fit": lambda s, f, p: _fit(s, f, p, config.model),
        "export": lambda s, f, p: _export(s, f, p, config.formats, config.rig),
        "report": _report,
    }
    chosen = [s for s in STAGES if s in config.stages]
    result = RunResult()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def record(error: str | None = None) -> None:
        write_json_atomic(session.stage_report_path("run"), {
            "stage": "run", "started": started, "stages": chosen, "seconds": round(result.seconds, 3),
            "outcomes": [{"stage": o.stage, "status": o.status, "seconds": round(o.seconds, 3), "note": o.note}
                         for o in result.outcomes],
            "error": error,
        })

    for i, stage in enumerate(chosen, 1):
        log.info("[%d/%d] %s", i, len(chosen), stage)
        previous = _written(session, stage)
        t0 = time.perf_counter()
        try:
            if before:
                before(stage, result)
            steps[stage](session, stage in force, progress)
        except NotNeeded as e:
            outcome = StageOutcome(stage, "not needed", time.perf_counter() - t0, str(e))
        except KeyboardInterrupt:
            result.outcomes.append(StageOutcome(stage, "interrupted", time.perf_counter() - t0))
            record(f"interrupted during {stage}")
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes one clear message
            message = _explain(e)
            result.outcomes.append(StageOutcome(stage, "failed", time.perf_counter() - t0, message))
            record(f"{stage}: {message}")
            if on_stage:
                on_stage(result.outcomes[-1])
            done = [o.stage for o in result.outcomes if o.status in ("ran", "up to date", "not needed")]
            kept = f"the outputs of {', '.join(done)} are kept" if done else "nothing was changed"
            raise PipelineError(
                f"stage '{stage}' failed: {message}\n{kept}; fix this and run `mocap run {session.root}` again "
                f"to resume at '{stage}'") from e
        else:
            after = _written(session, stage)
            status = "up to date" if previous is not None and after == previous and stage not in force else "ran"
            outcome = StageOutcome(stage, status, time.perf_counter() - t0)
        result.outcomes.append(outcome)
        record()
        if on_stage:
            on_stage(outcome)
    return result


def run_figures(session: Session) -> dict[str, Any]:
    """The last run's record (``report/run.json``), or {} when the take was never run."""
    return session.read_stage_report("run") or {}


__all__ = ["MODELS", "STAGES", "NotNeeded", "PipelineError", "RunConfig", "RunResult", "StageOutcome",
           "run_figures", "run_pipeline"]
