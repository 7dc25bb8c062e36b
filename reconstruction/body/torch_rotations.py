"""Rotation math in torch, for the body models and the fitting (the numpy forms live in
``calibration/rotations.py``; these mirror them where gradients are needed).

Forms are named as in DESIGN.md: ``rotvec`` (axis times angle, radians), ``rotmat`` (3x3).
"""

from __future__ import annotations

import torch


def _check_last(t: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(t.shape[t.ndim - len(shape) :]) != shape:
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, shape))}), got {tuple(t.shape)}")


def rotvec_to_rotmat(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: ``rotvec`` (..., 3) radians -> ``rotmat`` (..., 3, 3).

    Smooth at zero (uses the series of sin(t)/t and (1-cos t)/t^2), so gradients stay finite there.
    """
    _check_last(rotvec, (3,), "rotvec")
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < 1e-8
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = torch.sqrt(safe2)
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / safe2)
    k = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * k + b * (k @ k)


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix (..., 3) -> (..., 3, 3) with ``skew(a) @ b == cross(a, b)``."""
    _check_last(v, (3,), "v")
    z = torch.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return torch.stack([torch.stack([z, -w, y], -1), torch.stack([w, z, -x], -1), torch.stack([-y, x, z], -1)], -2)


def rotmat_to_rotvec(rotmat: torch.Tensor) -> torch.Tensor:
    """``rotmat`` (..., 3, 3) -> ``rotvec`` (..., 3), angle in [0, pi] (via the quaternion; for outputs and
    initial values, not for gradients near pi)."""
    _check_last(rotmat, (3, 3), "rotmat")
    m = rotmat
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    diag = torch.stack([1 + tr, 1 + 2 * m[..., 0, 0] - tr, 1 + 2 * m[..., 1, 1] - tr, 1 + 2 * m[..., 2, 2] - tr], -1)
    cands = torch.stack(
        [
            torch.stack(
                [
                    1 + tr,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + 2 * m[..., 0, 0] - tr,
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 + 2 * m[..., 1, 1] - tr,
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 + 2 * m[..., 2, 2] - tr,
                ],
                -1,
            ),
        ],
        -2,
    )
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    vnorm = q[..., 1:].norm(dim=-1)
    angle = 2 * torch.atan2(vnorm, q[..., 0])
    scale = torch.where(vnorm < 1e-12, 2.0 / q[..., 0].clamp_min(1e-12), angle / vnorm.clamp_min(1e-300))
    return q[..., 1:] * scale[..., None]
