"""The project cache folder (``<repo>/.cache/``, git-ignored): where the Anny model's built data and Warp's
kernels live, built once per machine and reused.

``MOCAP_CACHE_DIR`` overrides the location.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parents[1]


def project_cache_dir() -> Path:
    """The cache root: ``$MOCAP_CACHE_DIR`` or ``<repo>/.cache``."""
    return Path(os.environ.get("MOCAP_CACHE_DIR", str(_REPO_ROOT / ".cache"))).expanduser().resolve()


def anny_cache_dir() -> Path:
    """Anny's cache folder under the project cache root."""
    return project_cache_dir() / "anny"


def warp_cache_dir() -> Path:
    """Warp's kernel cache folder under the project cache root."""
    return project_cache_dir() / "warp"


def configure_anny_environment() -> None:
    """Point Anny and Warp at the project cache. Must run before ``import anny`` (both read their
    environment variables on import); an already-set variable is left alone."""
    os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))
    os.environ.setdefault("WARP_CACHE_PATH", str(warp_cache_dir()))


@contextlib.contextmanager
def file_lock(name: str, waiting: str | None = None) -> Iterator[None]:
    """An exclusive lock on ``<cache>/<name>.lock``, so two processes never build the same cache at once;
    ``waiting`` is logged when another process holds it (before waiting for it)."""
    root = project_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                logger.info("%s", waiting)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def progress_while(message: str, expected_s: float, every_s: float = 5.0) -> Iterator[None]:
    """Log ``message`` and then the elapsed time every ``every_s`` seconds until the block ends."""
    done = threading.Event()
    start = time.monotonic()
    logger.info("%s", message)

    def tick() -> None:
        while not done.wait(every_s):
            elapsed = time.monotonic() - start
            left = max(expected_s - elapsed, 0.0)
            logger.info("  ... %.0f s elapsed (about %.0f s left)", elapsed, left)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        logger.info("  done in %.1f s", time.monotonic() - start)
