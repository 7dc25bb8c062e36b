"""The one checked loader of a take's files: every stage reads its session inputs through these functions.

A missing file is a FileNotFoundError that says which stage writes it; a corrupt or truncated one is an
:class:`InputError` naming the file and the stage to re-run with ``--overwrite``. Readers of other errors (a
camera missing from a file, say) pass them on unchanged.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from mocap_studio.calibration.camera import CameraRig
    from mocap_studio.capture.sync import CameraOffset
    from mocap_studio.reconstruction.keypoints import Keypoints2D, Keypoints3D, SynchronizedKeypoints2D
    from mocap_studio.session import Session

T = TypeVar("T")
log = logging.getLogger(__name__)

PRODUCERS = {
    "calibration.toml": "calibrate",
    "sync.json": "sync",
    "keypoints2d.npz": "detect",
    "keypoints2d_synced.npz": "triangulate",
    "keypoints3d.npz": "triangulate",
    "body.npz": "fit",
}
"""A session file -> the command that writes it."""


class InputError(ValueError):
    """A session file that exists but cannot be read (truncated, corrupt, or not what its name says)."""


def _advice(session: Session, path: Path) -> str:
    stage = PRODUCERS.get(path.name, "")
    if path.name == "keypoints2d.npz":
        return (f"run `mocap detect {session.root} --overwrite` (or `mocap import-keypoints ... --overwrite`) to "
                "write it again")
    return f"run `mocap {stage} {session.root} --overwrite` to write it again" if stage else "write it again"


def _missing(session: Session, path: Path) -> FileNotFoundError:
    stage = PRODUCERS.get(path.name, "")
    if path.name == "keypoints2d.npz":
        what = "run `mocap detect` or `mocap import-keypoints` first"
    else:
        what = f"run `mocap {stage} {session.root}` first" if stage else "it is needed here"
    return FileNotFoundError(f"{path} is missing; {what}")


def _check_npz(session: Session, path: Path) -> None:
    """Every array of the npz readable (a truncated download or an interrupted copy fails here)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                npz[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise InputError(f"{path} is damaged or truncated ({type(e).__name__}: {e}); {_advice(session, path)}") from e


def read_checked(session: Session, path: Path, reader: Callable[[], T], npz: bool = False) -> T:
    """``reader()`` of a session file, with the file's absence and damage reported as above."""
    if not path.exists():
        raise _missing(session, path)
    if npz:
        _check_npz(session, path)
    try:
        return reader()
    except (EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise InputError(f"{path} is damaged or truncated ({e}); {_advice(session, path)}") from e
    except (ValueError, KeyError) as e:
        from mocap_studio.capture.sync import SyncError
        from mocap_studio.common.config import ConfigError
        from mocap_studio.reconstruction.keypoints import KeypointFileError

        if isinstance(e, (KeypointFileError, ConfigError, SyncError)):
            raise InputError(f"{e}; {_advice(session, path)}") from e
        raise


def read_keypoints2d(session: Session, cameras: Sequence[str] | None = None) -> Keypoints2D:
    """keypoints2d.npz, cameras picked and ordered by name (``session.toml``'s cameras when None given)."""
    from mocap_studio.reconstruction.keypoints import Keypoints2D

    cameras = cameras if cameras is not None else (list(session.config().cameras) or None)
    path = session.keypoints2d_path
    return read_checked(session, path, lambda: Keypoints2D.load(path, cameras=cameras), npz=True)


def read_synced_keypoints2d(session: Session) -> SynchronizedKeypoints2D:
    """keypoints2d_synced.npz: the 2D keypoints triangulation used, on the take's one timeline."""
    from mocap_studio.reconstruction.keypoints import load_synchronized_keypoints2d

    path = session.keypoints2d_synced_path
    return read_checked(session, path, lambda: load_synchronized_keypoints2d(path), npz=True)


def read_keypoints3d(session: Session) -> Keypoints3D:
    """keypoints3d.npz."""
    from mocap_studio.reconstruction.keypoints import Keypoints3D

    path = session.keypoints3d_path
    return read_checked(session, path, lambda: Keypoints3D.load(path), npz=True)


def read_body(session: Session) -> Any:
    """body.npz as ``mocap fit`` writes it (a ``BodyMotion``-like record, see ``reconstruction.body.io``)."""
    from mocap_studio.reconstruction.body.io import load_body_npz

    path = session.body_path
    return read_checked(session, path, lambda: load_body_npz(path), npz=True)


def read_sync(session: Session) -> dict[str, CameraOffset]:
    """sync.json: camera -> offset."""
    from mocap_studio.capture.sync import read_sync as read

    path = session.sync_path
    return read_checked(session, path, lambda: read(path))


def read_rig(session: Session, *, require_extrinsics: bool = True, fit_to_recordings: bool = False,
             warnings: list[str] | None = None) -> CameraRig:
    """calibration.toml (aniposelib/Pose2Sim TOML).

    require_extrinsics: refuse a calibration that holds intrinsics only (``mocap calibrate --intrinsics-only``),
    with a message saying how to add the cameras' poses.
    fit_to_recordings: make each camera fit its performance recording's image size (``probe``: about 10 ms per
    video) with ``calibration.camera.adapt_to_image_size``: encoder padding of up to 16 px keeps K, a uniform
    scale scales it (the message is logged and appended to ``warnings``); any other size raises a ValueError
    naming the camera, both sizes and what to do. Cameras without a recording are as read.
    """
    from mocap_studio.calibration.camera import CameraRig, adapt_to_image_size
    from mocap_studio.calibration.formats import read_toml
    from mocap_studio.calibration.formats import require_extrinsics as check_extrinsics
    from mocap_studio.capture.frames import probe

    path = session.calibration_path
    rig = read_checked(session, path, lambda: read_toml(path))
    if require_extrinsics:
        check_extrinsics(path, fix=(
            f"add the cameras' poses: put a board recording seen by the cameras at the same time in "
            f"{session.calibration_recordings_dir} and run `mocap calibrate {session.root} --intrinsics {path}`, or "
            f"import a full calibration made elsewhere: `mocap calibrate {session.root} --import FILE --force`"))
    if not fit_to_recordings:
        return rig
    sources = session.performance_sources()
    cameras = []
    for cam in rig:
        if cam.name in sources:
            size = probe(sources[cam.name]).size
            try:
                cam, message = adapt_to_image_size(cam, size, f"its recording {sources[cam.name]}")
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from e
            if message:
                log.warning("%s", message)
                if warnings is not None:
                    warnings.append(message)
        cameras.append(cam)
    return CameraRig(tuple(cameras))


__all__ = ["InputError", "PRODUCERS", "read_body", "read_checked", "read_keypoints2d", "read_keypoints3d",
           "read_rig", "read_sync", "read_synced_keypoints2d"]
