"""Linear blend skinning as pure functions (torch, differentiable), shared by every body model.

The pose convention (SMPL's, used for all models here): each joint's rest frame is aligned with the
model's axes and sits at the joint's rest position; a pose is one local rotation per joint. Posed
global transforms follow the tree::

    R_g[j] = R_g[parent] @ R[j]
    t_g[j] = R_g[parent] @ (J[j] - J[parent]) + t_g[parent]      (root: R_g = R[0], t_g = J[0])

and a vertex moves with ``sum_k w_k (R_g[k] @ (v - J[k]) + t_g[k])``, then the translation is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TreeLevels:
    """A kinematic tree grouped by depth, so that FK runs one batched step per level.

    order: (J,) joints sorted by depth; inverse: (J,) position of each joint in ``order``;
    levels: per depth, (start, stop) into ``order``; parent_pos: (J,) position in ``order`` of each
    ordered joint's parent (-1 for roots).
    """

    order: torch.Tensor
    inverse: torch.Tensor
    levels: tuple[tuple[int, int], ...]
    parent_pos: torch.Tensor


def subtree(parents: Sequence[int], roots: Sequence[int]) -> np.ndarray:
    """(J,) bool: the joints ``roots`` and every joint below them; ``parents`` (J,) as in :func:`tree_levels`,
    parents before their children."""
    out = np.zeros(len(parents), dtype=bool)
    out[list(roots)] = True
    for j, p in enumerate(parents):
        if p >= 0 and out[p]:
            out[j] = True
    return out


def tree_levels(parents: Sequence[int]) -> TreeLevels:
    """Group joints by depth. ``parents`` (J,): parent index per joint, -1 for the root(s)."""
    parents = [int(p) for p in parents]
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if p >= j:
            raise ValueError(f"parents: joint {j} has parent {p}; parents must come before their children")
        depth[j] = 0 if p < 0 else depth[p] + 1
    order = sorted(range(len(parents)), key=lambda j: (depth[j], j))
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    levels = []
    start = 0
    for d in range(max(depth) + 1):
        n = sum(1 for x in depth if x == d)
        levels.append((start, start + n))
        start += n
    parent_pos = [int(inverse[parents[j]]) if parents[j] >= 0 else -1 for j in order]
    return TreeLevels(torch.as_tensor(order), torch.as_tensor(inverse), tuple(levels), torch.as_tensor(parent_pos))


def forward_kinematics(rotmats: torch.Tensor, rest_joints: torch.Tensor, levels: TreeLevels) -> tuple[torch.Tensor, torch.Tensor]:
    """Global joint rotations and positions.

    rotmats: (B, J, 3, 3) local rotations; rest_joints: (J, 3) or (B, J, 3) rest positions.
    Returns (R_g (B, J, 3, 3), t_g (B, J, 3)) in the model frame (no translation added).
    """
    if rotmats.ndim != 4 or rotmats.shape[-2:] != (3, 3):
        raise ValueError(f"rotmats must have shape (B, J, 3, 3), got {tuple(rotmats.shape)}")
    B, J = rotmats.shape[:2]
    if rest_joints.shape[-2:] != (J, 3):
        raise ValueError(f"rest_joints must have shape (J={J}, 3) or (B, J, 3), got {tuple(rest_joints.shape)}")
    rest = rest_joints.expand(B, J, 3) if rest_joints.ndim == 2 else rest_joints
    rot_o = rotmats[:, levels.order]
    rest_o = rest[:, levels.order]
    parent_pos = levels.parent_pos
    # offsets from the parent in the rest pose (roots: their own position)
    par_rest = torch.where((parent_pos >= 0)[None, :, None], rest_o[:, parent_pos.clamp_min(0)], torch.zeros_like(rest_o))
    offsets = rest_o - par_rest
    rg_parts: list[torch.Tensor] = []
    tg_parts: list[torch.Tensor] = []
    for start, stop in levels.levels:
        r_loc = rot_o[:, start:stop]
        off = offsets[:, start:stop]
        if start == 0:
            rg_parts.append(r_loc)
            tg_parts.append(off)
            continue
        done_r = torch.cat(rg_parts, 1)
        done_t = torch.cat(tg_parts, 1)
        pp = parent_pos[start:stop]
        pr = done_r[:, pp]
        rg_parts.append(pr @ r_loc)
        tg_parts.append((pr @ off[..., None])[..., 0] + done_t[:, pp])
    rg = torch.cat(rg_parts, 1)[:, levels.inverse]
    tg = torch.cat(tg_parts, 1)[:, levels.inverse]
    return rg, tg


def skin(
    rest_vertices: torch.Tensor,
    weights: torch.Tensor,
    global_rot: torch.Tensor,
    global_pos: torch.Tensor,
    rest_joints: torch.Tensor,
) -> torch.Tensor:
    """Linear blend skinning.

    rest_vertices: (V, 3) or (B, V, 3); weights: (V, J) dense skinning weights (rows sum to 1);
    global_rot: (B, J, 3, 3), global_pos: (B, J, 3) from :func:`forward_kinematics`; rest_joints: (J, 3)
    or (B, J, 3). Returns (B, V, 3).
    """
    B, J = global_rot.shape[:2]
    if weights.shape[-1] != J:
        raise ValueError(f"weights must have shape (V, {J}), got {tuple(weights.shape)}")
    rest_j = rest_joints.expand(B, J, 3) if rest_joints.ndim == 2 else rest_joints
    # skinning transform per joint: x -> R_g x + (t_g - R_g J)
    trans = global_pos - (global_rot @ rest_j[..., None])[..., 0]
    mats = torch.cat([global_rot.reshape(B, J, 9), trans], -1)  # (B, J, 12)
    blended = torch.einsum("vj,bjk->bvk", weights, mats)  # (B, V, 12)
    rot = blended[..., :9].reshape(B, -1, 3, 3)
    v = rest_vertices if rest_vertices.ndim == 3 else rest_vertices[None]
    return (rot @ v[..., None])[..., 0] + blended[..., 9:]


def pose_feature(rotmats: torch.Tensor) -> torch.Tensor:
    """SMPL's pose-corrective feature: (B, J, 3, 3) -> (B, 9 (J - 1)), the non-root rotations minus I."""
    eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
    return (rotmats[:, 1:] - eye).reshape(rotmats.shape[0], -1)
