"""Atomic file output shared by every stage: a file is either the old one or the complete new one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``, on error removed.

    The temporary name keeps the target's suffix (writers such as numpy and PIL choose the format by it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would (0666 less the umask)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, then rename); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (numpy arrays and scalars allowed; NaN written as null) atomically."""
    text = json.dumps(_nan_to_none(data), indent=2, default=_json_default, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return [_nan_to_none(v) for v in obj.tolist()] if obj.ndim else _nan_to_none(float(obj))
    if isinstance(obj, np.floating):
        return _nan_to_none(float(obj))
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def save_npz_atomic(path: str | os.PathLike, **arrays: Any) -> Path:
    """Save ``arrays`` as a compressed .npz at ``path`` atomically; returns the path."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Run ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def fingerprint(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """A content fingerprint of files (sha256 over names, sizes and contents; large files sampled at
    head, middle and tail). Missing files count as missing, so adding one changes the fingerprint."""
    digest = hashlib.sha256()
    chunk = 4 << 20
    for p in sorted(Path(x) for x in paths):
        name = str(p.relative_to(root)) if root else str(p)
        digest.update(name.encode())
        if not p.exists():
            digest.update(b"<missing>")
            continue
        size = p.stat().st_size
        digest.update(str(size).encode())
        with open(p, "rb") as fh:
            if size <= 3 * chunk:
                digest.update(fh.read())
            else:
                for offset in (0, size // 2, size - chunk):
                    fh.seek(offset)
                    digest.update(fh.read(chunk))
    return digest.hexdigest()


def load_npz(path: str | os.PathLike, required: Iterable[str] = (), error: type[Exception] = ValueError,
             hint: str = "") -> dict[str, np.ndarray]:
    """Every array of an npz file (no pickles), checked: FileNotFoundError when absent, ``error`` naming the
    file when it is unreadable or lacks one of ``required`` (``hint`` is appended to that message)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise error(f"{path}: not a readable npz file ({e})") from e
    missing = [k for k in required if k not in data]
    if missing:
        raise error(f"{path}: missing array(s) {missing}{hint}")
    return data
