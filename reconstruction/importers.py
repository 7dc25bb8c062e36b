"""Bring your own detector: read 2D keypoints written by other tools into :class:`Detections2D`.

Formats (``fmt``):

- ``openpose``: a folder of per-frame ``*_keypoints.json`` files per camera (``people[].pose_keypoints_2d``
  as x, y, c triplets), skeleton BODY_25, BODY_25B or COCO-18. Pose2Sim writes RTMPose results this way.
- ``mmpose``: MMPose / RTMPose inferencer predictions per camera: one JSON file holding a list of frames
  ``{"frame_id", "instances": [{"keypoints": [[x, y], ...], "keypoint_scores": [...]}]}`` (or a folder
  of per-frame files, each a list of instances); COCO-17 or HALPE-26, told apart by the joint count.
- ``easymocap``: EasyMocap's ``annots/<camera>/<frame>.json`` (``annots[].keypoints`` as [x, y, c] rows,
  BODY_25 unless told otherwise); ``personID`` orders the person slots.
- ``npz``: arrays ``xy`` (C, T, [P,] J, 2), ``confidence`` (C, T, [P,] J), ``camera_names`` and
  ``skeleton`` (our own keypoints2d.npz is one).

Frame numbers come from the last run of digits in each file name, so a missing file is a missing frame,
not a shift. A zero confidence or a (0, 0) point is "not detected" and becomes NaN.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mocap_studio.common.fileio import load_npz
from mocap_studio.reconstruction.keypoints import Detections2D, KeypointFileError
from mocap_studio.reconstruction.skeletons import get_format

log = logging.getLogger(__name__)

FORMATS = ("openpose", "mmpose", "easymocap", "npz")
__all__ = ["FORMATS", "import_keypoints", "read_openpose", "read_mmpose", "read_easymocap", "read_npz"]

_OPENPOSE_SKELETONS = {25: "body25", 18: "coco18"}
_MMPOSE_SKELETONS = {17: "coco17", 26: "halpe26"}

# one camera's frames: frame number -> list of people, each (xy (J, 2), confidence (J,))
_Frames = dict[int, list[tuple[np.ndarray, np.ndarray]]]


def _frame_number(path: Path, fallback: int) -> int:
    digits = re.findall(r"\d+", path.stem.replace("_keypoints", ""))
    return int(digits[-1]) if digits else fallback


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KeypointFileError(f"{path}: not readable JSON ({e}); re-export it or remove it") from e


def _person(values: Any, joints: int | None, path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat [x, y, c, ...] or rows [[x, y, c], ...] -> xy (J, 2), confidence (J,), checked against joints."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        if arr.size % 3:
            raise KeypointFileError(f"{path}: {what} has {arr.size} numbers, not x, y, c triplets")
        arr = arr.reshape(-1, 3)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise KeypointFileError(f"{path}: {what} has shape {arr.shape}, expected (J, 3)")
    if joints is not None and arr.shape[0] != joints:
        raise KeypointFileError(
            f"{path}: {what} has {arr.shape[0]} joints but the skeleton has {joints}; "
            "pass the skeleton the detector wrote (--skeleton)"
        )
    conf = arr[:, 2] if arr.shape[1] == 3 else np.ones(len(arr))
    return arr[:, :2], conf


def _clean(xy: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-confidence joints and OpenPose's (0, 0) placeholders become NaN."""
    missing = (conf <= 0) | ~np.isfinite(conf) | (xy == 0).all(-1) | ~np.isfinite(xy).all(-1)
    return np.where(missing[:, None], np.nan, xy), np.where(missing, 0.0, conf)


def _json_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder of per-frame JSON files")
    files = sorted(folder.glob("*.json"), key=lambda p: _frame_number(p, 0))
    if not files:
        raise FileNotFoundError(f"{folder}: no .json files")
    return files


def read_openpose(folder: Path, skeleton: str | None = None) -> tuple[_Frames, str]:
    """One camera's OpenPose JSON folder -> (frames, skeleton name)."""
    folder = Path(folder)
    frames: _Frames = {}
    joints = get_format(skeleton).num_joints if skeleton else None
    for i, path in enumerate(_json_files(folder)):
        data = _read_json(path)
        if not isinstance(data, dict) or "people" not in data:
            raise KeypointFileError(f"{path}: no 'people' list; is this OpenPose output?")
        people = []
        for k, person in enumerate(data["people"]):
            values = person.get("pose_keypoints_2d")
            if not values:
                continue
            xy, conf = _person(values, joints, path, f"person {k}")
            if joints is None:
                joints = len(xy)
                if joints not in _OPENPOSE_SKELETONS:
                    raise KeypointFileError(f"{path}: {joints} joints is not an OpenPose body skeleton")
                skeleton = _OPENPOSE_SKELETONS[joints]
                log.info("%s: %d joints, read as %s (BODY_25B: pass it)", folder, joints, skeleton)
            people.append(_clean(xy, conf))
        frames[_frame_number(path, i)] = people
    return frames, skeleton or "body25"


def read_mmpose(source: Path, skeleton: str | None = None) -> tuple[_Frames, str]:
    """One camera's MMPose predictions (a JSON file of frames, or a folder of per-frame files)."""
    source = Path(source)
    if source.is_dir():
        items = [(_frame_number(p, i), _read_json(p), p) for i, p in enumerate(_json_files(source))]
    else:
        data = _read_json(source)
        if not isinstance(data, list):
            raise KeypointFileError(f"{source}: expected a list of frames with 'instances'")
        if data and isinstance(data[0], dict) and "instances" not in data[0]:
            data = [{"frame_id": 0, "instances": data}]  # a single image's list of instances
        items = [(int(f.get("frame_id", i)), f.get("instances", []), source) for i, f in enumerate(data)]
    joints = get_format(skeleton).num_joints if skeleton else None
    frames: _Frames = {}
    for number, instances, path in items:
        if isinstance(instances, dict):
            instances = instances.get("instances", [])
        people = []
        for k, inst in enumerate(instances):
            kps = inst.get("keypoints")
            if kps is None:
                continue
            arr = np.asarray(kps, dtype=float)
            if arr.ndim == 2 and arr.shape[1] == 2 and "keypoint_scores" in inst:
                arr = np.concatenate([arr, np.asarray(inst["keypoint_scores"], float)[:, None]], 1)
            xy, conf = _person(arr, joints, path, f"frame {number} instance {k}")
            if joints is None:
                joints = len(xy)
                if joints not in _MMPOSE_SKELETONS:
                    raise KeypointFileError(f"{path}: {joints} keypoints is neither COCO-17 nor HALPE-26")
                skeleton = _MMPOSE_SKELETONS[joints]
            people.append(_clean(xy, conf))
        frames[number] = people
    return frames, skeleton or "coco17"


def read_easymocap(folder: Path, skeleton: str | None = None) -> tuple[_Frames, str]:
    """One camera's EasyMocap annots folder; people ordered by ``personID``."""
    folder = Path(folder)
    skeleton = skeleton or "body25"
    joints = get_format(skeleton).num_joints
    frames: _Frames = {}
    for i, path in enumerate(_json_files(folder)):
        data = _read_json(path)
        annots = data.get("annots") if isinstance(data, dict) else data
        if not isinstance(annots, list):
            raise KeypointFileError(f"{path}: no 'annots' list; is this an EasyMocap annots file?")
        annots = sorted(annots, key=lambda a: a.get("personID", a.get("id", 0)))
        frames[_frame_number(path, i)] = [
            _clean(*_person(a["keypoints"], joints, path, f"personID {a.get('personID')}"))
            for a in annots
            if a.get("keypoints") is not None
        ]
    return frames, skeleton


def read_npz(path: Path, cameras: Sequence[str] | None = None) -> Detections2D:
    """A plain npz (see module docstring) -> Detections2D, cameras picked by name when given."""
    path = Path(path)
    data = load_npz(path, ("xy", "confidence", "camera_names", "skeleton"), KeypointFileError)
    xy, conf = data["xy"].astype(float), data["confidence"].astype(float)
    if xy.ndim == 4:
        xy, conf = xy[:, :, None], conf[:, :, None]
    try:
        det = Detections2D(xy, conf, tuple(data["camera_names"].tolist()), str(data["skeleton"]),
                           data.get("frame_times"))
    except ValueError as e:
        raise KeypointFileError(f"{path}: {e}") from e
    if cameras is not None:
        order = [det.camera_names.index(c) for c in cameras if c in det.camera_names]
        if len(order) != len(cameras):
            absent = [c for c in cameras if c not in det.camera_names]
            raise KeyError(f"{path}: no camera(s) {absent}; it has {list(det.camera_names)}")
        xy, conf = det.xy[order], det.confidence[order]
        det = Detections2D(xy, conf, tuple(cameras), det.skeleton, det.frame_times)
    return det


_READERS = {"openpose": read_openpose, "mmpose": read_mmpose, "easymocap": read_easymocap}


def import_keypoints(
    sources: dict[str, Path], fmt: str, skeleton: str | None = None, frame_rate: float = 30.0
) -> Detections2D:
    """Read every camera's detections. sources: camera name -> file or folder (for ``npz``: any camera
    name -> the one npz file). Returns (C, T, P, J) with T from the highest frame number + 1 and P the
    most people in any frame."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown keypoint format {fmt!r}; choose one of {FORMATS}")
    if not sources:
        raise ValueError("no keypoint sources given")
    if fmt == "npz":
        paths = {Path(p) for p in sources.values()}
        if len(paths) != 1:
            raise ValueError(f"npz import takes one file holding every camera, got {sorted(map(str, paths))}")
        det = read_npz(paths.pop(), list(sources))
        if skeleton and get_format(skeleton).name != det.skeleton:
            raise KeypointFileError(f"{sources}: holds {det.skeleton}, not the {skeleton} asked for")
        return det
    per_camera: dict[str, _Frames] = {}
    skeletons: dict[str, str] = {}
    for camera, source in sources.items():
        per_camera[camera], skeletons[camera] = _READERS[fmt](Path(source), skeleton)
    if len(set(skeletons.values())) > 1:
        raise KeypointFileError(f"cameras disagree on the skeleton: {skeletons}; pass --skeleton")
    name = next(iter(skeletons.values()))
    J = get_format(name).num_joints
    T = 1 + max((max(f, default=-1) for f in per_camera.values()), default=-1)
    P = max((len(people) for f in per_camera.values() for people in f.values()), default=0)
    if T <= 0 or P == 0:
        raise KeypointFileError(f"no people detected in any frame of {sorted(map(str, sources.values()))}")
    xy = np.full((len(sources), T, P, J, 2), np.nan)
    conf = np.zeros((len(sources), T, P, J))
    for c, frames in enumerate(per_camera.values()):
        for t, people in frames.items():
            for p, (pxy, pconf) in enumerate(people):
                xy[c, t, p], conf[c, t, p] = pxy, pconf
    return Detections2D(xy, conf, tuple(sources), name, np.arange(T) / frame_rate)
