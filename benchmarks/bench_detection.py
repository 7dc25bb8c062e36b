"""Detection throughput: MediaPipe pose landmarker in one process vs the worker pool, same videos.

Input: the recordings of a session folder (``--session``), else Pose2Sim's multi-person demo videos when the bench
extra is installed, else videos made here from matplotlib's sample portrait. Prints frames per second for
``SerialExecutor`` and ``ProcessExecutor(workers)`` and their ratio.

Run: ``.venv/bin/python benchmarks/bench_detection.py [--session DIR] [--workers 2] [--chunk-frames 50]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from mocap_studio.reconstruction.detect2d import DetectionConfig, ProcessExecutor, SerialExecutor, detect_sources  # noqa: E402


def demo_sources(tmp: Path) -> dict[str, Path]:
    """Camera name -> video: Pose2Sim's multi-person demo videos when installed (its single-person demo is kept
    aside for acceptance), else four shifted copies of matplotlib's sample portrait
    written to ``tmp``."""
    try:
        import Pose2Sim

        videos = Path(Pose2Sim.__file__).parent / "Demo_MultiPerson" / "videos"
        found = {p.stem: p for p in sorted(videos.glob("cam*.mp4"))}
        if found:
            return found
    except ImportError:
        pass
    import matplotlib

    image = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    out = {}
    for c in range(4):
        path = tmp / f"cam_{c + 1}.mp4"
        h, w = image.shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
        for i in range(100):
            writer.write(np.roll(image, 2 * i + 10 * c, axis=1))
        writer.release()
        out[path.stem] = path
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: detect with one process and with the worker pool and print the frame rates and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-frames", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.session:
            from mocap_studio.session import Session

            sources = Session(args.session).performance_sources()
        else:
            sources = demo_sources(Path(tmp))
        config = DetectionConfig(chunk_frames=args.chunk_frames)
        rows = []
        for name, executor in (("one process", SerialExecutor()), (f"{args.workers} worker processes",
                                                                     ProcessExecutor(args.workers))):
            t0 = time.perf_counter()
            det = detect_sources(sources, config, executor)
            seconds = time.perf_counter() - t0
            frames = det.xy.shape[0] * det.xy.shape[1]
            rows.append((name, frames / seconds, float((det.confidence > 0).any(-1).mean())))
    print(f"{len(sources)} cameras: {', '.join(map(str, sources.values()))}")
    for name, fps, found in rows:
        print(f"{name:22s} {fps:7.1f} frames/s  (person found in {100 * found:.0f} % of frames)")
    print(f"pool / one process: {rows[1][1] / rows[0][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
