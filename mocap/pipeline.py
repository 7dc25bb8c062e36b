"""``mocap run``: every stage of a take in order, each skipped when its inputs are unchanged.

Order: calibrate, detect, sync, triangulate, fit, export, report. Detection comes before sync so that a take
without sound can be synchronized from the keypoints' motion; with audio the order does not matter. Each
stage is run through the stage registry (:mod:`mocap_studio.stages`), the same runner its own command calls
with the same contract (``run(session, config, overwrite) -> StageReport``), so a stage's outputs, report and
skip rule are the same whether it ran alone or here. ``report/run.json`` records what every stage did on the last run (ran, was up
to date, was not needed, failed), how long it took, and the error if one stopped the run.

Several people (``[associate] people``, see ``people.json``): the stages of :data:`PER_PERSON` run for every
person too, in the person's folder (``people/<id>/``, a :class:`session.PersonSession`), each person's before
the take's own (whose outputs stay the performer's, as in a single-performer take); ``report/run.json`` lists
them as ``<stage> <id>``.

A failing stage stops the run with a :class:`PipelineError` naming the stage and what to do; everything
earlier stages wrote stays (every output is written atomically), so the next run resumes at that stage.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mocap_studio.common.fileio import write_json_atomic
from mocap_studio.session import Session
from mocap_studio.stages import PIPELINE, NotNeeded, Progress, check_session_config
from mocap_studio.stages import STAGES as REGISTRY

log = logging.getLogger(__name__)

STAGES = PIPELINE
PER_PERSON = ("triangulate", "fit", "export", "report")
"""Stages run once per person of a several-people take (in ``people/<id>/``) besides the take's own."""
MODELS = ("anny", "smpl", "smplh", "smplx")


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
    """What one stage did in a run."""

    stage: str
    status: str
    """"ran", "up to date", "not needed" (with the reason in ``note``), "failed" or "interrupted"."""
    seconds: float = 0.0
    note: str = ""


@dataclass
class RunResult:
    """What every stage of a run did, in order."""

    outcomes: list[StageOutcome] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Seconds spent in every stage together."""
        return sum(o.seconds for o in self.outcomes)

    def by_stage(self) -> dict[str, StageOutcome]:
        """Stage name -> its outcome."""
        return {o.stage: o for o in self.outcomes}


class PipelineError(RuntimeError):
    """A stage failed; the message names the stage, the cause, and says how to resume."""


# ---- when a stage has nothing to do for this take (raise NotNeeded with the reason) -------------------------
def _calibrate_needed(session: Session) -> None:
    if not session.calibration_sources():
        if session.calibration_path.exists():
            raise NotNeeded(f"no board recordings in {session.calibration_recordings_dir.name}/; "
                            f"using the existing {session.calibration_path.name}")
        raise FileNotFoundError(
            f"{session.root}: neither board recordings ({session.calibration_recordings_dir}/<camera>.mp4) nor a "
            f"calibration file ({session.calibration_path}); record the board with every camera, or copy a "
            "calibration (aniposelib/Pose2Sim TOML) there")


def _detect_needed(session: Session) -> None:
    if session.keypoints2d_path.exists():
        if session.read_stage_report("import-keypoints"):
            raise NotNeeded("keypoints2d.npz was imported (mocap import-keypoints); not detecting over it")
        if not session.performance_sources():
            raise NotNeeded("no recordings; using the existing keypoints2d.npz")


def _sync_needed(session: Session) -> None:
    if len(session.performance_sources()) < 2:
        raise NotNeeded("fewer than two camera recordings to compare; keypoints taken as synchronized")
    if session.sync_path.exists() and session.read_stage_report("sync") is None:
        raise NotNeeded(f"using the existing {session.sync_path.name} (not written by mocap sync)")


NEEDED: dict[str, Callable[[Session], None]] = {
    "calibrate": _calibrate_needed, "detect": _detect_needed, "sync": _sync_needed,
}
"""Stage -> a check that raises NotNeeded when the stage has nothing to do for the take."""


def stage_overrides(config: RunConfig) -> dict[str, dict[str, Any]]:
    """The [run] table's settings as overrides of the stages' own tables (empty values keep theirs)."""
    return {"fit": {"model": config.model or None},
            "export": {"formats": tuple(config.formats) or None, "rig": config.rig or None}}


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
    overwrite: tuple[str, ...] = (),
    progress: Progress | None = None,
    on_stage: Callable[[StageOutcome], None] | None = None,
    before: Callable[[str, RunResult], None] | None = None,
) -> RunResult:
    """Run the chosen stages of ``session`` in order; returns what each did.

    ``overwrite`` names stages to redo even when up to date; ``before(stage, result so far)`` is called before
    each stage runs. Every table of session.toml is checked first (an unknown table or key stops the run before
    anything runs). Raises :class:`PipelineError` when a stage fails (after writing ``report/run.json``); a
    KeyboardInterrupt is recorded there too and passed on.
    """
    session.require()
    check_session_config(session)
    if config is None:
        config = session.stage_config("run", RunConfig)
    overrides = stage_overrides(config)
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
        t0 = time.perf_counter()
        try:
            if before:
                before(stage, result)
            NEEDED.get(stage, lambda s: None)(session)
            spec = REGISTRY[stage]
            stage_config = spec.load_config(session, overrides.get(stage))
            if stage in PER_PERSON:
                _each_person(session, stage, stage_config, stage in overwrite, progress, result, on_stage)
            report = spec.run(session, stage_config, stage in overwrite, progress=progress)
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
            status = "up to date" if report.skipped else "ran"
            outcome = StageOutcome(stage, status, time.perf_counter() - t0)
        result.outcomes.append(outcome)
        record()
        if on_stage:
            on_stage(outcome)
    return result


def _each_person(session: Session, stage: str, config: Any, overwrite: bool, progress: Progress | None,
                 result: RunResult, on_stage: Callable[[StageOutcome], None] | None) -> None:
    """Run ``stage`` for every person of the take (``people.json``), recording ``<stage> <id>`` outcomes; a
    failure is raised naming the person."""
    spec = REGISTRY[stage]
    for person in session.people():
        t0 = time.perf_counter()
        try:
            report = spec.run(person, config, overwrite, progress=progress)
        except NotNeeded as e:
            outcome = StageOutcome(f"{stage} {person.person_id}", "not needed", time.perf_counter() - t0, str(e))
        except Exception as e:  # noqa: BLE001 - named after the person, then handled as the stage's failure
            raise RuntimeError(f"person {person.person_id} ({person.root}): {_explain(e)}") from e
        else:
            outcome = StageOutcome(f"{stage} {person.person_id}", "up to date" if report.skipped else "ran",
                                   time.perf_counter() - t0)
        result.outcomes.append(outcome)
        if on_stage:
            on_stage(outcome)


def run_figures(session: Session) -> dict[str, Any]:
    """The last run's record (``report/run.json``), or {} when the take was never run."""
    return session.read_stage_report("run") or {}


__all__ = ["MODELS", "NEEDED", "PER_PERSON", "STAGES", "NotNeeded", "PipelineError", "RunConfig", "RunResult", "StageOutcome",
           "run_figures", "run_pipeline"]
