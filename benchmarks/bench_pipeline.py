"""Time of the whole pipeline on the demo take, split per stage, every stage run again (--overwrite).

After set-up (the demo take rendered into .cache/demo, the Anny cache built): the figure the end-to-end
issue bounds at 3 minutes on 2 cores. No peer runs the same stages on the same input, so this prints our
split only; the stage benchmarks (bench_calibration, bench_triangulation, bench_detection, bench_fitting,
bench_export) hold the ratios against the peers.

Run: .venv/bin/python benchmarks/bench_pipeline.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import sys

from mocap_studio.demo import build_take, demo_root  # noqa: E402
from mocap_studio.pipeline import STAGES, RunConfig, run_pipeline  # noqa: E402


def main() -> int:
    """Command line: run every stage on the demo take (``--repeat`` times) and print the seconds per stage."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    session = build_take(demo_root())
    print(f"demo take {session.root}; {os.cpu_count()} cores")
    for r in range(args.repeat):
        result = run_pipeline(session, RunConfig(), overwrite=STAGES)
        split = "  ".join(f"{o.stage} {o.seconds:.1f}" for o in result.outcomes)
        print(f"run {r + 1}: {result.seconds:.1f} s  ({split})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
