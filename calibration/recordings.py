"""Which board recordings may be taken as simultaneous views.

A full calibration matches board views across cameras by frame index, which is right only when frame i of
every camera was taken at the same instant. That holds for synchronized videos (checked afterwards from the
board poses, :func:`calibration.calibrate.check_simultaneous`), and for image folders only when they are
frames of a synchronized capture. Photos taken by each camera on its own (a phone's checkerboard photos)
are not: their frame indices pair unrelated board poses, and a bundle adjustment over them returns absurd
cameras. The rule here, applied before any detection:

- videos: taken as synchronized;
- a video and an image folder: never simultaneous;
- image folders: simultaneous only when their file names correspond: the same number of images and, with
  each folder's common name prefix and suffix removed, the same names in the same order (numbers compared as
  numbers), so ``cam_a/0001.png`` matches ``cam_b/0001.png`` and ``left01.jpg`` matches ``right01.jpg``, while
  ``IMG_0001.jpg`` .. ``IMG_0007.jpg`` and ``IMG_0123.jpg`` .. ``IMG_0129.jpg`` do not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mocap_studio.capture.frames import IMAGE_SUFFIXES
from mocap_studio.common.order import natural_key


class NotSimultaneousError(ValueError):
    """Board recordings that cannot be taken as simultaneous views; the message names them and says what to do."""


def image_files(folder: Path) -> list[Path]:
    """The images of a folder (by suffix, see ``capture.frames.IMAGE_SUFFIXES``) in natural name order, as the
    frame reader reads them; a single image file gives itself."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


def recording_kind(path: Path) -> str:
    """"video", "images" (a folder) or "image" (one image file)."""
    path = Path(path)
    if path.is_dir():
        return "images"
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def frame_keys(files: list[Path]) -> list[str | int]:
    """The part of each file name that changes from image to image (the stems less their common prefix and
    suffix), as an int when it is a number."""
    stems = [p.stem for p in files]
    if len(stems) < 2:
        return [0] * len(stems)
    prefix = len(os.path.commonprefix(stems))
    suffix = len(os.path.commonprefix([s[::-1] for s in stems]))
    keys: list[str | int] = []
    for s in stems:
        part = s[prefix:len(s) - suffix] if len(s) - suffix > prefix else s[prefix:]
        keys.append(int(part) if part.isdigit() else part)
    return keys


def simultaneity_problem(sources: Mapping[str, Path]) -> str | None:
    """Why the recordings (camera name -> video, image folder or image) cannot be taken as simultaneous
    views, in words that name the recordings and say what to do; None when they can (see the module)."""
    if len(sources) < 2:
        return None
    kinds = {name: recording_kind(p) for name, p in sources.items()}
    videos = [n for n, k in kinds.items() if k == "video"]
    if len(videos) == len(kinds):
        return None
    advice = ("For intrinsics from photos taken one camera at a time, use mocap calibrate --intrinsics-only; for a "
              "full calibration give synchronized videos, or image folders of simultaneous frames named alike "
              "(cam_a/0001.png with cam_b/0001.png).")
    if videos:
        folder = next(n for n in kinds if n not in videos)
        return (f"camera {videos[0]!r} has a video ({sources[videos[0]]}) and camera {folder!r} images "
                f"({sources[folder]}): their frames cannot be matched in time, and a full calibration needs board "
                f"views seen by several cameras at the same instant. {advice}")
    names = list(sources)
    files = {n: image_files(sources[n]) for n in names}
    keys = {n: frame_keys(files[n]) for n in names}
    first = names[0]
    for other in names[1:]:
        if keys[other] == keys[first]:
            continue
        a, b = files[first], files[other]
        return (f"the images of camera {first!r} ({sources[first]}: {len(a)}, e.g. {_examples(a)}) and of camera "
                f"{other!r} ({sources[other]}: {len(b)}, e.g. {_examples(b)}) have names that do not correspond, "
                "so nothing says which were taken at the same instant; a full calibration needs board views seen "
                f"by several cameras at the same instant. {advice}")
    return None


def _examples(files: list[Path]) -> str:
    return ", ".join(p.name for p in files[:2]) + (" ..." if len(files) > 2 else "") if files else "none"
