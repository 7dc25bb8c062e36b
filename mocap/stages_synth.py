"""Stage runner for ``mocap synth``: synthesize a take into a session folder and write its report."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from mocap_studio.session import Session, StageReport
from mocap_studio.studio import StudioConfig, StudioError, Take, synthesize
from mocap_studio.studio.studio import ProgressFn


def _set_figures(take: Take) -> dict:
    """The harsher settings' figures (platform, background, bystander), only when the take has them."""
    out: dict = {}
    if take.scenery is not None:
        out["background"] = take.scenery.background
        if take.scenery.platform is not None:
            out["platform_height_m"] = take.scenery.platform.height_m
    if take.bystander is not None:
        out["bystander_crosses_camera"] = take.bystander.camera
    if take.others:
        from mocap_studio.studio.troupe import min_separation_m, person_ids

        out["performers"] = list(person_ids(len(take.others) + 1))
        out["performers_min_separation_m"] = round(min_separation_m(len(take.others) + 1), 3)
    return out


def run_synth(out: str | Path, config: StudioConfig, force: bool = False, progress: ProgressFn | None = None) -> Take:
    """Write a synthetic take to ``out`` (session folder with ``truth/``) and ``report/synth.json``.

    A folder that already holds recordings is refused unless ``force``: nothing of a real take is overwritten.
    """
    session = Session(out)
    if not force and (session.performance_sources() or session.calibration_sources()):
        raise StudioError(f"{session.root} already holds recordings; choose another folder or pass --force")
    start = time.perf_counter()
    take = synthesize(session.root, config, progress=progress)
    outputs = [session.config_path, session.videos_dir, session.calibration_recordings_dir, session.truth_dir]
    session.write_stage_report(StageReport(
        stage="synth", inputs_fingerprint=session.inputs_fingerprint([], asdict(config)),
        outputs=tuple(str(p) for p in outputs),
        figures={"render_frames_per_second": round(take.render_frames_per_second, 2), "cameras": list(take.rig.names),
                 "offsets_s": take.rig.offsets_s(), "claps_s": take.claps_s.tolist(), **_set_figures(take)},
        seconds=time.perf_counter() - start))
    return take
