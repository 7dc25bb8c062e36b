"""The take report: ``report/index.html``, one self-contained page about a whole take.

:func:`write_report` reads whatever the session holds and shows a "not run yet" note for any stage that
has not run, so it can be written after every stage. What it reads (paths from :class:`Session`)::

    calibration.toml, report/calibrate.json (+ its pictures)   calibration residuals, board coverage, layout
    sync.json                                                  offsets and their confidence
    keypoints2d.npz                                            detection confidence per camera over time
    keypoints3d.npz (+ report/triangulate.json)                reprojection per camera and joint, bones,
                                                               trajectories, joint angles, repetitions
    body.npz, measurements.json, body_rest.obj, report/fit.json   the fitted body and its measurements
    videos/ or images/                                         frames for the overlays
    report/<stage>.json                                        every stage's warnings

What it writes: ``report/index.html`` (plots and frame strips embedded, no network needed),
``report/overlays/<camera>.mp4`` (the skeleton and mesh drawn over each camera's video, H.264) and
``report/report.json`` (the figures of this report: repetition counts, warnings).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mocap_studio.report.analysis import RepetitionConfig
from mocap_studio.session import Session, StageReport

log = logging.getLogger(__name__)

__all__ = ["ReportConfig", "run_report", "write_report"]


@dataclass(frozen=True)
class ReportConfig:
    """Settings of the take report (the ``[report]`` table of session.toml)."""

    overlays: bool = True
    """Write an overlay video per camera (report/overlays/<camera>.mp4); the frame strips are made either way."""
    strip_frames: int = 4
    """Frames per camera in the page's strips."""
    max_width: int = 640
    """Overlay videos and strips are scaled down so that their longer side is at most this many pixels (the
    width of a landscape video, the height of a portrait phone's)."""
    mesh_style: str = "shaded"
    """How the body mesh is drawn over the video: "shaded" (ray-cast, half transparent) or "wireframe"."""
    mesh_alpha: float = 0.5
    """Opacity of the shaded mesh over the video (0..1)."""
    video_crf: int = 23
    """H.264 quality of the overlay videos (lower is better and larger)."""
    min_camera_detection: float = 0.5
    """Warn about a camera that finds the performer in fewer than this fraction of its frames."""
    min_joint_triangulated: float = 0.5
    """Warn about a joint triangulated in fewer than this fraction of the frames."""
    max_bone_variation: float = 0.05
    """Warn about a bone whose length varies more than this (standard deviation / median)."""
    repetitions: RepetitionConfig = field(default_factory=RepetitionConfig)
    """How squats and jumping jacks are counted."""

    def __post_init__(self) -> None:
        if self.mesh_style not in ("shaded", "wireframe"):
            raise ValueError(f"mesh_style must be 'shaded' or 'wireframe', got {self.mesh_style!r}")
        if not 0 <= self.mesh_alpha <= 1:
            raise ValueError(f"mesh_alpha must be within 0..1, got {self.mesh_alpha}")
        if self.strip_frames < 0 or self.max_width < 32:
            raise ValueError("strip_frames must be >= 0 and max_width >= 32")


def write_report(session: Session | str | Path, progress=None, overrides: dict | None = None) -> Path:  # noqa: ANN001
    """Write the take report (see :func:`run_report`) with ``overrides`` of session.toml's ``[report]`` table;
    returns the path of index.html."""
    session = session if isinstance(session, Session) else Session(session)
    session.require()
    run_report(session, session.stage_config("report", ReportConfig, overrides), progress=progress)
    return session.report_dir / "index.html"


def run_report(session: Session, config: ReportConfig | None = None, overwrite: bool = False, *,
               progress=None) -> StageReport:  # noqa: ANN001
    """Write ``report/index.html`` (and the overlay videos, and ``report/report.json``) for ``session``.

    config: None reads session.toml's ``[report]`` table. The report is always written again (it reads every
    other stage's outputs), so ``overwrite`` changes nothing.
    progress: optional ``progress(label, done, total)`` called during long parts (the overlay videos).
    Stages that have not run are shown as such; nothing here fails because a stage is missing. Files are
    written atomically.
    """
    from mocap_studio.common.fileio import write_text_atomic
    from mocap_studio.report.build import build_page

    session.require()
    config = config or session.stage_config("report", ReportConfig)
    start = time.perf_counter()
    text, figures, warnings, outputs = build_page(session, config, progress)
    path = session.report_dir / "index.html"
    write_text_atomic(path, text)
    seconds = time.perf_counter() - start
    figures["html_bytes"] = len(text.encode("utf-8"))
    report = StageReport(
        "report", session.inputs_fingerprint([], asdict(config)), tuple(str(p) for p in [path, *outputs]),
        figures, tuple(warnings), seconds)
    session.write_stage_report(report)
    log.info("report written to %s (%.1f MB, %.1f s)", path, figures["html_bytes"] / 1e6, seconds)
    return report
