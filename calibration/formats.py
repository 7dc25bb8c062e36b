"""Calibration files: read the rigs other tools write, write our own TOML.

Our file is the aniposelib / Pose2Sim TOML: one table per camera with ``name``, ``size`` [w, h],
``matrix`` (3x3), ``distortions``, ``rotation`` (Rodrigues vector), ``translation`` (metres) and
``fisheye``, plus a ``[metadata]`` table. Every reader returns a :class:`CameraRig` in our conventions
(world-to-camera ``x_cam = R @ X + t``, metres, pixels), cameras named exactly as in the file and
ordered naturally (``cam_2`` before ``cam_10``) unless a list of cameras is requested.

Readers (``read_calibration`` picks one by file name and contents):

- aniposelib / Pose2Sim TOML (``read_toml``). aniposelib names its tables ``cam_0`` ... and keeps the
  camera's name in ``name``; Pose2Sim names tables after the camera (``[int_cam01_img]``) and may write
  sizes as floats and four distortion coefficients. aniposelib's own loader orders cameras by sorting
  the table names as strings (``cam_10`` before ``cam_2``); we order by camera name, naturally, and we
  write zero-padded table names (``cam_00`` ... ``cam_11``) so that both orders agree for the peers.
  A 3x3 ``rotation`` is accepted too (caliscope's ``config.toml`` writes one).
- caliscope ``camera_array.toml`` (``read_caliscope``): ``[cameras.N]`` tables with a 3x3 rotation.
  Checked on caliscope's own recording (tests/test_formats.py): its ``rotation``/``translation`` are
  world-to-camera (reprojecting its triangulated ChArUco corners gives a 1.1 px median against its 2D
  detections; the inverse convention gives millions of pixels). Cameras are named ``cam_<N>`` as
  caliscope names their videos.
- EasyMocap ``intri.yml`` / ``extri.yml`` (``read_easymocap``, ``write_easymocap``): OpenCV
  FileStorage with a ``names`` list, ``K_<name>``, ``dist_<name>`` (or ``D_<name>``), optional
  ``H_<name>``/``W_<name>``, ``R_<name>`` (Rodrigues) and/or ``Rot_<name>`` (3x3), ``T_<name>``.
- OpenCV stereo calibration (``read_opencv_stereo``): ``intrinsics.yml`` with ``M1 D1 M2 D2`` and
  ``extrinsics.yml`` with ``R T`` as OpenCV's ``stereo_calib`` sample writes them; the left camera is
  at the origin and ``x_right = R @ x_left + T``.
- OpenCV single-camera output (``read_opencv_camera``): ``camera_matrix``, ``distortion_coefficients``,
  ``image_width``, ``image_height`` as OpenCV's ``calibration`` sample writes them.
- Qualisys ``.qca.txt`` (``read_qualisys``): QTM's XML camera calibration export.

A file written by ``mocap calibrate --intrinsics-only`` holds intrinsics only: identity rotations, zero
translations and ``intrinsics_only = true`` in ``[metadata]`` (``is_intrinsics_only``); readers return it
as it is (its intrinsics are what ``--intrinsics`` needs) and ``require_extrinsics`` refuses it where the
cameras' poses are needed.

Bad input raises :class:`CalibrationFileError` (a ``ValueError``) naming the file, the camera and what
to fix; a missing file raises ``FileNotFoundError``; a requested camera that is absent raises
:class:`CameraNotFoundError`. Writers write to a temporary file and rename it into place, so a failed
write leaves the old file as it was.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from mocap_studio.calibration.camera import Camera, CameraRig
from mocap_studio.common.fileio import atomic_path, write_text_atomic
from mocap_studio.common.rotations import rotmat_to_rotvec, rotvec_to_rotmat

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
ImageSize = tuple[int, int]

# Tables in a Pose2Sim / caliscope TOML that hold no camera (Pose2Sim skips these names too).
_NON_CAMERA_TABLES = {"metadata", "capture_volume", "charuco", "checkerboard", "board"}
_CAMERA_FIELDS = ("size", "matrix", "distortions", "rotation", "translation")
# OpenCV's distortion vector lengths; beyond 8 terms (thin prism, tilt) our model has no place.
_OPENCV_DIST_LENGTHS = (4, 5, 8, 12, 14)
_FILESTORAGE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
class CalibrationFileError(ValueError):
    """A calibration file that cannot be used. The message names the file, the camera and the fix."""

    def __init__(self, path: PathLike, problem: str, camera: str | None = None, fix: str | None = None):
        self.path = Path(path)
        self.camera = camera
        where = f"{self.path}" + (f": camera {camera!r}" if camera is not None else "")
        message = f"{where}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class CameraNotFoundError(CalibrationFileError):
    """A camera was asked for by name and the file does not have it."""


def _missing_file(path: Path, what: str = "calibration file") -> FileNotFoundError:
    return FileNotFoundError(f"{path}: {what} not found; check the path (working directory: {Path.cwd()})")


# --------------------------------------------------------------------------------------------------
# Field checks shared by every reader
# --------------------------------------------------------------------------------------------------
_RECALIBRATE = "fix the value in the file or recalibrate the camera"


def _as_array(value: Any, path: Path, camera: str | None, field: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as e:
        raise CalibrationFileError(
            path, f"'{field}' is not an array of numbers ({value!r})", camera, _RECALIBRATE
        ) from e
    if not np.all(np.isfinite(arr)):
        raise CalibrationFileError(
            path, f"'{field}' has non-finite values ({arr.tolist()})", camera, _RECALIBRATE
        )
    return arr


def _matrix(value: Any, path: Path, camera: str, field: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = _as_array(value, path, camera, field)
    if arr.shape != shape:
        raise CalibrationFileError(
            path, f"'{field}' must have shape {shape}, got {arr.shape}", camera, _RECALIBRATE
        )
    return arr


def _intrinsic_matrix(value: Any, path: Path, camera: str, field: str) -> np.ndarray:
    K = _matrix(value, path, camera, field, (3, 3))
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0 or K[2, 2] != 1:
        raise CalibrationFileError(
            path,
            f"'{field}' is not a camera matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with positive "
            f"focal lengths: {K.tolist()}",
            camera,
            _RECALIBRATE,
        )
    return K


def _distortion(value: Any, path: Path, camera: str, field: str, fisheye: bool = False) -> np.ndarray:
    dist = _as_array(value, path, camera, field).reshape(-1)
    if fisheye:
        if len(dist) != 4:
            raise CalibrationFileError(
                path,
                f"'{field}' of a fisheye camera needs 4 coefficients (k1..k4), got {len(dist)}",
                camera,
                _RECALIBRATE,
            )
        return dist
    if len(dist) == 0:
        return np.zeros(5)
    if len(dist) not in _OPENCV_DIST_LENGTHS:
        raise CalibrationFileError(
            path,
            f"'{field}' has {len(dist)} coefficients; OpenCV's model takes 4, 5, 8, 12 or 14 "
            "(k1 k2 p1 p2 [k3 [k4 k5 k6]])",
            camera,
            _RECALIBRATE,
        )
    if len(dist) > 8:
        if np.any(dist[8:]):
            raise CalibrationFileError(
                path,
                f"'{field}' uses thin-prism or tilt terms ({dist[8:].tolist()}), which this camera model "
                "does not support",
                camera,
                "recalibrate without CALIB_THIN_PRISM_MODEL / CALIB_TILTED_MODEL",
            )
        dist = dist[:8]
    return dist


def _rotation(value: Any, path: Path, camera: str, field: str) -> np.ndarray:
    """A rotation given as a Rodrigues vector (3,), (3, 1), (1, 3) or a matrix (3, 3) -> rotmat (3, 3)."""
    arr = _as_array(value, path, camera, field)
    if arr.size == 3 and arr.ndim <= 2:
        return rotvec_to_rotmat(arr.reshape(3))
    if arr.shape == (3, 3):
        if not np.allclose(arr @ arr.T, np.eye(3), atol=1e-6) or np.linalg.det(arr) < 0:
            raise CalibrationFileError(
                path,
                f"'{field}' is a 3x3 matrix but not a rotation (orthonormal, det +1)",
                camera,
                _RECALIBRATE,
            )
        return arr
    raise CalibrationFileError(
        path,
        f"'{field}' must be a Rodrigues vector (3 values) or a 3x3 rotation matrix, got shape {arr.shape}",
        camera,
        _RECALIBRATE,
    )


def _translation(value: Any, path: Path, camera: str, field: str, scale: float = 1.0) -> np.ndarray:
    arr = _as_array(value, path, camera, field)
    if arr.size != 3 or arr.ndim > 2:
        raise CalibrationFileError(
            path, f"'{field}' must have 3 values, got shape {arr.shape}", camera, _RECALIBRATE
        )
    return arr.reshape(3) * scale


def _image_size(value: Any, path: Path, camera: str | None, field: str = "size") -> ImageSize:
    arr = _as_array(value, path, camera, field).reshape(-1)
    if arr.shape != (2,) or np.any(arr <= 0) or np.any(arr != np.round(arr)):
        raise CalibrationFileError(
            path,
            f"'{field}' must be [width, height] in whole pixels, got {np.asarray(value).tolist()}",
            camera,
            "write the image size of the camera's frames",
        )
    return int(arr[0]), int(arr[1])


def _make_camera(
    path: Path,
    name: str,
    size: ImageSize,
    K: np.ndarray,
    dist: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    model: str = "pinhole",
) -> Camera:
    try:
        return Camera(name, size, K, dist, R, t, model)  # type: ignore[arg-type]
    except ValueError as e:
        raise CalibrationFileError(path, str(e), name, _RECALIBRATE) from e


def _make_rig(path: Path, cameras: list[Camera], requested: Sequence[str] | None) -> CameraRig:
    if not cameras:
        raise CalibrationFileError(
            path, "the file holds no camera", fix="check that this is a calibration file"
        )
    try:
        rig = CameraRig.from_cameras(cameras, natural_order=True)
    except ValueError as e:
        raise CalibrationFileError(path, str(e), fix="give every camera its own name") from e
    return _select(path, rig, requested)


def _select(path: Path, rig: CameraRig, requested: Sequence[str] | None) -> CameraRig:
    if requested is None:
        return rig
    if isinstance(requested, str):
        raise TypeError("cameras must be a list of camera names, not a single string")
    absent = [n for n in requested if n not in rig]
    if absent:
        raise CameraNotFoundError(
            path,
            f"camera(s) {absent} not in the file (it has {list(rig.names)})",
            absent[0],
            "check the camera names in the session against the calibration, "
            "or recalibrate with these cameras",
        )
    return rig.subset(list(requested))


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise _missing_file(path)
    if path.is_dir():
        raise CalibrationFileError(
            path, "is a folder, expected a file", fix="give the calibration file itself"
        )


# --------------------------------------------------------------------------------------------------
# aniposelib / Pose2Sim TOML (ours)
# --------------------------------------------------------------------------------------------------
def _load_toml(path: Path) -> dict[str, Any]:
    _check_exists(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise CalibrationFileError(path, f"not valid TOML ({e})", fix="fix the file or regenerate it") from e
    except UnicodeDecodeError as e:
        raise CalibrationFileError(path, "not a text file", fix="give a TOML calibration file") from e


def _camera_tables(doc: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(table name, table) for every table that looks like a camera, in file order."""
    return [
        (key, value)
        for key, value in doc.items()
        if isinstance(value, dict)
        and key not in _NON_CAMERA_TABLES
        and any(f in value for f in _CAMERA_FIELDS)
    ]


def _camera_from_table(path: Path, key: str, table: Mapping[str, Any], name: str | None = None) -> Camera:
    if name is None:
        name = table.get("name", key)
        if not isinstance(name, str):
            # aniposelib writes str(name); a bare number in a hand-written file means the same
            if isinstance(name, bool) or not isinstance(name, int):
                raise CalibrationFileError(
                    path,
                    f"table [{key}] has a 'name' that is not a string ({name!r})",
                    fix='write the camera name as a string, e.g. name = "cam_1"',
                )
            name = str(name)
    missing = [f for f in _CAMERA_FIELDS if f not in table]
    if missing:
        raise CalibrationFileError(
            path,
            f"table [{key}] has no {', '.join(repr(m) for m in missing)} field(s); every camera needs "
            f"{', '.join(_CAMERA_FIELDS)}",
            name,
            "add the missing field(s) or recalibrate",
        )
    fisheye = table.get("fisheye", False)
    if not isinstance(fisheye, bool):
        raise CalibrationFileError(path, f"'fisheye' must be true or false, got {fisheye!r}", name)
    return _make_camera(
        path,
        name,
        _image_size(table["size"], path, name),
        _intrinsic_matrix(table["matrix"], path, name, "matrix"),
        _distortion(table["distortions"], path, name, "distortions", fisheye),
        _rotation(table["rotation"], path, name, "rotation"),
        _translation(table["translation"], path, name, "translation"),
        "fisheye" if fisheye else "pinhole",
    )


def read_toml(path: PathLike, cameras: Sequence[str] | None = None) -> CameraRig:
    """Read an aniposelib / Pose2Sim / mocap-studio TOML calibration.

    cameras: names to return, in that order (default: all, in natural order of their names).
    Table names do not matter: the camera's name is its ``name`` field (the table name when absent).
    """
    path = Path(path)
    doc = _load_toml(path)
    tables = _camera_tables(doc)
    if not tables:
        raise CalibrationFileError(
            path,
            "no camera tables found (a camera table has name, size, matrix, distortions, rotation, "
            "translation)",
            fix="check that this is an aniposelib / Pose2Sim calibration file",
        )
    return _make_rig(path, [_camera_from_table(path, k, t) for k, t in tables], cameras)


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The ``[metadata]`` table of a TOML calibration ({} when there is none)."""
    path = Path(path)
    meta = _load_toml(path).get("metadata", {})
    if not isinstance(meta, dict):
        raise CalibrationFileError(path, "'metadata' is not a table", fix="write it as a [metadata] table")
    return meta


INTRINSICS_ONLY = "intrinsics_only"
"""``[metadata]`` flag of a calibration that holds intrinsics only (``mocap calibrate --intrinsics-only``):
every camera's pose is the identity placeholder and must not be used."""

ADD_EXTRINSICS = (
    "add the cameras' poses: record a board seen by the cameras at the same time and run mocap calibrate with "
    "--intrinsics on this file, or import a full calibration made elsewhere (mocap calibrate --import FILE)"
)


def is_intrinsics_only(path: PathLike) -> bool:
    """True when ``path`` is a TOML calibration whose metadata says it holds intrinsics only."""
    path = Path(path)
    if path.is_dir() or not path.name.lower().endswith(".toml"):
        return False
    return read_metadata(path).get(INTRINSICS_ONLY) is True


def require_extrinsics(path: PathLike, fix: str = ADD_EXTRINSICS) -> None:
    """Raise :class:`CalibrationFileError` naming ``path`` when it holds intrinsics only (the cameras'
    positions are unknown, so nothing can be triangulated with it); ``fix`` says what to do."""
    if is_intrinsics_only(path):
        raise CalibrationFileError(
            path, "holds the cameras' intrinsics only (written by mocap calibrate --intrinsics-only): their "
            "positions and orientations are unknown, so it cannot place anything in 3D", fix=fix)


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mocap-studio")
    except PackageNotFoundError:
        return "unknown"


def _toml_value(value: Any, where: str) -> Any:
    """Plain TOML value from numpy scalars / arrays; a clear error for what TOML cannot hold."""
    if isinstance(value, np.ndarray):
        return _toml_value(value.tolist(), where)
    if isinstance(value, np.generic):
        return _toml_value(value.item(), where)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool | int | str | _dt.datetime | _dt.date):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list | tuple):
        return [_toml_value(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _toml_value(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(
        f"metadata {where}: a {type(value).__name__} cannot be written to TOML; "
        "give numbers, strings, booleans, lists or tables"
    )


def _table_keys(n: int) -> list[str]:
    # zero-padded so that a string sort (aniposelib's loader) and file order agree
    width = len(str(max(n - 1, 0)))
    return [f"cam_{i:0{width}d}" for i in range(n)]


def calibration_to_toml(rig: CameraRig, metadata: Mapping[str, Any] | None = None) -> str:
    """The rig as aniposelib / Pose2Sim TOML text. Cameras are written in the rig's order.

    metadata: extra ``[metadata]`` fields (e.g. ``error``, ``adjusted``, ``source``); ours are added
    (``written_by``, ``written_at``, ``convention``, ``units``) unless given.
    """
    doc: dict[str, Any] = {}
    for key, cam in zip(_table_keys(len(rig)), rig.cameras, strict=True):
        doc[key] = {
            "name": cam.name,
            "size": [int(cam.size[0]), int(cam.size[1])],
            "matrix": cam.K.tolist(),
            "distortions": cam.dist.tolist(),
            "rotation": rotmat_to_rotvec(cam.R).tolist(),
            "translation": cam.t.tolist(),
            "fisheye": cam.model == "fisheye",
        }
    meta: dict[str, Any] = {
        "adjusted": False,
        "written_by": f"mocap-studio {_software_version()}",
        "written_at": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "convention": "world-to-camera: x_cam = R @ X + t; rotation is a Rodrigues vector (radians)",
        "units": "m",
    }
    meta.update(_toml_value(dict(metadata or {}), "metadata"))
    doc["metadata"] = meta
    return tomli_w.dumps(doc)


def write_calibration(rig: CameraRig, path: PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the rig as aniposelib / Pose2Sim TOML, atomically (the old file survives a failed write)."""
    if not isinstance(rig, CameraRig):
        raise TypeError(f"write_calibration takes a CameraRig, got {type(rig).__name__}")
    text = calibration_to_toml(rig, metadata)  # fails before anything touches the disk
    path = write_text_atomic(path, text)
    log.info("wrote calibration of %d cameras to %s", len(rig), path)
    return path


# --------------------------------------------------------------------------------------------------
# caliscope
# --------------------------------------------------------------------------------------------------
def read_caliscope(path: PathLike, cameras: Sequence[str] | None = None) -> CameraRig:
    """Read caliscope's ``camera_array.toml`` (``[cameras.N]``) or its ``config.toml`` (``[cam_N]``).

    Cameras are named ``cam_<N>``. ``rotation`` is a 3x3 world-to-camera matrix and ``translation`` is
    in metres (checked against caliscope's triangulated board corners). Cameras marked ``ignore = true``
    are skipped.
    """
    path = Path(path)
    doc = _load_toml(path)
    if isinstance(doc.get("cameras"), dict):
        tables = [(f"cameras.{k}", f"cam_{k}", v) for k, v in doc["cameras"].items() if isinstance(v, dict)]
    else:
        tables = [(k, k, v) for k, v in _camera_tables(doc)]
    cams = []
    for key, name, table in tables:
        if table.get("ignore", False) is True:
            log.info("%s: camera %r is marked ignore = true; skipped", path, name)
            continue
        rotation_count = table.get("rotation_count", 0)
        if rotation_count not in (0, None):
            raise CalibrationFileError(
                path,
                f"rotation_count = {rotation_count}: the calibration refers to frames rotated by "
                f"{rotation_count} x 90 degrees",
                name,
                "set the rotation to 0 in caliscope and recalibrate",
            )
        cams.append(_camera_from_table(path, key, table, name=name))
    return _make_rig(path, cams, cameras)


# --------------------------------------------------------------------------------------------------
# OpenCV FileStorage (YAML / XML): EasyMocap and OpenCV's samples
# --------------------------------------------------------------------------------------------------
def _open_filestorage(path: Path):
    import cv2

    _check_exists(path)
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as e:
        cause = e.__cause__ or e
        raise CalibrationFileError(
            path,
            f"not a readable OpenCV YAML/XML file ({str(cause).strip()})",
            fix="fix the file or export it again",
        ) from e
    if not fs.isOpened():
        raise CalibrationFileError(
            path, "OpenCV could not open the file", fix="check it is OpenCV YAML or XML"
        )
    return fs


def _fs_keys(fs) -> tuple[str, ...]:
    root = fs.root()
    return tuple(root.keys()) if root.isMap() else ()


def _fs_value(fs, key: str, path: Path, camera: str | None) -> np.ndarray | None:
    """A node as a float array (matrix, sequence or scalar); None when the key is absent."""
    node = fs.getNode(key)
    if node.isNone():
        return None
    if node.isMap():
        mat = node.mat()
        if mat is None:
            raise CalibrationFileError(
                path, f"'{key}' is a map but not an !!opencv-matrix", camera, _RECALIBRATE
            )
        return np.asarray(mat, dtype=float)
    if node.isSeq():
        values = [node.at(i) for i in range(node.size())]
        if not all(v.isReal() or v.isInt() for v in values):
            raise CalibrationFileError(
                path, f"'{key}' is a list with non-numeric entries", camera, _RECALIBRATE
            )
        return np.array([v.real() for v in values], dtype=float)
    if node.isReal() or node.isInt():
        return np.array(node.real(), dtype=float)
    raise CalibrationFileError(path, f"'{key}' is not a number or matrix", camera, _RECALIBRATE)


def _fs_required(fs, key: str, path: Path, camera: str | None, fix: str) -> np.ndarray:
    value = _fs_value(fs, key, path, camera)
    if value is None:
        raise CalibrationFileError(path, f"no '{key}' entry", camera, fix)
    return value


def _fs_names(fs, path: Path) -> list[str]:
    node = fs.getNode("names")
    if node.isNone() or not node.isSeq():
        raise CalibrationFileError(
            path, "no 'names' list of cameras", fix="add names: [cam1, cam2, ...] to the file"
        )
    names = []
    for i in range(node.size()):
        item = node.at(i)
        if item.isString():
            names.append(item.string())
        elif item.isInt():
            names.append(str(int(item.real())))
        else:
            raise CalibrationFileError(
                path,
                f"entry {i} of 'names' is not a camera name",
                fix="quote camera names in the 'names' list",
            )
    return names


def _size_for(name: str, image_size: ImageSize | Mapping[str, ImageSize] | None) -> ImageSize | None:
    if image_size is None:
        return None
    if isinstance(image_size, Mapping):
        return image_size.get(name)
    return image_size


def read_easymocap(
    intri_path: PathLike,
    extri_path: PathLike | None = None,
    image_size: ImageSize | Mapping[str, ImageSize] | None = None,
    cameras: Sequence[str] | None = None,
) -> CameraRig:
    """Read EasyMocap's ``intri.yml`` and ``extri.yml`` (default: ``extri.yml`` beside ``intri.yml``).

    image_size: (width, height), or a mapping per camera, for files without ``W_<name>``/``H_<name>``
    (EasyMocap writes them only in later versions). ``R_<name>`` (Rodrigues) is used when present, as
    EasyMocap does, else ``Rot_<name>``. Translations are in metres, as EasyMocap writes them.
    """
    intri_path = Path(intri_path)
    extri_path = (
        Path(extri_path)
        if extri_path is not None
        else intri_path.with_name(
            intri_path.name.replace("intri", "extri") if "intri" in intri_path.name else "extri.yml"
        )
    )
    intri = _open_filestorage(intri_path)
    extri = _open_filestorage(extri_path)
    names = _fs_names(intri, intri_path)
    cams = []
    for name in names:
        K = _intrinsic_matrix(
            _fs_required(
                intri,
                f"K_{name}",
                intri_path,
                name,
                "add the camera matrix or remove the camera from 'names'",
            ),
            intri_path,
            name,
            f"K_{name}",
        )
        dist = _fs_value(intri, f"dist_{name}", intri_path, name)
        if dist is None:
            dist = _fs_value(intri, f"D_{name}", intri_path, name)
        dist = _distortion(np.zeros(5) if dist is None else dist, intri_path, name, f"dist_{name}")
        w = _fs_value(intri, f"W_{name}", intri_path, name)
        h = _fs_value(intri, f"H_{name}", intri_path, name)
        if w is not None and h is not None:
            size = _image_size([float(w), float(h)], intri_path, name, f"W_{name}/H_{name}")
        else:
            size = _size_for(name, image_size)
            if size is None:
                raise CalibrationFileError(
                    intri_path,
                    "no image size (W_/H_ entries)",
                    name,
                    "pass image_size=(width, height) (or a dict per camera) to read_easymocap / "
                    "read_calibration",
                )
            size = _image_size(size, intri_path, name, "image_size")
        rvec = _fs_value(extri, f"R_{name}", extri_path, name)
        if rvec is not None:
            R = _rotation(rvec, extri_path, name, f"R_{name}")
        else:
            R = _rotation(
                _fs_required(extri, f"Rot_{name}", extri_path, name, "add R_ (Rodrigues) or Rot_ (3x3)"),
                extri_path,
                name,
                f"Rot_{name}",
            )
        t = _translation(
            _fs_required(extri, f"T_{name}", extri_path, name, "add the translation T_ in metres"),
            extri_path,
            name,
            f"T_{name}",
        )
        cams.append(_make_camera(intri_path, name, size, K, dist, R, t))
    return _make_rig(intri_path, cams, cameras)


def _yaml_matrix(key: str, arr: np.ndarray) -> str:
    arr = np.atleast_2d(np.asarray(arr, dtype=float))
    data = ", ".join(repr(float(v)) for v in arr.ravel())
    rows, cols = arr.shape
    return f"{key}: !!opencv-matrix\n   rows: {rows}\n   cols: {cols}\n   dt: d\n   data: [ {data} ]\n"


def write_easymocap(rig: CameraRig, folder: PathLike) -> tuple[Path, Path]:
    """Write ``intri.yml`` and ``extri.yml`` in ``folder`` as EasyMocap reads them (OpenCV YAML 1.0).

    Sizes go in ``W_<name>``/``H_<name>``. Both files are replaced together, only once both are written.
    Camera names must be usable as FileStorage keys (letters, digits, ``_``, ``-``).
    """
    for cam in rig.cameras:
        if cam.model != "pinhole":
            raise ValueError(
                f"camera {cam.name!r}: EasyMocap files hold pinhole cameras only, this one is {cam.model}"
            )
        if not _FILESTORAGE_KEY.match(f"K_{cam.name}"):
            raise ValueError(
                f"camera {cam.name!r}: EasyMocap keys are K_<name>, and OpenCV allows only letters, "
                "digits, '_' and '-' in keys; rename the camera"
            )
    header = "%YAML:1.0\n---\nnames:\n" + "".join(f'   - "{c.name}"\n' for c in rig.cameras)
    intri, extri = [header], [header]
    for cam in rig.cameras:
        intri += [
            _yaml_matrix(f"K_{cam.name}", cam.K),
            f"W_{cam.name}: {cam.size[0]}\n",
            f"H_{cam.name}: {cam.size[1]}\n",
            _yaml_matrix(f"dist_{cam.name}", cam.dist[None]),
        ]
        extri += [
            _yaml_matrix(f"R_{cam.name}", rotmat_to_rotvec(cam.R)[:, None]),
            _yaml_matrix(f"Rot_{cam.name}", cam.R),
            _yaml_matrix(f"T_{cam.name}", cam.t[:, None]),
        ]
    folder = Path(folder)
    intri_path, extri_path = folder / "intri.yml", folder / "extri.yml"
    with atomic_path(intri_path) as tmp_intri, atomic_path(extri_path) as tmp_extri:
        tmp_intri.write_text("".join(intri), encoding="utf-8")
        tmp_extri.write_text("".join(extri), encoding="utf-8")
    return intri_path, extri_path


def _find_sibling(path: Path, stems: Iterable[str]) -> Path | None:
    for stem in stems:
        for suffix in (".yml", ".yaml", ".xml"):
            candidate = path.with_name(stem + suffix)
            if candidate.exists():
                return candidate
    return None


def _size_from_fs(fs, path: Path) -> ImageSize | None:
    w, h = (_fs_value(fs, k, path, None) for k in ("image_width", "image_height"))
    if w is not None and h is not None:
        return _image_size([float(w), float(h)], path, None, "image_width/image_height")
    for key in ("image_size", "imageSize"):
        v = _fs_value(fs, key, path, None)
        if v is not None:
            return _image_size(v, path, None, key)
    return None


def read_opencv_stereo(
    intrinsics_path: PathLike,
    extrinsics_path: PathLike | None = None,
    image_size: ImageSize | None = None,
    names: tuple[str, str] = ("left", "right"),
    translation_scale: float = 1.0,
) -> CameraRig:
    """Read a stereo pair as OpenCV's ``stereo_calib`` sample writes it.

    intrinsics_path: YAML/XML with ``M1 D1 M2 D2``. extrinsics_path: YAML/XML with ``R`` (3x3 or
    Rodrigues) and ``T`` such that ``x_right = R @ x_left + T``; default: ``R``/``T`` in the intrinsics
    file, else ``extrinsics.yml`` beside it. image_size: (width, height) when the files do not say.
    translation_scale: multiplies ``T`` to give metres (``T`` is in the units of the board's square size
    given to the calibration; the sample's default square is 1.0).
    Returns a rig whose first camera (``names[0]``) is at the origin.
    """
    intrinsics_path = Path(intrinsics_path)
    fs = _open_filestorage(intrinsics_path)
    left, right = names
    size = _size_from_fs(fs, intrinsics_path) or image_size
    if size is None:
        raise CalibrationFileError(
            intrinsics_path,
            "the image size is not in the file",
            left,
            "pass image_size=(width, height) of the calibration images",
        )
    size = _image_size(size, intrinsics_path, left, "image_size")
    fix = "this reader expects OpenCV stereo_calib's M1 D1 M2 D2"
    K1 = _intrinsic_matrix(_fs_required(fs, "M1", intrinsics_path, left, fix), intrinsics_path, left, "M1")
    D1 = _distortion(_fs_required(fs, "D1", intrinsics_path, left, fix), intrinsics_path, left, "D1")
    K2 = _intrinsic_matrix(_fs_required(fs, "M2", intrinsics_path, right, fix), intrinsics_path, right, "M2")
    D2 = _distortion(_fs_required(fs, "D2", intrinsics_path, right, fix), intrinsics_path, right, "D2")
    if extrinsics_path is None and {"R", "T"} <= set(_fs_keys(fs)):
        ext, ext_path = fs, intrinsics_path
    else:
        ext_path = (
            Path(extrinsics_path)
            if extrinsics_path is not None
            else _find_sibling(intrinsics_path, ("extrinsics",))
        )
        if ext_path is None:
            raise CalibrationFileError(
                intrinsics_path,
                "no stereo extrinsics: R and T are not in this file and there is no extrinsics.yml beside it",
                right,
                "pass extrinsics_path= or run the stereo calibration",
            )
        ext = _open_filestorage(ext_path)
    fix = "this reader expects stereo_calib's R and T (x_right = R @ x_left + T)"
    R = _rotation(_fs_required(ext, "R", ext_path, right, fix), ext_path, right, "R")
    T = _translation(_fs_required(ext, "T", ext_path, right, fix), ext_path, right, "T", translation_scale)
    cams = [
        _make_camera(intrinsics_path, left, size, K1, D1, np.eye(3), np.zeros(3)),
        _make_camera(intrinsics_path, right, size, K2, D2, R, T),
    ]
    return CameraRig(tuple(cams))


def read_opencv_camera(path: PathLike, name: str | None = None) -> CameraRig:
    """Read one camera as OpenCV's ``calibration`` sample writes it (``camera_matrix``,
    ``distortion_coefficients``, ``image_width``, ``image_height``). The camera sits at the origin;
    its name is ``name`` or the file's stem."""
    path = Path(path)
    fs = _open_filestorage(path)
    name = name or path.name.split(".")[0]
    fix = "this reader expects the calibration sample's camera_matrix and distortion_coefficients"
    K = _intrinsic_matrix(_fs_required(fs, "camera_matrix", path, name, fix), path, name, "camera_matrix")
    dist = _fs_value(fs, "distortion_coefficients", path, name)
    dist = _distortion(np.zeros(5) if dist is None else dist, path, name, "distortion_coefficients")
    size = _size_from_fs(fs, path)
    if size is None:
        raise CalibrationFileError(path, "no image_width / image_height", name, "add them to the file")
    return CameraRig((_make_camera(path, name, size, K, dist, np.eye(3), np.zeros(3)),))


# --------------------------------------------------------------------------------------------------
# Qualisys QTM .qca.txt
# --------------------------------------------------------------------------------------------------
# QTM's camera frame looks down its -z axis with y up; OpenCV's looks down +z with y down.
_QTM_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
# QTM stores focal lengths and the principal point in sub-pixel units of 1/64 pixel.
_QTM_SUBPIXELS = 64.0


def _xml_float(elem: ET.Element, attr: str, path: Path, camera: str, default: float | None = None) -> float:
    raw = elem.get(attr)
    if raw is None:
        if default is not None:
            return default
        raise CalibrationFileError(
            path, f"<{elem.tag}> has no '{attr}' attribute", camera, "export the calibration again from QTM"
        )
    try:
        value = float(raw)
    except ValueError as e:
        raise CalibrationFileError(
            path, f"<{elem.tag} {attr}={raw!r}> is not a number", camera, _RECALIBRATE
        ) from e
    if not math.isfinite(value):
        raise CalibrationFileError(path, f"<{elem.tag} {attr}={raw!r}> is not finite", camera, _RECALIBRATE)
    return value


def _xml_child(cam: ET.Element, tag: str, path: Path, name: str) -> ET.Element:
    child = cam.find(tag)
    if child is None:
        raise CalibrationFileError(
            path, f"<camera> has no <{tag}> element", name, "export the calibration again from QTM"
        )
    return child


def _qualisys_camera(path: Path, cam: ET.Element, binning: float) -> Camera:
    name = cam.get("serial")
    if not name:
        raise CalibrationFileError(
            path, "a <camera> has no 'serial' attribute", fix="export the calibration again"
        )
    rotation = cam.get("viewrotation", "0")
    if rotation not in ("0", "", None):
        raise CalibrationFileError(
            path,
            f"viewrotation={rotation} (the image is rotated in QTM)",
            name,
            "export with view rotation 0; rotated views are not supported",
        )
    fov = _xml_child(cam, "fov_video", path, name)
    left, top = _xml_float(fov, "left", path, name), _xml_float(fov, "top", path, name)
    width = _xml_float(fov, "right", path, name) - left + 1
    height = _xml_float(fov, "bottom", path, name) - top + 1
    # fov_video and the intrinsics refer to the sensor at 1080p; smaller video modes scale them
    res = cam.get("video_resolution") or ""
    scale = (int(res[:-1]) / 1080.0 if re.fullmatch(r"\d+p", res) else 1.0) / binning
    intr = _xml_child(cam, "intrinsic", path, name)
    f = {
        a: _xml_float(intr, a, path, name)
        for a in ("focalLengthU", "focalLengthV", "centerPointU", "centerPointV")
    }
    skew = _xml_float(intr, "skew", path, name, default=0.0)
    K = np.array(
        [
            [
                f["focalLengthU"] / _QTM_SUBPIXELS * scale,
                skew / _QTM_SUBPIXELS * scale,
                (f["centerPointU"] / _QTM_SUBPIXELS - left) * scale,
            ],
            [
                0.0,
                f["focalLengthV"] / _QTM_SUBPIXELS * scale,
                (f["centerPointV"] / _QTM_SUBPIXELS - top) * scale,
            ],
            [0.0, 0.0, 1.0],
        ]
    )
    # distortion is dimensionless (Pose2Sim divides it by 64 too, which is wrong: compare its demo's
    # independently calibrated Calib_scene.toml, whose k1 k2 match the unscaled values)
    dist = np.array(
        [
            _xml_float(intr, "radialDistortion1", path, name),
            _xml_float(intr, "radialDistortion2", path, name),
            _xml_float(intr, "tangentalDistortion1", path, name),
            _xml_float(intr, "tangentalDistortion2", path, name),
            _xml_float(intr, "radialDistortion3", path, name, default=0.0),
        ]
    )
    tr = _xml_child(cam, "transform", path, name)
    M = np.array([[_xml_float(tr, f"r{i}{j}", path, name) for j in (1, 2, 3)] for i in (1, 2, 3)])
    centre_m = np.array([_xml_float(tr, a, path, name) for a in ("x", "y", "z")]) / 1000.0
    R = _QTM_TO_OPENCV @ M
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise CalibrationFileError(path, "<transform> r11..r33 is not a rotation matrix", name, _RECALIBRATE)
    # QTM prints six decimals: re-orthonormalize so the camera model accepts it
    u, _, vt = np.linalg.svd(R)
    R = u @ vt
    size = (round(width * scale), round(height * scale))
    return _make_camera(path, name, _image_size(size, path, name), K, dist, R, -R @ centre_m)


def _is_video_camera(cam: ET.Element) -> bool:
    model = (cam.get("model") or "none").lower()
    return "video" in model or model == "none"


def read_qualisys(
    path: PathLike, cameras: Sequence[str] | None = None, video_only: bool = True, binning: int = 1
) -> CameraRig:
    """Read a Qualisys QTM ``.qca.txt`` calibration export (XML).

    Cameras are named by their serial number. video_only: keep video cameras (model containing
    "Video", or "none") and skip marker-only ones. binning: the video binning factor, when used.
    Conventions from the file: ``transform`` x y z is the camera centre in mm and r11..r33 is the
    world-to-camera rotation in QTM's camera axes (-z forward, y up); intrinsics are in 1/64 pixel.
    """
    path = Path(path)
    _check_exists(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise CalibrationFileError(
            path, f"not valid XML ({e})", fix="export the calibration again from QTM"
        ) from e
    cams_xml = list(root.iter("camera"))
    if not cams_xml:
        raise CalibrationFileError(
            path, "no <camera> elements", fix="check that this is a QTM .qca.txt export"
        )
    chosen = [c for c in cams_xml if _is_video_camera(c)] if video_only else cams_xml
    if not chosen:
        models = sorted({c.get("model", "?") for c in cams_xml})
        raise CalibrationFileError(
            path, f"no video cameras (models: {models})", fix="pass video_only=False to read marker cameras"
        )
    cams = [_qualisys_camera(path, c, float(binning)) for c in chosen]
    return _make_rig(path, cams, cameras)


# --------------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------------
def detect_format(path: PathLike) -> str:
    """Which reader a path needs: "toml", "caliscope", "easymocap", "opencv_stereo", "opencv_camera" or
    "qualisys". A folder is searched for the files each tool writes."""
    path = Path(path)
    if not path.exists():
        raise _missing_file(path)
    if path.is_dir():
        for name, fmt in (
            ("calibration.toml", "toml"),
            ("camera_array.toml", "caliscope"),
            ("intri.yml", "easymocap"),
            ("intrinsics.yml", "opencv_stereo"),
        ):
            if (path / name).exists():
                return fmt
        raise CalibrationFileError(
            path,
            "no calibration file in this folder (looked for calibration.toml, "
            "camera_array.toml, intri.yml, intrinsics.yml)",
            fix="give the file itself",
        )
    lower = path.name.lower()
    if lower.endswith((".qca.txt", ".qca")):
        return "qualisys"
    if lower.endswith(".toml"):
        doc = _load_toml(path)
        if isinstance(doc.get("cameras"), dict) or any("cam_id" in t for _, t in _camera_tables(doc)):
            return "caliscope"
        return "toml"
    if lower.endswith((".yml", ".yaml", ".xml")):
        head = path.read_bytes()[:4096].decode("utf-8", errors="replace")
        if "<calibration" in head and "<cameras" in head:
            return "qualisys"
        keys = set(_fs_keys(_open_filestorage(path)))
        if "names" in keys:
            return "easymocap"
        if "M1" in keys:
            return "opencv_stereo"
        if "camera_matrix" in keys:
            return "opencv_camera"
        raise CalibrationFileError(
            path,
            f"an OpenCV file with no camera entries I know (keys: {sorted(keys)})",
            fix="expected EasyMocap names/K_/dist_, stereo M1/D1/M2/D2 or camera_matrix",
        )
    raise CalibrationFileError(
        path,
        "unknown calibration file type",
        fix="use .toml (aniposelib/Pose2Sim/caliscope), .yml/.xml (EasyMocap, OpenCV) or .qca.txt (Qualisys)",
    )


def read_calibration(
    path: PathLike,
    cameras: Sequence[str] | None = None,
    image_size: ImageSize | Mapping[str, ImageSize] | None = None,
) -> CameraRig:
    """Read any supported calibration file (or folder) into a :class:`CameraRig`.

    cameras: names to return, in that order (default: all, in natural order).
    image_size: (width, height), or per camera, for formats that may not store it (EasyMocap without
    W_/H_, OpenCV stereo).
    """
    path = Path(path)
    fmt = detect_format(path)
    if path.is_dir():
        path = (
            path
            / {
                "toml": "calibration.toml",
                "caliscope": "camera_array.toml",
                "easymocap": "intri.yml",
                "opencv_stereo": "intrinsics.yml",
            }[fmt]
        )
    log.debug("reading %s as %s", path, fmt)
    if fmt == "toml":
        return read_toml(path, cameras)
    if fmt == "caliscope":
        return read_caliscope(path, cameras)
    if fmt == "qualisys":
        return read_qualisys(path, cameras)
    if fmt == "easymocap":
        if "extri" in path.name:
            intri = path.with_name(path.name.replace("extri", "intri"))
            return read_easymocap(intri, path, image_size, cameras)
        return read_easymocap(path, None, image_size, cameras)
    if fmt == "opencv_stereo":
        size = image_size if image_size is None or not isinstance(image_size, Mapping) else None
        return _select(path, read_opencv_stereo(path, image_size=size), cameras)
    return _select(path, read_opencv_camera(path), cameras)
