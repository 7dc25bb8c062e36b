"""Shared fixtures, and the order `make test`'s two worker processes take the test modules in.

`make test` runs the tests on two workers (pytest-xdist, ``--dist loadfile --no-loadscope-reorder``): each module
goes whole to one worker, so its fixtures (a rendered take, a fitted body) are built once, as in a plain run, and
a module's tests run in their order (tests/test_demo.py builds the demo take, then the tests that read it). The
modules are taken in the order of the collected tests, which :func:`pytest_collection_modifyitems` sorts longest
first (``LONGEST_FIRST``, measured on 2 cores), so that neither worker is left alone with a long one at the end.
Tests marked ``quiet`` (speed and wall-clock pacing) run first, alone, before the workers (``-m quiet``).

(Not ``--dist loadgroup``: with pytest 9 the group xdist 3.8 appends to a test's id is lost, and every test of a
group went to either worker, so two workers built the demo take into the same folder at once.)

A plain ``pytest`` (no ``-n``) runs every test in one process, in the same order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LONGEST_FIRST = ("tests/test_demo.py", "tests/test_real_footage.py", "tests/test_silhouettes.py", "tests/test_batch.py",
                 "tests/test_real_people.py", "tests/test_virtual_studio.py", "tests/test_calibrate_stage.py",
                 "tests/test_body_fitting.py", "tests/test_refine.py")
"""Modules by their time on 2 cores (pytest --durations; the demo about 7 minutes, the real takes 5, the silhouette
fits 4), longest first; the others follow in collection order."""

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--disable-gpu-sandbox"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first (a stable sort: within a module, and among the modules not listed, the collection
    order stays)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture
def browser():
    """Headless Chromium (the system's, through playwright) for the viewer and report pages."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (make system-deps)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield b
        finally:
            b.close()
