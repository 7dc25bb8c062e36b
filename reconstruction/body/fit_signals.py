"""Signal preparation for body fitting: input checks, left/right swaps, temporal outliers, gap filling,
low-pass, frame rate."""

from __future__ import annotations

import numpy as np
from mocap_studio.reconstruction.body.fit_config import FitConfig, FitError
from mocap_studio.reconstruction.body.model import SkinnedBodyModel
from mocap_studio.reconstruction.keypoints import Keypoints3D
from mocap_studio.reconstruction.skeletons import SkeletonFormat

# ---------------------------------------------------------------------------------------------------
# input checks


def _check_input(model: SkinnedBodyModel, kp: Keypoints3D, cfg: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Targets (T, K, 3) with missing points set to 0 and weights (T, K) (0: missing); raises FitError on
    unusable input."""
    reg = model.keypoint_regressor(kp.skeleton)
    if reg.supported.sum() < 8 or reg.supported.mean() < 0.8:
        raise FitError(
            f"skeleton {kp.skeleton!r}: the {model.name} model defines only {int(reg.supported.sum())} of its "
            "joints; fit needs a detector skeleton such as blazepose33, coco17 or halpe26"
        )
    for side in ("left", "right"):
        for j in ("hip", "shoulder"):
            if f"{side}_{j}" not in reg.joint_names:
                raise FitError(f"skeleton {kp.skeleton!r} has no {side}_{j}; fit needs hips and shoulders")
    xyz = np.asarray(kp.xyz, dtype=float)
    valid = np.isfinite(xyz).all(-1) & reg.supported[None]
    err = np.nan_to_num(np.asarray(kp.error, dtype=float), nan=0.0, posinf=1e6)
    w = valid / (1.0 + (err / cfg.error_scale_px) ** 2)
    observed = valid.sum(1) >= cfg.min_joints
    if not observed.any():
        raise FitError(
            f"no frame of the take has {cfg.min_joints} or more valid keypoints (of {kp.num_frames} frames); "
            "check triangulation (keypoints3d.npz is all NaN or nearly so)"
        )
    w[~observed] = 0.0
    return np.where(valid[..., None], xyz, 0.0), w


SWAP_GROUPS = {
    "feet": ("ankle", "heel", "foot", "toe"),
    "knees": ("knee",),
    "hands": ("wrist", "pinky", "index", "thumb", "hand"),
    "elbows": ("elbow",),
}
"""Parts whose left and right keypoints a detector swaps together (a keypoint joins the first part with a
word of its name): a foot's keypoints move as one, a knee may be swapped with or without it."""

SWAP_CAP_M = 0.15
"""A keypoint's jump between frames counts at most this much in the swap test (an outlier is not a swap)."""

SWAP_PRIOR_M = 0.02
"""What relabelling a frame costs, as a jump of this size for each keypoint of the limb: the labels are
kept unless the jumps they cause say otherwise."""


def _side_swaps(target: np.ndarray, weight: np.ndarray, format_: SkeletonFormat) -> np.ndarray:
    """(T, K) per-frame keypoint order that undoes a detector's left/right swaps of a body part (the identity
    where there is none): apply as ``target[t, order[t]]``.

    For each part (:data:`SWAP_GROUPS`), the labels of the take are chosen by dynamic programming
    (Viterbi over two states per frame, as given or swapped) to make the limb's keypoints move least from
    one frame to the next: a swap shows as both feet (or hands) jumping to each other's place and back.
    Jumps count at most :data:`SWAP_CAP_M` each (so an outlier is not taken for a swap) and only between
    frames that see the keypoint; relabelling costs :data:`SWAP_PRIOR_M` per keypoint and frame.
    target (T, K, 3), weight (T, K) (0: missing)."""
    T, K = weight.shape
    order = np.tile(np.arange(K), (T, 1))
    if T < 3:
        return order
    taken: set[int] = set()
    for words in SWAP_GROUPS.values():
        pairs = [(a, b) for a, b in format_.left_right_pairs if a not in taken and any(w in format_.joints[a] for w in words)]
        taken.update(a for a, _ in pairs)
        if not pairs:
            continue
        left, right = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
        swapped = _viterbi_swaps(target[:, left], target[:, right], weight[:, left] > 0, weight[:, right] > 0)
        order[np.ix_(swapped, left)] = right
        order[np.ix_(swapped, right)] = left
    return order


def _viterbi_swaps(lt: np.ndarray, rt: np.ndarray, lok: np.ndarray, rok: np.ndarray) -> np.ndarray:
    """(T,) bool: frames whose left (T, G, 3) and right (T, G, 3) keypoints (seen where lok, rok (T, G))
    are swapped, by the least total jump (see :func:`_side_swaps`)."""
    T, G = lok.shape
    cap = SWAP_CAP_M**2

    def jump(a: np.ndarray, aok: np.ndarray, b: np.ndarray, bok: np.ndarray) -> np.ndarray:
        d = np.minimum(((a[1:] - b[:-1]) ** 2).sum(-1), cap)
        return np.where(aok[1:] & bok[:-1], d, 0.0).sum(-1)  # (T - 1,)

    # cost of frame t in state s after frame t - 1 in state r: jumps of both sides, relabelled or not
    same = jump(lt, lok, lt, lok) + jump(rt, rok, rt, rok)  # r == s
    cross = jump(rt, rok, lt, lok) + jump(lt, lok, rt, rok)  # r != s
    prior = SWAP_PRIOR_M**2 * G
    cost = np.array([0.0, prior])
    back = np.zeros((T, 2), dtype=np.int64)
    for t in range(1, T):
        stay = cost + same[t - 1]
        move = cost[::-1] + cross[t - 1]
        back[t] = np.where(stay <= move, [0, 1], [1, 0])
        cost = np.minimum(stay, move) + [0.0, prior]
    state = np.zeros(T, dtype=np.int64)
    state[-1] = int(np.argmin(cost))
    for t in range(T - 1, 0, -1):
        state[t - 1] = back[t, state[t]]
    return state.astype(bool)


def _drop_temporal_outliers(target: np.ndarray, weight: np.ndarray, fps: float, cfg: FitConfig) -> np.ndarray:
    """Weights (T, K) with 0 for keypoints farther than ``outlier_sigmas`` keypoint sigmas from their
    running median over about 0.1 s (isolated gross errors, before any fitting can be pulled by them).

    target (T, K, 3), weight (T, K) (0: missing)."""
    from scipy.ndimage import median_filter

    if len(target) < 5:
        return weight
    width = max(5, int(round(fps / 10)) | 1)
    xyz = _fill_nan(np.where(weight[..., None] > 0, target, np.nan))
    med = median_filter(np.nan_to_num(xyz), size=(width, 1, 1), mode="nearest")
    far = np.linalg.norm(target - med, axis=-1) > cfg.outlier_sigmas * cfg.keypoint_sigma_m
    return np.where(far, 0.0, weight)


def _fill_nan(xyz: np.ndarray) -> np.ndarray:
    """(T, K, D) -> the same with NaN runs linearly interpolated over time (held at the ends)."""
    out = xyz.copy()
    t = np.arange(len(xyz))
    for k in range(xyz.shape[1]):
        ok = np.isfinite(xyz[:, k]).all(-1)
        if ok.sum() == 0 or ok.all():
            continue
        for d in range(xyz.shape[2]):
            out[:, k, d] = np.interp(t, t[ok], xyz[ok, k, d])
    return out


def lowpass(xyz: np.ndarray, fps: float, cutoff_hz: float) -> np.ndarray:
    """(T, K, 3) with NaN -> gaps filled by linear interpolation, then the zero-phase Butterworth low-pass of
    reconstruction.filtering (the reference filter of the jitter figures). Joints never seen stay 0."""
    from mocap_studio.reconstruction.filtering import butterworth

    filled = np.nan_to_num(_fill_nan(np.asarray(xyz, dtype=float)), nan=0.0)
    if len(xyz) < 16 or cutoff_hz <= 0 or cutoff_hz >= fps / 2:
        return filled
    return np.ascontiguousarray(butterworth(filled, fps, cutoff_hz, order=4))


def lowpass_views(uv: np.ndarray, conf: np.ndarray, fps: float, cutoff_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """The 2D keypoints of every view low-passed as :func:`lowpass` does the 3D ones: uv (C, T, K, 2) pixels
    and conf (C, T, K) (0: missing, its pixels ignored) -> the same, gaps filled (by interpolation) and
    confidences low-passed (so that a keypoint missing in one frame fades out rather than drops out), 0
    where a view never sees the keypoint."""
    C, T, K, _ = uv.shape
    seen = conf > 0
    pix = np.where(seen[..., None], uv, np.nan).transpose(1, 0, 2, 3).reshape(T, C * K, 2)
    pix = np.concatenate([pix, np.zeros((T, C * K, 1))], -1)
    smooth = lowpass(pix, fps, cutoff_hz)[..., :2].reshape(T, C, K, 2).transpose(1, 0, 2, 3)
    w = np.repeat(conf.transpose(1, 0, 2).reshape(T, C * K, 1), 3, -1)
    smooth_w = np.clip(lowpass(w, fps, cutoff_hz)[..., 0], 0.0, 1.0).reshape(T, C, K).transpose(1, 0, 2)
    return np.ascontiguousarray(smooth), np.ascontiguousarray(smooth_w * seen.any(1, keepdims=True))


def _frame_rate(times: np.ndarray) -> float:
    d = np.diff(np.asarray(times, dtype=float))
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        raise FitError("cannot tell the frame rate from the keypoints' frame times; pass frame_rate")
    return float(1.0 / np.median(d))
