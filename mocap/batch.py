"""``mocap batch STUDIO``: every take of a studio folder that is not up to date, on Ray.

Ray is an extra (``pip install 'mocap-studio[cluster]'``) imported only here, lazily: ``mocap run`` never needs it.
By default a local Ray runtime is started on this machine; ``address`` ("auto", "ray://HOST:PORT" or a GCS
"HOST:PORT") joins an existing cluster. The studio folder must be at the same path on every node (shared
storage): each stage reads and writes its take's session folder as it does under ``mocap run``.

The work is a graph of Ray tasks, submitted and watched by this process:

- ``calibrate``: one task per calibration session that some take uses (the calibrate stage, resumable).
- prepare (in this process, which sees the studio folder too): per take, after its calibration, copy the calibration
  session's calibration.toml in (see :func:`batch_studio.install_calibration`) and plan detection exactly as the
  detect stage will (the same camera/chunk jobs), unless detection is up to date or not needed.
- ``detect``: one task per camera and chunk of frames (``[detect] chunk_frames``); the keypoints and masks go
  back through Ray's object store, not through files.
- ``take``: the rest of the take, ``run_pipeline`` over every stage as ``mocap run`` does, with the chunks
  detected above handed to the detect stage (:func:`reconstruction.detect2d.detection_executor`); so outputs,
  reports and skip rules are those of ``mocap run``.

Each task asks for its stage's resources (``batch_studio.STAGE_RESOURCES``, ``[resources.<stage>]`` in
studio.toml). A task whose worker dies (killed, out of memory, node lost) is retried by Ray (``max_retries``); a
retried take resumes at the stage it was in, since every stage skips when up to date. A take that fails (bad input,
retries spent) is reported in the summary and the others go on.

Test hook: with ``MOCAP_BATCH_FAULT_DIR`` naming a folder that exists, the first detect task and the first take
reaching its fit stage each kill their own worker process (SIGKILL), once (a marker file in that folder says it
happened and holds the killed process's id).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mocap_studio.batch_studio import (
    Resources,
    Studio,
    StudioError,
    StudioSession,
    Take,
    install_calibration,
    read_studio,
    take_figures,
    take_resources,
    write_summary,
)
from mocap_studio.pipeline import NEEDED, STAGES, PipelineError, RunConfig, run_pipeline
from mocap_studio.session import Session
from mocap_studio.stages import NotNeeded

log = logging.getLogger(__name__)

FAULT_ENV = "MOCAP_BATCH_FAULT_DIR"
MAX_RETRIES = 3
"""Times Ray retries a task whose worker died."""


class BatchError(RuntimeError):
    """The batch cannot start (no Ray, a bad studio folder, no cluster at the address); the message says what to do."""


def import_ray() -> Any:
    """Ray, or a BatchError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise BatchError("mocap batch runs on Ray, which is not installed: pip install 'mocap-studio[cluster]' (ray==2.60.0)"
                         "; a single take needs no Ray (`mocap run SESSION`)") from e
    return ray


# ---- what travels between tasks -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TakeSpec:
    """A take as a task sees it."""

    name: str
    root: str
    defaults: dict[str, Any]
    calibration: str | None
    calibration_root: str | None
    overwrite: tuple[str, ...] = ()
    threads: int = 1

    def session(self) -> StudioSession:
        """The take's session with the studio's shared settings."""
        return StudioSession(self.root, self.defaults)


@dataclass(frozen=True)
class ChunkFailure:
    """A detect task that raised: the error goes to the detect stage, which reports it as under ``mocap run``."""

    error: BaseException


def _job_key(job: Any) -> str:
    return json.dumps([job.camera, job.source, job.start, job.stop, job.fps, job.config], sort_keys=True, default=str)


class PrecomputedExecutor:
    """Hands the detect stage the chunks the batch detected in Ray tasks; a job it was not given is detected here."""

    def __init__(self, chunks: Sequence[tuple[str, Any]]):
        self._chunks = dict(chunks)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        """``fn`` over ``items``, taking each item's result from the precomputed chunks where there is one."""
        for item in items:
            found = self._chunks.pop(_job_key(item), None)
            if found is None:
                yield fn(item)
            elif isinstance(found, ChunkFailure):
                raise found.error
            else:
                yield found


def _fault(kind: str) -> None:
    """The test hook (module docstring): kill this worker the first time ``kind`` is reached in the batch."""
    folder = os.environ.get(FAULT_ENV)
    if not folder or not Path(folder).is_dir():
        return
    try:
        fd = os.open(Path(folder) / f"killed-{kind}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


# ---- the tasks (plain functions; Ray wraps them in run_batch) --------------------------------------------------
def calibrate_task(root: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Calibrate one calibration session (its calibrate stage, skipped when up to date)."""
    session = StudioSession(root, defaults)
    try:
        result = run_pipeline(session, RunConfig(stages=("calibrate",)))
    except PipelineError as e:
        return {"ok": False, "error": str(e)}
    return {"ok": True, "status": result.outcomes[0].status}


def prepare_task(spec: TakeSpec, calibrated: dict[str, Any] | None) -> dict[str, Any]:
    """Install the take's calibration and plan its detection; returns {"calibration", "jobs", "error"}. Run by the
    driver (cheap: probes the recordings and fingerprints the inputs)."""
    from mocap_studio.common.config import config_to_mapping
    from mocap_studio.reconstruction.detect2d import DetectionConfig, plan_jobs

    session = spec.session()
    out: dict[str, Any] = {"calibration": "", "jobs": [], "error": None}
    try:
        session.require()
        if spec.calibration is not None:
            if calibrated is not None and not calibrated.get("ok"):
                raise RuntimeError(f"calibration session {spec.calibration} failed: {calibrated.get('error')}")
            out["calibration"] = install_calibration(session, Session(spec.calibration_root), spec.calibration)
        if "detect" not in spec.overwrite:
            NEEDED["detect"](session)
        config = session.stage_config("detect", DetectionConfig)
        if not config.frame_rate and session.config().frame_rate:
            config = DetectionConfig(**{**config_to_mapping(config), "frame_rate": session.config().frame_rate})
        sources = session.performance_sources()
        if not sources:
            return out  # the detect stage says what is missing
        fingerprint = session.inputs_fingerprint(list(sources.values()) + [session.calibration_path],
                                                 config_to_mapping(config))
        if "detect" not in spec.overwrite and session.is_up_to_date("detect", fingerprint, [session.keypoints2d_path]):
            return out
        out["jobs"] = plan_jobs(sources, config)[0]
    except NotNeeded:
        pass
    except Exception as e:  # noqa: BLE001 - reported for this take; the others go on
        out["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, (ValueError, OSError, RuntimeError)) else str(e)
    return out


def detect_task(job: Any) -> tuple[str, Any]:
    """One camera's chunk of frames -> (job key, ChunkResult or ChunkFailure)."""
    from mocap_studio.reconstruction.detect2d import detect_chunk

    _fault("detect")
    try:
        result = detect_chunk(job)
        log.info("detected %s frames %d-%d on node %s in %.1f s", job.camera, job.start, job.stop, _node_id(),
                 result.seconds)
        return _job_key(job), result
    except Exception as e:  # noqa: BLE001 - handed to the detect stage, which names the camera and file
        return _job_key(job), ChunkFailure(e)


class Board:
    """A Ray actor the take tasks tell what they are doing; the batch's progress view reads it."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Any]] = {}

    def update(self, take: str, **values: Any) -> None:
        """Merge ``values`` into the take's state."""
        self.state.setdefault(take, {}).update(values)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every take's state."""
        return self.state


def _node_id() -> str:
    """The Ray node this task runs on (short id), "" outside Ray."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # noqa: BLE001 - only a label for the summary
        return ""


def _chunk_bytes(chunks: Sequence[tuple[str, Any]]) -> int:
    """Bytes of the detected chunks' arrays (what came to this task through the object store)."""
    total = 0
    for _, chunk in chunks:
        for name in ("xy", "confidence", "times", "masks"):
            total += int(getattr(getattr(chunk, name, None), "nbytes", 0) or 0)
    return total


def take_task(spec: TakeSpec, board: Any, prepared: dict[str, Any], *chunks: tuple[str, Any]) -> dict[str, Any]:
    """Every stage of the take, as ``mocap run`` runs them, with the detected chunks; returns its summary row."""
    from mocap_studio.reconstruction.detect2d import detection_executor

    try:
        import torch

        torch.set_num_threads(max(1, spec.threads))
        from mocap_studio.reconstruction.body.fit_silhouette import limit_race_cores

        limit_race_cores(spec.threads)  # the shape fit's race forks no more workers than the task's cores
    except ImportError:  # the fit says what is missing
        pass
    t0 = time.perf_counter()
    session = spec.session()
    row: dict[str, Any] = {"take": spec.name, "root": spec.root, "calibration": prepared.get("calibration", ""),
                           "chunks_detected_in_batch": len(chunks), "chunk_bytes": _chunk_bytes(chunks),
                           "pid": os.getpid(), "node": _node_id()}
    last = [0.0]

    def before(stage: str, result: Any) -> None:
        if stage == "fit":
            _fault("fit")
        board.update.remote(spec.name, stage=stage, label="", done=0, total=None)

    def progress(label: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] > 0.5 or (total is not None and done >= total):
            last[0] = now
            board.update.remote(spec.name, label=label, done=done, total=total)

    def on_stage(outcome: Any) -> None:
        board.update.remote(spec.name, finished=outcome.stage)

    error = prepared.get("error")
    result = None
    if error is None:
        try:
            with detection_executor(PrecomputedExecutor(chunks)):
                result = run_pipeline(session, None, overwrite=spec.overwrite, progress=progress, on_stage=on_stage,
                                      before=before)
        except Exception as e:  # noqa: BLE001 - a failed take is reported, the others go on
            error = str(e)
    if result is not None:
        ran = any(o.status == "ran" for o in result.outcomes)
        row["status"] = "done" if ran else "up to date"
        row["stages"] = {o.stage: o.status for o in result.outcomes}
    else:
        row["status"] = "failed"
        row["stages"] = {o["stage"]: o["status"] for o in (session.read_stage_report("run") or {}).get("outcomes", [])}
    row["error"] = error
    try:
        row["figures"], row["warnings"] = take_figures(session)
    except (OSError, ValueError) as e:
        row["figures"], row["warnings"] = {}, [f"summary: {e}"]
    row["seconds"] = round(time.perf_counter() - t0, 3)
    board.update.remote(spec.name, stage="", finished="all", status=row["status"])
    return row


# ---- the driver ---------------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    """What a batch did: one row per take (status, stages, figures, warnings), the summary files, the timing."""

    rows: list[dict[str, Any]]
    summary_json: Path
    summary_html: Path
    seconds: float
    cluster: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        """Takes that failed."""
        return [r["take"] for r in self.rows if r["status"] == "failed"]


ProgressView = Callable[[dict[str, dict[str, Any]], int, int], None]
"""view(state per take, takes finished, takes in all): called about twice a second while the batch runs."""


def _connect(ray: Any, address: str | None, cpus: int | None) -> bool:
    """Start or join Ray; returns True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    env = {k: v for k, v in os.environ.items() if k in (FAULT_ENV, "ANNY_CACHE_DIR", "WARP_CACHE_PATH")}
    runtime_env = {"env_vars": env} if env else None
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise BatchError(f"could not start or reach {where}: {e}; check the address (`ray status` on the head node), "
                         "or leave out --address to run on this machine") from e
    return True


def _specs(studio: Studio, overwrite: tuple[str, ...], threads: int) -> list[TakeSpec]:
    return [TakeSpec(t.name, str(t.root), studio.defaults, t.calibration,
                     str(studio.calibrations[t.calibration]) if t.calibration else None, overwrite, threads)
            for t in studio.takes]


def _failed_row(take: Take, error: str) -> dict[str, Any]:
    return {"take": take.name, "root": str(take.root), "status": "failed", "error": error, "stages": {},
            "figures": {}, "warnings": [], "seconds": 0.0}


def run_batch(studio_root: str | Path, address: str | None = None, cpus: int | None = None,
              overwrite: tuple[str, ...] = (), view: ProgressView | None = None,
              timeout_s: float | None = None) -> BatchResult:
    """Process every take of the studio folder that is not up to date (see the module docstring).

    ``address``: None starts a local Ray runtime (``cpus`` CPUs, default all); "auto" or "ray://HOST:PORT" joins
    a cluster. ``overwrite`` names stages to redo in every take; ``timeout_s`` stops waiting (BatchError, the
    tasks still running are cancelled; what finished is in the summary). Writes batch/summary.json and summary.html (also
    after each take, so an interrupted batch leaves what it did) and returns the rows.
    """
    studio = read_studio(studio_root)
    unknown = [s for s in overwrite if s not in STAGES]
    if unknown:
        raise BatchError(f"--overwrite: unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    ray = import_ray()
    started = _connect(ray, address, cpus)
    t0 = time.perf_counter()
    try:
        return _drive(ray, studio, overwrite, view, t0, address, timeout_s)
    finally:
        if started:
            ray.shutdown()


def _drive(ray: Any, studio: Studio, overwrite: tuple[str, ...], view: ProgressView | None, t0: float,
           address: str | None, timeout_s: float | None = None) -> BatchResult:
    res = studio.resources
    take_res: Resources = take_resources(res, STAGES)
    specs = _specs(studio, overwrite, max(1, int(take_res.cpus)))
    board = ray.remote(num_cpus=0, max_restarts=3)(Board).remote()
    calibrate = ray.remote(calibrate_task).options(max_retries=MAX_RETRIES, **res["calibrate"].ray_options())
    detect = ray.remote(detect_task).options(max_retries=MAX_RETRIES, **res["detect"].ray_options())
    take = ray.remote(take_task).options(max_retries=MAX_RETRIES, **take_res.ray_options())

    rows: dict[str, dict[str, Any]] = {}
    for t in studio.takes:
        if t.name in studio.problems:
            rows[t.name] = _failed_row(t, studio.problems[t.name])
    used = sorted({s.calibration for s in specs if s.calibration and s.name not in rows})
    calibration_refs = {name: calibrate.remote(str(studio.calibrations[name]), studio.defaults) for name in used}
    calibrations: dict[str, dict[str, Any]] = {}
    for name, ref in calibration_refs.items():
        try:
            calibrations[name] = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - the takes using it fail, the others go on
            calibrations[name] = {"ok": False, "error": f"{type(getattr(e, 'cause', None) or e).__name__}: {e}"}
    pending: dict[Any, tuple[str, TakeSpec]] = {}
    total = len(studio.takes)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cluster = {"address": address or "local", "nodes": len(nodes),
               "cpus": float(sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)),
               "resources": {s: asdict(r) for s, r in res.items()}}

    def summary() -> tuple[Path, Path]:
        ordered = [rows[t.name] for t in studio.takes if t.name in rows]
        done = sum(1 for r in ordered if r["status"] != "failed")
        return write_summary(studio, ordered, {
            "seconds": round(time.perf_counter() - t0, 3), "takes": total, "takes_finished": len(ordered),
            "takes_ok": done, "skipped": studio.skipped, "cluster": cluster,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    # plan here (this process sees the studio folder too): install each take's calibration, cut its detection into
    # camera chunks; then the chunks' tasks, and the take's task that takes their results
    for spec in specs:
        if spec.name in rows:
            continue
        prepared = prepare_task(spec, calibrations.get(spec.calibration) if spec.calibration else None)
        chunks = [detect.remote(job) for job in prepared["jobs"]]
        pending[take.remote(spec, board, prepared, *chunks)] = ("take", spec)
        if view is not None:
            view({}, len(rows), total)
    while pending:
        if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
            for ref in pending:
                ray.cancel(ref, force=True)
            summary()
            names = sorted({spec.name for _, spec in pending.values()})
            raise BatchError(f"the batch ran past {timeout_s:.0f} s with take(s) {names} unfinished; they were "
                             f"cancelled (the summary in {studio.summary_dir} has the others); run it again to resume")
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for ref in ready:
            kind, spec = pending.pop(ref)
            try:
                value = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a task that failed for good: this take fails, the others go on
                cause = getattr(e, "cause", None) or e
                rows[spec.name] = _failed_row(_take_of(studio, spec), f"the {kind} task failed: "
                                              f"{type(cause).__name__}: {cause}")
                summary()
                continue
            rows[spec.name] = value
            summary()
        if view is not None:
            try:
                state = ray.get(board.snapshot.remote(), timeout=10)
            except Exception as e:  # noqa: BLE001 - the progress view is not worth stopping the batch for
                log.debug("progress board unavailable: %s", e)
                state = {}
            view(state, len(rows), total)
    json_path, html_path = summary()
    ordered = [rows[t.name] for t in studio.takes]
    return BatchResult(ordered, json_path, html_path, time.perf_counter() - t0, cluster)


def _take_of(studio: Studio, spec: TakeSpec) -> Take:
    return next(t for t in studio.takes if t.name == spec.name)


__all__ = ["BatchError", "BatchResult", "Board", "ChunkFailure", "PrecomputedExecutor", "StudioError", "TakeSpec",
           "import_ray", "run_batch"]
