"""Rotation conversions, vectorized over any leading shape.

Forms are named as in DESIGN.md: ``rotvec`` (axis times angle, radians), ``rotmat`` (3x3),
``quat_wxyz``. This is the one implementation every stage uses.
"""

from __future__ import annotations

import numpy as np


def _check_last(arr: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=float)
    if arr.shape[arr.ndim - len(shape):] != shape:
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, shape))}), got {arr.shape}")
    return arr


def rotvec_to_rotmat(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula. ``rotvec`` (..., 3) radians -> ``rotmat`` (..., 3, 3)."""
    rotvec = _check_last(rotvec, (3,), "rotvec")
    theta = np.linalg.norm(rotvec, axis=-1)[..., None, None]
    small = theta < 1e-6
    safe = np.where(small, 1.0, theta)
    k = skew(rotvec)
    # sin(t)/t and (1-cos(t))/t^2, with their series near zero so the map stays smooth
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * k + b * (k @ k)


def rotmat_to_rotvec(rotmat: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotvec_to_rotmat`: ``rotmat`` (..., 3, 3) -> ``rotvec`` (..., 3), angle in [0, pi]."""
    rotmat = _check_last(rotmat, (3, 3), "rotmat")
    return quat_wxyz_to_rotvec(rotmat_to_quat_wxyz(rotmat))


def rotmat_to_quat_wxyz(rotmat: np.ndarray) -> np.ndarray:
    """``rotmat`` (..., 3, 3) -> unit quaternion (..., 4) as w, x, y, z with w >= 0 (Shepperd's method)."""
    m = _check_last(rotmat, (3, 3), "rotmat")
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = np.stack(
        [
            np.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - tr, m[..., 0, 1] + m[..., 1, 0],
                      m[..., 0, 2] + m[..., 2, 0]], -1),
            np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - tr,
                      m[..., 1, 2] + m[..., 2, 1]], -1),
            np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                      1 + 2 * m[..., 2, 2] - tr], -1),
        ],
        -2,
    )  # (..., 4, 4): row i is 4*q_i*q scaled
    diag = np.stack([1 + tr, 1 + 2 * m[..., 0, 0] - tr, 1 + 2 * m[..., 1, 1] - tr, 1 + 2 * m[..., 2, 2] - tr], -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quat_wxyz_to_rotmat(quat_wxyz: np.ndarray) -> np.ndarray:
    """Quaternion (..., 4) w, x, y, z (need not be unit) -> ``rotmat`` (..., 3, 3)."""
    q = _check_last(quat_wxyz, (4,), "quat_wxyz")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def quat_wxyz_to_rotvec(quat_wxyz: np.ndarray) -> np.ndarray:
    """Quaternion (..., 4) w, x, y, z -> ``rotvec`` (..., 3) with angle in [0, pi]."""
    q = _check_last(quat_wxyz, (4,), "quat_wxyz")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[..., :1] < 0, -q, q)
    vnorm = np.linalg.norm(q[..., 1:], axis=-1)
    angle = 2 * np.arctan2(vnorm, q[..., 0])
    scale = np.where(vnorm < 1e-12, 2.0 / np.maximum(q[..., 0], 1e-12), angle / np.maximum(vnorm, 1e-300))
    return q[..., 1:] * scale[..., None]


def rotation_angle_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotation matrices (..., 3, 3) in degrees."""
    rel = np.swapaxes(np.asarray(rot_a), -1, -2) @ np.asarray(rot_b)
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def average_rotations(rotmats: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Chordal L2 mean of rotations (N, 3, 3) -> (3, 3): the nearest rotation to the weighted sum."""
    rotmats = _check_last(rotmats, (3, 3), "rotmats")
    w = np.ones(len(rotmats)) if weights is None else np.asarray(weights, float)
    m = np.einsum("n,nij->ij", w, rotmats)
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrix: (..., 3) -> (..., 3, 3) with skew(a) @ b == cross(a, b)."""
    v = _check_last(v, (3,), "v")
    z = np.zeros_like(v[..., 0])
    return np.stack(
        [np.stack([z, -v[..., 2], v[..., 1]], -1), np.stack([v[..., 2], z, -v[..., 0]], -1),
         np.stack([-v[..., 1], v[..., 0], z], -1)],
        -2,
    )


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotations turning directions ``a`` (..., 3) onto ``b`` (..., 3) -> ``rotmat`` (..., 3, 3).

    Neither needs unit length (they broadcast against each other). Identity where either is zero or they are
    parallel; half a turn about an axis square to ``a`` where they are opposite. This is the one
    implementation of the swing used by the fit's analytic start, retargeting and leg IK.
    """
    a, b = np.broadcast_arrays(_check_last(a, (3,), "a"), _check_last(b, (3,), "b"))
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1)
    cos = np.sum(a * b, axis=-1)
    turns = sin > 1e-12
    rotvec = np.where(turns[..., None], axis / np.maximum(sin, 1e-12)[..., None] * np.arctan2(sin, cos)[..., None], 0.0)
    opposite = ~turns & (cos < 0)
    if np.any(opposite):
        helper = np.where((np.abs(a[..., :1]) < 0.9), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        perp = np.cross(a, helper)
        perp = np.pi * perp / np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), 1e-12)
        rotvec = np.where(opposite[..., None], perp, rotvec)
    return rotvec_to_rotmat(rotvec)


_AXIS_INDEX = {"X": 0, "Y": 1, "Z": 2}


def _check_order(order: str, allow_partial: bool = False) -> str:
    order = order.upper()
    ok = all(c in _AXIS_INDEX for c in order) and len(set(order)) == len(order)
    if not ok or (len(order) != 3 and not allow_partial) or len(order) > 3:
        raise ValueError(f"order must be distinct axes from 'XYZ' (e.g. 'ZXY'), got {order!r}")
    return order


def axis_rotmat(axis: str, angle: np.ndarray) -> np.ndarray:
    """Rotation about one coordinate axis ('X', 'Y' or 'Z'): ``angle`` (...) radians -> (..., 3, 3)."""
    i = _AXIS_INDEX[axis.upper()]
    j, k = (i + 1) % 3, (i + 2) % 3
    angle = np.asarray(angle, dtype=float)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(angle.shape + (3, 3))
    out[..., i, i] = 1.0
    out[..., j, j] = c
    out[..., k, k] = c
    out[..., k, j] = s
    out[..., j, k] = -s
    return out


def euler_to_rotmat(angles: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles -> ``rotmat``: ``angles`` (..., N) radians, ``order`` N distinct axes (N <= 3).

    ``order='ZXY'`` means R = Rz(angles[..., 0]) @ Rx(angles[..., 1]) @ Ry(angles[..., 2]), the BVH channel
    convention (channels listed left to right are applied as matrices left to right). N = 0 gives identity.
    """
    order = _check_order(order, allow_partial=True)
    angles = _check_last(angles, (len(order),), "angles")
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for n, axis in enumerate(order):
        out = out @ axis_rotmat(axis, angles[..., n])
    return out


def rotmat_to_euler(rotmat: np.ndarray, order: str) -> np.ndarray:
    """Inverse of :func:`euler_to_rotmat` for three distinct axes: (..., 3, 3) -> (..., 3) radians.

    The middle angle lies in [-pi/2, pi/2], the others in (-pi, pi]. At gimbal lock the last angle is 0.
    """
    order = _check_order(order)
    m = _check_last(rotmat, (3, 3), "rotmat")
    i, j, k = (_AXIS_INDEX[c] for c in order)
    parity = 1.0 if (j - i) % 3 == 1 else -1.0
    sin_b = np.clip(parity * m[..., i, k], -1.0, 1.0)
    b = np.arcsin(sin_b)
    cos_b = np.sqrt(np.maximum(0.0, 1.0 - sin_b**2))
    locked = cos_b < 1e-9
    a = np.where(locked, np.arctan2(parity * m[..., k, j], m[..., j, j]),
                 np.arctan2(-parity * m[..., j, k], m[..., k, k]))
    c = np.where(locked, 0.0, np.arctan2(-parity * m[..., i, j], m[..., i, i]))
    return np.stack([a, b, c], axis=-1)
