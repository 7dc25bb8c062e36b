"""The analytic start of body fitting: the torso from the hips and shoulders, then each limb bone turned onto
its observed direction (the smallest rotation, :func:`common.rotations.rotation_between`)."""

from __future__ import annotations

import numpy as np
import torch
from mocap_studio.common.rotations import rotation_between
from mocap_studio.reconstruction.body.fit_signals import _fill_nan
from mocap_studio.reconstruction.body.fit_skeleton import DT, _forward, _Reduced, _Rest
from mocap_studio.reconstruction.body.model import SkinnedBodyModel

# ---------------------------------------------------------------------------------------------------
# initialisation


def _torso_frame(lh: np.ndarray, rh: np.ndarray, ls: np.ndarray, rs: np.ndarray) -> np.ndarray:
    """(..., 3, 3) columns: subject's left, back (so that left x back = up), up."""
    x = lh - rh
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    up = 0.5 * (ls + rs) - 0.5 * (lh + rh)
    z = up - (up * x).sum(-1, keepdims=True) * x
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], -1)


def _unwrap_rotvec(r: np.ndarray) -> np.ndarray:
    """(T, 3) rotation vectors made continuous over time (equivalent representations picked)."""
    out = r.copy()
    for t in range(1, len(out)):
        ang = np.linalg.norm(out[t])
        if ang < 1e-9:
            continue
        axis = out[t] / ang
        cands = axis[None] * (ang + np.array([0.0, -2 * np.pi, 2 * np.pi]))[:, None]
        out[t] = cands[np.argmin(np.linalg.norm(cands - out[t - 1], axis=1))]
    return out


_BONE_INIT = (  # (semantic joint, keypoint at the joint, keypoint at the bone's end)
    ("left_hip", "left_hip", "left_knee"), ("right_hip", "right_hip", "right_knee"),
    ("left_knee", "left_knee", "left_ankle"), ("right_knee", "right_knee", "right_ankle"),
    ("left_shoulder", "left_shoulder", "left_elbow"), ("right_shoulder", "right_shoulder", "right_elbow"),
    ("left_elbow", "left_elbow", "left_wrist"), ("right_elbow", "right_elbow", "right_wrist"),
    ("left_ankle", "left_heel", "left_foot_index"), ("right_ankle", "right_heel", "right_foot_index"),
    ("left_ankle", "left_heel", "left_big_toe"), ("right_ankle", "right_heel", "right_big_toe"),
    ("left_wrist", "left_wrist", "left_index"), ("right_wrist", "right_wrist", "right_index"),
)


def initialise(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, xyz: np.ndarray, names: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic local rotations (T, Jf, 3, 3) and translation (T, 3) from keypoints (T, K, 3) (NaN
    allowed): the torso from the hips and shoulders, then each limb bone turned onto its observed
    direction."""
    T = len(xyz)
    obs = _fill_nan(xyz)
    idx = {n: i for i, n in enumerate(names)}
    jf = len(red.free)
    with torch.no_grad():
        kp_rest = _forward(model, red, rest, torch.eye(3, dtype=DT).expand(1, jf, 3, 3), torch.zeros(1, 3, dtype=DT))
        kp_rest_np = kp_rest.pts[0].numpy()
        root_rest = rest.joints[0].numpy()
    quad = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")
    f_rest = _torso_frame(*(kp_rest_np[idx[n]] for n in quad))
    f_obs = _torso_frame(*(obs[:, idx[n]] for n in quad))
    r_root = f_obs @ f_rest.T
    mid_rest = 0.5 * (kp_rest_np[idx["left_hip"]] + kp_rest_np[idx["right_hip"]])
    mid_obs = 0.5 * (obs[:, idx["left_hip"]] + obs[:, idx["right_hip"]])
    trans = mid_obs - (r_root @ (mid_rest - root_rest)[:, None])[..., 0] - root_rest
    rot = np.tile(np.eye(3), (T, jf, 1, 1))
    rot[:, 0] = r_root
    tt = torch.as_tensor(trans, dtype=DT)
    for sem, a, b in _BONE_INIT:
        if sem not in red.sem or a not in idx or b not in idx:
            continue
        j = red.sem[sem]
        with torch.no_grad():
            posed = _forward(model, red, rest, torch.as_tensor(rot, dtype=DT), tt)
        kp = posed.pts.numpy()
        g_par = posed.rg[:, red.parent_f[j]].numpy()
        swing = rotation_between(kp[:, idx[b]] - kp[:, idx[a]], obs[:, idx[b]] - obs[:, idx[a]])
        rot[:, j] = np.swapaxes(g_par, -1, -2) @ swing @ g_par @ rot[:, j]
    return torch.as_tensor(rot, dtype=DT), tt
