"""Bring your own detector: read 2D keypoints written by other tools into :class:`Detections2D`.

Formats (``fmt``):

- ``openpose``: a folder of per-frame ``*_keypoints.json`` files per camera (``people[].pose_keypoints_2d``
  as x, y, c triplets): BODY_25, BODY_25B, COCO-18, or COCO-17 / HALPE-26 as Pose2Sim writes RTMPose
  results.
- ``mmpose``: MMPose / RTMPose inferencer predictions per camera: one JSON file holding a list of frames
  ``{"frame_id", "instances": [{"keypoints": [[x, y], ...], "keypoint_scores": [...]}]}`` (or a folder
  of per-frame files, each a list of instances); COCO-17 or HALPE-26.
- ``easymocap``: EasyMocap's ``annots/<camera>/<frame>.json`` (``annots[].keypoints`` as [x, y, c] rows);
  ``personID`` orders the person slots.
- ``npz``: arrays ``xy`` (C, T, [P,] J, 2), ``confidence`` (C, T, [P,] J), ``camera_names`` and
  ``skeleton`` (our own keypoints2d.npz is one).

Frame numbers come from the last run of digits in each file name, so a missing file is a missing frame,
not a shift. A zero confidence or a (0, 0) point is "not detected" and becomes NaN.

The skeleton is never assumed from the joint count alone: where several layouts share a count (OpenPose's
BODY_25 and BODY_25B, Pose2Sim's default, both 25 joints in different orders) the detections themselves
decide (:func:`skeletons.identify_layout`: short, left/right-symmetric limbs and head-shoulders-hips-knees-
ankles order along the body under the right reading), and when they cannot, the import stops and asks for
the skeleton. A skeleton given by the user is checked the same way and a contradiction is a warning.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mocap_studio.common.fileio import load_npz
from mocap_studio.reconstruction.keypoints import Detections2D, KeypointFileError
from mocap_studio.reconstruction.skeletons import (
    DETECTOR_FORMATS,
    LayoutChoice,
    get_format,
    identify_layout,
    layouts_with,
)
from mocap_studio.reconstruction.skeletons import (
    FORMATS as SKELETONS,
)

log = logging.getLogger(__name__)

FORMATS = ("openpose", "mmpose", "easymocap", "npz")
__all__ = ["FORMATS", "ImportedKeypoints", "import_keypoints", "read_keypoints", "read_openpose", "read_mmpose",
           "read_easymocap", "read_npz"]

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


def read_openpose(folder: Path, skeleton: str | None = None) -> tuple[_Frames, int]:
    """One camera's OpenPose JSON folder -> (frames, joints per person). With ``skeleton`` given, every
    person must have its joint count; without it, every person must have the count of the first one."""
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
            joints = len(xy)
            people.append(_clean(xy, conf))
        frames[_frame_number(path, i)] = people
    return frames, joints or 0


def read_mmpose(source: Path, skeleton: str | None = None) -> tuple[_Frames, int]:
    """One camera's MMPose predictions (a JSON file of frames, or a folder of per-frame files) -> (frames,
    joints per person)."""
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
            joints = len(xy)
            people.append(_clean(xy, conf))
        frames[number] = people
    return frames, joints or 0


def read_easymocap(folder: Path, skeleton: str | None = None) -> tuple[_Frames, int]:
    """One camera's EasyMocap annots folder -> (frames, joints per person); people ordered by ``personID``."""
    folder = Path(folder)
    joints = get_format(skeleton).num_joints if skeleton else None
    frames: _Frames = {}
    for i, path in enumerate(_json_files(folder)):
        data = _read_json(path)
        annots = data.get("annots") if isinstance(data, dict) else data
        if not isinstance(annots, list):
            raise KeypointFileError(f"{path}: no 'annots' list; is this an EasyMocap annots file?")
        annots = sorted(annots, key=lambda a: a.get("personID", a.get("id", 0)))
        people = []
        for a in annots:
            if a.get("keypoints") is None:
                continue
            xy, conf = _person(a["keypoints"], joints, path, f"personID {a.get('personID')}")
            joints = len(xy)
            people.append(_clean(xy, conf))
        frames[_frame_number(path, i)] = people
    return frames, joints or 0


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


@dataclass(frozen=True, eq=False)
class ImportedKeypoints:
    """What :func:`read_keypoints` read: the detections, how their skeleton was chosen, and what is odd."""

    detections: Detections2D
    layout: LayoutChoice
    """The skeleton and its evidence (``reason`` says whether it was given, stored, or told from the data)."""
    warnings: tuple[str, ...] = ()
    """E.g. a skeleton given by the user that the detections clearly contradict."""


def _choose_layout(xy: np.ndarray, joints: int, skeleton: str | None, where: str) -> tuple[LayoutChoice, list[str]]:
    """The layout of detections xy (N, J, 2): the given one (checked against the data), else told from it."""
    candidates = layouts_with(joints)
    if skeleton:
        name = get_format(skeleton).name
        rivals = tuple(dict.fromkeys((name, *candidates)))
        choice = identify_layout(xy, rivals)
        given = LayoutChoice(name, rivals, choice.detections, choice.evidence, f"given ({name})")
        if choice.skeleton and choice.skeleton != name:
            return given, [f"{where}: read as {name} as asked, but the detections look like {choice.skeleton} "
                           f"({choice.reason}); check --skeleton"]
        return given, []
    if not candidates:
        known = ", ".join(f"{SKELETONS[n].num_joints}: {n}" for n in DETECTOR_FORMATS)
        raise KeypointFileError(f"{where}: {joints} joints per person is none of the layouts known here ({known}); "
                                "convert the files to one of them")
    choice = identify_layout(xy, candidates)
    if not choice.skeleton:
        options = " or ".join(f"--skeleton {c}" for c in candidates)
        raise KeypointFileError(f"{where}: {joints} joints per person could be {' or '.join(candidates)}, and the "
                                f"detections do not tell them apart ({choice.reason}); pass {options}")
    log.info("%s: skeleton %s, told from the data: %s", where, choice.skeleton, choice.reason)
    return choice, []


def read_keypoints(
    sources: dict[str, Path], fmt: str, skeleton: str | None = None, frame_rate: float = 30.0
) -> ImportedKeypoints:
    """Read every camera's detections. sources: camera name -> file or folder (for ``npz``: any camera
    name -> the one npz file). The detections are (C, T, P, J) with T from the highest frame number + 1, P
    the most people in any frame, and frame times ``t / frame_rate``.

    Without ``skeleton`` the layout is the only known one with the files' joint count, or, where several
    share it (BODY_25 and BODY_25B), the one the detections fit (:func:`identify_layout`); when they do not
    tell, a KeypointFileError asks for the skeleton."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown keypoint format {fmt!r}; choose one of {FORMATS}")
    if not sources:
        raise ValueError("no keypoint sources given")
    if not frame_rate or frame_rate <= 0 or not np.isfinite(frame_rate):
        raise ValueError(f"frame_rate must be a positive number of frames per second, got {frame_rate}")
    if fmt == "npz":
        paths = {Path(p) for p in sources.values()}
        if len(paths) != 1:
            raise ValueError(f"npz import takes one file holding every camera, got {sorted(map(str, paths))}")
        path = paths.pop()
        det = read_npz(path, list(sources))
        if skeleton and get_format(skeleton).name != det.skeleton:
            raise KeypointFileError(f"{path}: holds {det.skeleton}, not the {skeleton} asked for")
        layout = LayoutChoice(det.skeleton, (det.skeleton,), 0, {}, f"stored in {path.name}")
        return ImportedKeypoints(det, layout)
    per_camera: dict[str, _Frames] = {}
    counts: dict[str, int] = {}
    for camera, source in sources.items():
        per_camera[camera], counts[camera] = _READERS[fmt](Path(source), skeleton)
    where = ", ".join(str(sources[c]) for c in sources)
    sizes = {n for n in counts.values() if n}
    if len(sizes) > 1:
        raise KeypointFileError(f"cameras disagree on the joints per person ({counts}); each camera's files must "
                                "come from one detector")
    T = 1 + max((max(f, default=-1) for f in per_camera.values()), default=-1)
    P = max((len(people) for f in per_camera.values() for people in f.values()), default=0)
    if T <= 0 or P == 0 or not sizes:
        raise KeypointFileError(f"no people detected in any frame of {where}")
    J = sizes.pop()
    xy = np.full((len(sources), T, P, J, 2), np.nan)
    conf = np.zeros((len(sources), T, P, J))
    for c, frames in enumerate(per_camera.values()):
        for t, people in frames.items():
            for p, (pxy, pconf) in enumerate(people):
                xy[c, t, p], conf[c, t, p] = pxy, pconf
    layout, warnings = _choose_layout(xy.reshape(-1, J, 2), J, skeleton, where)
    det = Detections2D(xy, conf, tuple(sources), layout.skeleton, np.arange(T) / frame_rate)
    return ImportedKeypoints(det, layout, tuple(warnings))


def import_keypoints(
    sources: dict[str, Path], fmt: str, skeleton: str | None = None, frame_rate: float = 30.0
) -> Detections2D:
    """The detections of :func:`read_keypoints` (C, T, P, J), without the account of the skeleton."""
    return read_keypoints(sources, fmt, skeleton, frame_rate).detections
