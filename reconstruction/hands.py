"""The hands' knuckles from MediaPipe's hand landmarker, run on a crop around each hand the pose landmarker found.

BlazePose places its three hand keypoints (pinky and index knuckles, the thumb's) from the whole body's picture,
and they hardly tell which way a palm faces: triangulated in virtual studio takes (ring4, 1280x720) the palm's
normal (wrist, index and pinky knuckles) was 45-60 degrees off the truth on average, and the fitted hands with
it (a hand's vertices 35-40 mm off, a quarter of the body's vertices). MediaPipe's hand landmarker, given a
square crop around the hand (``crop_scale`` times the pose's wrist-to-index span on each side of the hand's
centre, resampled to ``CROP_PX``), finds its 21 landmarks; its index and pinky knuckles (MCP joints) and the
thumb's MCP joint are the same points as BlazePose's three (BlazePose's topology: knuckle 1 of the pinky and
the index, knuckle 2 of the thumb), so they replace them in place and everything downstream (triangulation,
the body fit's landmarks) reads the same skeleton. Measured on studio take 101 (4 views, 60 frames): the
palm's normal from the hand landmarks 11.5-13.3 degrees off (median) where BlazePose's was 43-60.

The bundle (``hand_landmarker.task``: the palm detector and the landmark model, Apache-2.0, from the mediapipe
0.10.21 wheel with input metadata added) is built into the project cache by ``make`` or ``python
tools/build_pose_landmarker.py --variant hand``; where it is not built the detect stage keeps BlazePose's
hand keypoints and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HAND_TASK_NAME = "hand_landmarker.task"
CROP_PX = 256
"""Side of the square image the hand's crop is resampled to (the palm detector reads 192, the landmarks 224)."""

KNUCKLES = {"pinky": 17, "index": 5, "thumb": 2}
"""BlazePose's hand keypoints -> the hand landmarker's landmark at the same place (MCP joints)."""
BLAZEPOSE_HANDS = {"left": {"wrist": 15, "pinky": 17, "index": 19, "thumb": 21},
                   "right": {"wrist": 16, "pinky": 18, "index": 20, "thumb": 22}}
"""BlazePose-33 indices of each side's wrist and hand keypoints."""

__all__ = ["HAND_TASK_NAME", "HandLandmarker", "hand_crop", "hand_model_path", "missing_hand_model"]


def hand_model_path() -> Path:
    """Where the hand landmarker's bundle lives: ``<project cache>/pose_models/hand_landmarker.task``."""
    from mocap_studio.common.cache import project_cache_dir

    return project_cache_dir() / "pose_models" / HAND_TASK_NAME


def missing_hand_model() -> str | None:
    """What to tell the user where the hand landmarker's bundle is not built (None where it is)."""
    path = hand_model_path()
    if path.exists():
        return None
    return (f"{path}: the hand landmarker is not built, so the hands' keypoints are BlazePose's (which hardly tell "
            "which way a palm faces); build it once with `python tools/build_pose_landmarker.py --variant hand` (or "
            "`make`), then run `mocap detect` again")


def hand_crop(xy: np.ndarray, conf: np.ndarray, side: str, scale: float, min_half_px: float,
              min_confidence: float) -> tuple[float, float, float] | None:
    """The square crop around one hand from one person's BlazePose keypoints (xy (33, 2) pixels, conf (33,)):
    (x0, y0, side length) in pixels, or None where the pose's wrist is missing or unsure. Centred on the mean
    of the wrist, index and pinky keypoints; ``scale`` times the wrist-to-index span (at least ``min_half_px``)
    on each side of the centre."""
    idx = BLAZEPOSE_HANDS[side]
    w, i, p = idx["wrist"], idx["index"], idx["pinky"]
    pts = xy[[w, i, p]]
    if not np.isfinite(pts).all() or conf[w] < min_confidence:
        return None
    centre = pts.mean(0)
    half = max(scale * float(np.linalg.norm(xy[i] - xy[w])), min_half_px)
    return float(centre[0] - half), float(centre[1] - half), 2.0 * half


class HandLandmarker:
    """MediaPipe's hand landmarker (image mode) run on each hand's crop of a person found by the pose landmarker.
    Use as a context manager. ``model``: the .task bundle (default :func:`hand_model_path`)."""

    def __init__(self, model: Path | None = None, crop_scale: float = 2.0, min_half_px: float = 16.0,
                 min_confidence: float = 0.3, min_wrist_confidence: float = 0.2):
        from mediapipe.tasks.python import BaseOptions, vision

        path = Path(model) if model is not None else hand_model_path()
        if not path.exists():
            raise FileNotFoundError(missing_hand_model() if model is None else f"{path}: no such hand landmarker")
        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)), running_mode=vision.RunningMode.IMAGE,
            num_hands=2, min_hand_detection_confidence=min_confidence, min_hand_presence_confidence=min_confidence)
        self._landmarker = vision.HandLandmarker.create_from_options(options)
        self.crop_scale, self.min_half_px, self.min_wrist_confidence = crop_scale, min_half_px, min_wrist_confidence

    def __enter__(self) -> HandLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release MediaPipe's landmarker (a second call does nothing)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def landmarks(self, image_bgr: np.ndarray, xy: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """The 21 landmarks of each hand of one person (xy (33, 2) BlazePose pixels, conf (33,)) in image pixels:
        (2, 21, 2), left hand then right, NaN where no hand was found. Of the hands found in a crop, the one whose
        wrist lies nearest the pose's wrist is taken, and only within half the crop of it (a hand found there is
        the person's, not a neighbour's or the other hand of the same person). Sets ``tried`` (2,) bool: the hands
        looked for (the pose's wrist seen)."""
        import cv2
        import mediapipe as mp

        out = np.full((2, 21, 2), np.nan)
        self.tried = np.zeros(2, bool)
        for s, side in enumerate(("left", "right")):
            box = hand_crop(xy, conf, side, self.crop_scale, self.min_half_px, self.min_wrist_confidence)
            if box is None:
                continue
            self.tried[s] = True
            x0, y0, size = box
            k = CROP_PX / size
            warp = np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k]])
            crop = cv2.warpAffine(image_bgr, warp, (CROP_PX, CROP_PX), flags=cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_CONSTANT)
            found = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                     data=np.ascontiguousarray(crop[..., ::-1])))
            wrist = xy[BLAZEPOSE_HANDS[side]["wrist"]]
            best, best_d = None, 0.5 * size
            for hand in found.hand_landmarks:
                pts = np.array([(lm.x, lm.y) for lm in hand]) * CROP_PX / k + (x0, y0)
                d = float(np.linalg.norm(pts[0] - wrist))
                if d < best_d:
                    best, best_d = pts, d
            if best is not None:
                out[s] = best
        return out

    def refine(self, image_bgr: np.ndarray, xy: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One person's BlazePose keypoints (xy (33, 2), conf (33,)) with the hands' pinky, index and thumb moved
        to the hand landmarker's knuckles where it found the hand (see the module docstring); their confidence
        becomes the pose's wrist's (the hand was found where the pose put the wrist). Returns new arrays and
        leaves those given alone; also sets ``found`` (2,) bool, which hands were found."""
        xy, conf = xy.copy(), conf.copy()
        hands = self.landmarks(image_bgr, xy, conf)
        self.found = np.isfinite(hands[:, 0, 0])
        for s, side in enumerate(("left", "right")):
            if not self.found[s]:
                continue
            idx = BLAZEPOSE_HANDS[side]
            for name, landmark in KNUCKLES.items():
                xy[idx[name]] = hands[s, landmark]
                conf[idx[name]] = conf[idx["wrist"]]
        return xy, conf
