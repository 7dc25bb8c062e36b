"""How `make test` spreads the tests over two worker processes (pytest-xdist, ``--dist loadgroup``), and the order
they start in.

- Every test module is one group, so a module's fixtures (a rendered take, a fitted body) are built once, on one
  worker, as in a plain run.
- The tests that read the demo take (marked ``demo_take``: tests/test_demo.py builds it into .cache/demo and the
  others read it) are one group, "demo", with the build first.
- The longest groups start first (``LONGEST_FIRST``, measured on 2 cores), so that neither worker is left alone
  with a long one at the end: the demo group's first test builds and runs the demo (about 7 minutes), the real
  takes about 5, the silhouette fits about 4.
- Tests marked ``quiet`` measure speed or wall-clock pacing; `make test` runs them first, alone, before the workers
  start (with ``-m quiet``), and leaves them out of the two workers' run.

A plain ``pytest`` (no ``-n``) runs every test in one process in the same order.
"""

from __future__ import annotations

import pytest

DEMO_GROUP = "demo"
LONGEST_FIRST = (DEMO_GROUP, "tests/test_real_footage.py", "tests/test_silhouettes.py", "tests/test_batch.py",
                 "tests/test_real_people.py", "tests/test_virtual_studio.py", "tests/test_calibrate_stage.py",
                 "tests/test_body_fitting.py", "tests/test_refine.py")
"""Groups by their time on 2 cores (pytest --durations), longest first; the others follow in collection order."""


def _group(item: pytest.Item) -> str:
    return DEMO_GROUP if item.get_closest_marker("demo_take") else item.nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which appends each test's group to its id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its group and put the longest groups first (a stable sort: within a group, and
    among the groups not listed, the collection order stays)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(_group(item)))
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))
