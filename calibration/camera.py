"""Camera model: pinhole with OpenCV distortion (k1 k2 p1 p2 [k3 [k4 k5 k6]]) or equidistant fisheye.

Conventions (DESIGN.md): extrinsics are world-to-camera, ``x_cam = R @ X + t``; metres; pixels for image
coordinates; a missing value is NaN and passes through every function here. All functions are vectorized
over any leading shape.

The math is kept in pure functions (``distort_normalized``, ``undistort_normalized``, ...) so the bundle
adjustment and the triangulation can use it on raw parameter arrays; :class:`Camera` and
:class:`CameraRig` only hold state and look cameras up by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from mocap_studio.common.order import natural_key
from mocap_studio.common.rotations import rotmat_to_rotvec, rotvec_to_rotmat, skew

CameraModel = Literal["pinhole", "fisheye"]
PINHOLE_DIST_LENGTHS = (0, 4, 5, 8)
FISHEYE_DIST_LENGTHS = (0, 4)


def _points(arr: np.ndarray, dim: int, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 0 or arr.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got {np.shape(arr)}")
    return arr


# --------------------------------------------------------------------------------------------------
# Pure distortion math on normalized image coordinates (x/z, y/z)
# --------------------------------------------------------------------------------------------------
def _pinhole_coeffs(dist: np.ndarray) -> tuple[np.ndarray, ...]:
    """(..., n) coefficients -> eight arrays of shape (...) (k1 k2 p1 p2 k3 k4 k5 k6), zero-padded."""
    dist = np.asarray(dist, dtype=float)
    padded = np.zeros(dist.shape[:-1] + (8,))
    padded[..., : dist.shape[-1]] = dist
    return tuple(padded[..., i] for i in range(8))


def distort_normalized(xy: np.ndarray, dist: np.ndarray, model: CameraModel = "pinhole") -> np.ndarray:
    """Apply lens distortion to normalized coordinates. ``xy`` (..., 2) -> (..., 2).

    ``dist`` is (n,) for one camera or (..., n) broadcasting with ``xy``'s leading shape (one set of
    coefficients per point, as the bundle adjustment uses). For ``fisheye``, ``xy`` are pinhole-normalized
    coordinates (tan of the angle), as in OpenCV's fisheye module.
    """
    xy = _points(xy, 2, "xy")
    dist = np.asarray(dist, dtype=float)
    x, y = xy[..., 0], xy[..., 1]
    if model == "fisheye":
        r = np.hypot(x, y)
        return _fisheye_from_theta(np.arctan(r), x, y, r, dist)
    k1, k2, p1, p2, k3, k4, k5, k6 = _pinhole_coeffs(dist)
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def _fisheye_theta_d(theta: np.ndarray, dist: np.ndarray) -> np.ndarray:
    dist = np.asarray(dist, dtype=float)
    k = np.zeros(dist.shape[:-1] + (4,))
    k[..., : dist.shape[-1]] = dist
    t2 = theta * theta
    return theta * (1 + t2 * (k[..., 0] + t2 * (k[..., 1] + t2 * (k[..., 2] + t2 * k[..., 3]))))


def _fisheye_from_theta(theta, x, y, r, dist):
    theta_d = _fisheye_theta_d(theta, dist)
    scale = np.where(r > 1e-12, theta_d / np.where(r > 1e-12, r, 1.0), 1.0)
    return np.stack([x * scale, y * scale], axis=-1)


def _pinhole_jacobian(x, y, dist):
    k1, k2, p1, p2, k3, k4, k5, k6 = _pinhole_coeffs(dist)
    r2 = x * x + y * y
    a = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    b = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
    da = k1 + r2 * (2 * k2 + 3 * k3 * r2)
    db = k4 + r2 * (2 * k5 + 3 * k6 * r2)
    radial = a / b
    d_radial = (da * b - a * db) / (b * b)  # d radial / d r2
    j00 = radial + 2 * x * x * d_radial + 2 * p1 * y + 6 * p2 * x
    j01 = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
    j10 = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
    j11 = radial + 2 * y * y * d_radial + 6 * p1 * y + 2 * p2 * x
    return j00, j01, j10, j11


def undistort_normalized(
    xy_distorted: np.ndarray, dist: np.ndarray, model: CameraModel = "pinhole", iterations: int = 30
) -> np.ndarray:
    """Invert :func:`distort_normalized` by Newton's method. (..., 2) -> (..., 2); NaN passes through.

    Converges to better than 1e-12 in normalized units over the valid image for ordinary lenses.
    """
    xy_distorted = _points(xy_distorted, 2, "xy_distorted")
    dist = np.asarray(dist, dtype=float).ravel()
    if not np.any(dist):
        return xy_distorted.copy()
    if model == "fisheye":
        theta = fisheye_undistort_angle(np.hypot(xy_distorted[..., 0], xy_distorted[..., 1]), dist)
        rd = np.hypot(xy_distorted[..., 0], xy_distorted[..., 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(rd > 1e-12, np.tan(theta) / np.where(rd > 1e-12, rd, 1.0), 1.0)
            scale = np.where(theta >= np.pi / 2, np.nan, scale)
        return xy_distorted * scale[..., None]
    xy = xy_distorted.copy()
    for _ in range(iterations):
        x, y = xy[..., 0], xy[..., 1]
        residual = distort_normalized(xy, dist) - xy_distorted
        j00, j01, j10, j11 = _pinhole_jacobian(x, y, dist)
        det = j00 * j11 - j01 * j10
        with np.errstate(invalid="ignore", divide="ignore"):
            dx = (j11 * residual[..., 0] - j01 * residual[..., 1]) / det
            dy = (-j10 * residual[..., 0] + j00 * residual[..., 1]) / det
        xy = xy - np.stack([dx, dy], axis=-1)
        if np.nanmax(np.abs(residual), initial=0.0) < 1e-15:
            break
    return xy


def fisheye_undistort_angle(theta_d: np.ndarray, dist: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Solve ``theta_d = theta (1 + k1 theta^2 + ...)`` for the incidence angle ``theta`` (radians)."""
    theta_d = np.asarray(theta_d, dtype=float)
    k = np.zeros(4)
    k[: len(dist)] = np.asarray(dist, dtype=float).ravel()
    theta = theta_d.copy()
    for _ in range(iterations):
        t2 = theta * theta
        f = _fisheye_theta_d(theta, dist) - theta_d
        df = 1 + t2 * (3 * k[0] + t2 * (5 * k[1] + t2 * (7 * k[2] + t2 * 9 * k[3])))
        theta = theta - f / df
        if np.nanmax(np.abs(f), initial=0.0) < 1e-15:
            break
    return theta


def distort_camera_points(points_cam: np.ndarray, dist: np.ndarray, model: CameraModel = "pinhole") -> np.ndarray:
    """Points in camera coordinates (..., 3) -> distorted normalized image coordinates (..., 2).

    ``dist`` is (n,) or (..., n) per point. No visibility test (points behind a pinhole camera still map).
    """
    points_cam = _points(points_cam, 3, "points_cam")
    x, y, z = points_cam[..., 0], points_cam[..., 1], points_cam[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        if model == "fisheye":
            # theta from atan2 keeps rays beyond 90 degrees; theta_d / r is scale-free in r
            r = np.hypot(x, y)
            xy = _fisheye_from_theta(np.arctan2(r, z), x, y, r, dist)
            return np.where((r > 1e-12)[..., None], xy, points_cam[..., :2] / z[..., None])
        return distort_normalized(points_cam[..., :2] / z[..., None], dist)


def project_camera_points(
    points_cam: np.ndarray, K: np.ndarray, dist: np.ndarray, model: CameraModel = "pinhole"
) -> np.ndarray:
    """Project points in camera coordinates (..., 3) to pixels (..., 2). No visibility test."""
    xy = distort_camera_points(points_cam, dist, model)
    u = K[0, 0] * xy[..., 0] + K[0, 1] * xy[..., 1] + K[0, 2]
    v = K[1, 1] * xy[..., 1] + K[1, 2]
    return np.stack([u, v], axis=-1)


# --------------------------------------------------------------------------------------------------
# Camera and rig
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera.

    name: unique within a rig. size: (width, height) in pixels. K: (3, 3) intrinsic matrix.
    dist: distortion, OpenCV order: pinhole (k1, k2, p1, p2[, k3[, k4, k5, k6]]); fisheye (k1..k4).
    R: (3, 3) world-to-camera rotation. t: (3,) world-to-camera translation in metres.
    model: "pinhole" or "fisheye" (equidistant, OpenCV's fisheye module).
    """

    name: str
    size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))
    model: CameraModel = "pinhole"

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=float)
        R = np.asarray(self.R, dtype=float)
        t = np.asarray(self.t, dtype=float).reshape(-1)
        dist = np.asarray(self.dist, dtype=float).reshape(-1)
        where = f"camera {self.name!r}"
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"{where}: K must be a finite 3x3 matrix with positive focal lengths, got {K.tolist()}")
        if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise ValueError(f"{where}: R must be a 3x3 rotation matrix (orthonormal, det +1)")
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ValueError(f"{where}: t must have 3 finite values, got {t.tolist()}")
        if self.model not in ("pinhole", "fisheye"):
            raise ValueError(f"{where}: model must be 'pinhole' or 'fisheye', got {self.model!r}")
        allowed = PINHOLE_DIST_LENGTHS if self.model == "pinhole" else FISHEYE_DIST_LENGTHS
        if len(dist) not in allowed:
            raise ValueError(f"{where}: a {self.model} camera takes {allowed} distortion coefficients, got {len(dist)}")
        size = tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"{where}: size must be (width, height) in pixels, got {self.size}")
        for name, value in (("K", K), ("R", R), ("t", t), ("dist", dist)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "size", size)

    # --- construction helpers
    @classmethod
    def from_rotvec(cls, name: str, size, K, dist, rotvec, t, model: CameraModel = "pinhole") -> Camera:
        """A camera from a (3,) rotation vector ``rotvec`` (world to camera) instead of a rotation matrix."""
        return cls(name, tuple(size), K, dist, rotvec_to_rotmat(np.asarray(rotvec, float)), t, model)

    def replace(self, **changes) -> Camera:
        """A copy with the given fields changed (validated again)."""
        return replace(self, **changes)

    # --- pose
    @property
    def rotvec(self) -> np.ndarray:
        """(3,) world-to-camera rotation as a rotation vector."""
        return rotmat_to_rotvec(self.R)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (3,)."""
        return -self.R.T @ self.t

    @property
    def world_from_camera(self) -> np.ndarray:
        """(4, 4) camera-to-world transform."""
        m = np.eye(4)
        m[:3, :3] = self.R.T
        m[:3, 3] = self.center
        return m

    @property
    def camera_from_world(self) -> np.ndarray:
        """(4, 4) world-to-camera transform."""
        m = np.eye(4)
        m[:3, :3] = self.R
        m[:3, 3] = self.t
        return m

    @property
    def projection_matrix(self) -> np.ndarray:
        """(3, 4) ``K [R | t]`` for undistorted pixel coordinates."""
        return self.K @ np.hstack([self.R, self.t[:, None]])

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """World (..., 3) -> camera coordinates (..., 3)."""
        return _points(points_world, 3, "points_world") @ self.R.T + self.t

    def to_world(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera (..., 3) -> world coordinates (..., 3)."""
        return (_points(points_cam, 3, "points_cam") - self.t) @ self.R

    # --- projection
    def project(self, points_world: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixels (..., 2). NaN in, NaN out; points behind the camera give NaN."""
        cam = self.to_camera(points_world)
        uv = project_camera_points(cam, self.K, self.dist, self.model)
        in_front = cam[..., 2] > 1e-9 if self.model == "pinhole" else np.linalg.norm(cam, axis=-1) > 1e-9
        return np.where(in_front[..., None], uv, np.nan)

    def pixels_to_normalized(self, uv: np.ndarray) -> np.ndarray:
        """Distorted pixels (..., 2) -> distorted normalized coordinates (..., 2) (inverse of K only)."""
        uv = _points(uv, 2, "uv")
        K = self.K
        y = (uv[..., 1] - K[1, 2]) / K[1, 1]
        x = (uv[..., 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
        return np.stack([x, y], axis=-1)

    def normalized_to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """Normalized coordinates (..., 2) -> pixels (..., 2) through K only."""
        xy = _points(xy, 2, "xy")
        K = self.K
        return np.stack([K[0, 0] * xy[..., 0] + K[0, 1] * xy[..., 1] + K[0, 2], K[1, 1] * xy[..., 1] + K[1, 2]], -1)

    def distort(self, uv_ideal: np.ndarray) -> np.ndarray:
        """Ideal (undistorted) pixels (..., 2) -> observed (distorted) pixels (..., 2)."""
        xy = self.pixels_to_normalized(uv_ideal)
        return self.normalized_to_pixels(distort_normalized(xy, self.dist, self.model))

    def undistort_points(self, uv: np.ndarray) -> np.ndarray:
        """Observed pixels (..., 2) -> undistorted normalized coordinates (..., 2) (x/z, y/z)."""
        return undistort_normalized(self.pixels_to_normalized(uv), self.dist, self.model)

    def undistort_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Observed pixels (..., 2) -> ideal pinhole pixels with the same K (..., 2)."""
        return self.normalized_to_pixels(self.undistort_points(uv))

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """Observed pixels (..., 2) -> unit ray directions in world coordinates (..., 3).

        Rays start at :attr:`center`. Fisheye rays beyond 90 degrees are handled.
        """
        xy_d = self.pixels_to_normalized(uv)
        if self.model == "fisheye":
            rd = np.hypot(xy_d[..., 0], xy_d[..., 1])
            theta = fisheye_undistort_angle(rd, self.dist)
            with np.errstate(invalid="ignore", divide="ignore"):
                s = np.where(rd > 1e-12, np.sin(theta) / np.where(rd > 1e-12, rd, 1.0), 1.0)
            d_cam = np.stack([xy_d[..., 0] * s, xy_d[..., 1] * s, np.cos(theta)], -1)
        else:
            xy = undistort_normalized(xy_d, self.dist)
            d_cam = np.concatenate([xy, np.ones_like(xy[..., :1])], -1)
        d_cam = d_cam / np.linalg.norm(d_cam, axis=-1, keepdims=True)
        return d_cam @ self.R

    def undistort_image(self, image: np.ndarray, K_new: np.ndarray | None = None) -> np.ndarray:
        """Remove lens distortion from an image (H, W[, 3]); the result uses ``K_new`` (default K)."""
        import cv2

        h, w = image.shape[:2]
        if (w, h) != self.size:
            raise ValueError(f"camera {self.name!r}: image is {w}x{h} but the camera is {self.size[0]}x{self.size[1]}")
        K_new = self.K if K_new is None else np.asarray(K_new, float)
        if self.model == "fisheye":
            map1, map2 = cv2.fisheye.initUndistortRectifyMap(
                self.K, self.dist, np.eye(3), K_new, (w, h), cv2.CV_32FC1
            )
        else:
            map1, map2 = cv2.initUndistortRectifyMap(self.K, self.dist, None, K_new, (w, h), cv2.CV_32FC1)
        return cv2.remap(image, map1, map2, cv2.INTER_LINEAR)

    def in_image(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether pixels (..., 2) fall inside the image (False for NaN)."""
        uv = _points(uv, 2, "uv")
        w, h = self.size
        with np.errstate(invalid="ignore"):
            return (uv[..., 0] >= -margin) & (uv[..., 0] <= w - 1 + margin) & (uv[..., 1] >= -margin) & (
                uv[..., 1] <= h - 1 + margin
            )


def relative_pose(cam_a: Camera, cam_b: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Pose of camera b relative to camera a: ``x_b = R_ba @ x_a + t_ba``. Returns (R_ba (3, 3), t_ba (3,))."""
    R_ba = cam_b.R @ cam_a.R.T
    return R_ba, cam_b.t - R_ba @ cam_a.t


def essential_matrix(cam_a: Camera, cam_b: Camera) -> np.ndarray:
    """(3, 3) essential matrix with ``x_b^T E x_a = 0`` for normalized undistorted coordinates."""
    R_ba, t_ba = relative_pose(cam_a, cam_b)
    return skew(t_ba) @ R_ba


def fundamental_matrix(cam_a: Camera, cam_b: Camera) -> np.ndarray:
    """(3, 3) fundamental matrix with ``u_b^T F u_a = 0`` for undistorted (ideal) pixels."""
    F = np.linalg.inv(cam_b.K).T @ essential_matrix(cam_a, cam_b) @ np.linalg.inv(cam_a.K)
    return F / np.linalg.norm(F)


def epipolar_lines(cam_a: Camera, cam_b: Camera, uv_a: np.ndarray) -> np.ndarray:
    """Epipolar lines in b's ideal pixels for observed pixels ``uv_a`` (..., 2): (..., 3) as (a, b, c), a^2+b^2=1."""
    ideal = cam_a.undistort_pixels(uv_a)
    homog = np.concatenate([ideal, np.ones_like(ideal[..., :1])], -1)
    lines = homog @ fundamental_matrix(cam_a, cam_b).T
    return lines / np.linalg.norm(lines[..., :2], axis=-1, keepdims=True)


def epipolar_distance(cam_a: Camera, cam_b: Camera, uv_a: np.ndarray, uv_b: np.ndarray) -> np.ndarray:
    """Symmetric point-to-epipolar-line distance in ideal pixels for observed pairs (..., 2) -> (...)."""
    ideal_b = cam_b.undistort_pixels(uv_b)
    ideal_a = cam_a.undistort_pixels(uv_a)
    line_b = epipolar_lines(cam_a, cam_b, uv_a)
    line_a = epipolar_lines(cam_b, cam_a, uv_b)
    d_b = np.abs(np.sum(line_b[..., :2] * ideal_b, -1) + line_b[..., 2])
    d_a = np.abs(np.sum(line_a[..., :2] * ideal_a, -1) + line_a[..., 2])
    return 0.5 * (d_a + d_b)


@dataclass(frozen=True, eq=False)
class CameraRig:
    """Cameras looked up by name, in a fixed order that every (C, ...) array follows."""

    cameras: tuple[Camera, ...]

    def __post_init__(self) -> None:
        cams = tuple(self.cameras)
        names = [c.name for c in cams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique in a rig; repeated: {dupes}")
        if not cams:
            raise ValueError("a camera rig needs at least one camera")
        object.__setattr__(self, "cameras", cams)

    @classmethod
    def from_cameras(cls, cameras: Iterable[Camera], natural_order: bool = True) -> CameraRig:
        """A rig of ``cameras``, sorted by natural name order unless ``natural_order`` is False."""
        cams = list(cameras)
        if natural_order:
            cams.sort(key=lambda c: natural_key(c.name))
        return cls(tuple(cams))

    @property
    def names(self) -> tuple[str, ...]:
        """Camera names in rig order."""
        return tuple(c.name for c in self.cameras)

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self) -> Iterator[Camera]:
        return iter(self.cameras)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Camera:
        if not isinstance(name, str):
            raise TypeError(f"cameras are looked up by name, not {type(name).__name__}; use rig.cameras[i]")
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"camera {name!r} is not in the rig (cameras: {', '.join(self.names)})")

    def index(self, name: str) -> int:
        """Position of the named camera in the rig (KeyError naming the rig's cameras when absent)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"camera {name!r} is not in the rig (cameras: {', '.join(self.names)})") from None

    def subset(self, names: Sequence[str]) -> CameraRig:
        """A rig with the named cameras, in the order given."""
        return CameraRig(tuple(self[n] for n in names))

    def replace_camera(self, camera: Camera) -> CameraRig:
        """A rig with the camera of the same name replaced by ``camera`` (KeyError when absent)."""
        self.index(camera.name)
        return CameraRig(tuple(camera if c.name == camera.name else c for c in self.cameras))

    @property
    def centers(self) -> np.ndarray:
        """(C, 3) camera centres in world coordinates."""
        return np.stack([c.center for c in self.cameras])

    @property
    def projection_matrices(self) -> np.ndarray:
        """(C, 3, 4) ``K [R | t]`` per camera."""
        return np.stack([c.projection_matrix for c in self.cameras])

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixels in every camera (C, ..., 2), NaN where behind a camera."""
        return np.stack([c.project(points_world) for c in self.cameras])

    def undistort_points(self, uv: np.ndarray) -> np.ndarray:
        """Observed pixels (C, ..., 2) -> undistorted normalized coordinates (C, ..., 2)."""
        uv = np.asarray(uv, float)
        if uv.shape[0] != len(self):
            raise ValueError(f"uv must have the camera axis first with {len(self)} cameras, got shape {uv.shape}")
        return np.stack([c.undistort_points(u) for c, u in zip(self.cameras, uv, strict=True)])

    def transformed(self, rotation: np.ndarray, translation: np.ndarray, scale: float = 1.0) -> CameraRig:
        """The same rig in a new world frame where ``X_new = scale * rotation @ X_old + translation``."""
        rotation = np.asarray(rotation, float)
        translation = np.asarray(translation, float)
        cams = []
        for c in self.cameras:
            R_new = c.R @ rotation.T
            cams.append(c.replace(R=R_new, t=scale * c.t - R_new @ translation))
        return CameraRig(tuple(cams))


MAX_PADDING_PX = 16
"""The most pixels a video encoder adds to (or a decoder crops from) a frame's width or height: H.264 and
HEVC code frames in blocks of 16 (a 1080-pixel side is coded as 1088), at the right and bottom edges."""


def adapt_to_image_size(camera: Camera, size: tuple[int, int], where: str = "the video",
                        max_padding_px: int = MAX_PADDING_PX) -> tuple[Camera, str]:
    """``camera`` made to fit images of ``size`` (width, height), and a message saying what was done.

    - The same size: the camera unchanged and an empty message.
    - Sizes that differ by at most ``max_padding_px`` in width and/or height (encoder padding, which lies at
      the right and bottom edges): K kept (the pixels the two share are the same pixels), the size set.
    - A uniform scale (540x960 against 1080x1920), possibly with such padding left over (1088x1920 against
      540x960: 8 px of padding at the calibrated size, counted there): K scaled, for pixel centres at
      integers (OpenCV's convention): fx' = s fx, cx' = s (cx + 0.5) - 0.5, and the same for y. Distortion is
      unchanged (it acts on normalized coordinates).
    - Anything else (another aspect ratio or crop, portrait against landscape): ValueError naming the camera,
      both sizes, ``where`` (e.g. the video's path) and what to do.
    """
    w0, h0 = camera.size
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"camera {camera.name!r}: the image size of {where} must be positive, got {size}")
    if (w, h) == (w0, h0):
        return camera, ""
    # candidate scales: none, or the one that makes either side match exactly. Padding is counted in the
    # calibrated image's pixels (where the encoder added it, before any resize), and the candidate that
    # leaves the least wins (1088x1920 -> 540x960: 0.5 leaves 8 px, 540/1088 would leave 14.2)
    candidates = []
    for s in {1.0, w / w0, h / h0}:
        pad = max(abs(w / s - w0), abs(h / s - h0))
        if pad <= max_padding_px + 1e-9:
            candidates.append((pad if s != 1.0 else -1.0, s))
    if not candidates:
        turned = " (portrait against landscape: turned by 90 degrees)" if (w, h) == (h0, w0) else ""
        raise ValueError(
            f"camera {camera.name!r}: calibrated for {w0}x{h0} images but {where} is {w}x{h}{turned}; that is "
            f"neither encoder padding (at most {max_padding_px} px in width or height) nor a uniform scale of the "
            f"calibrated size, so the calibration does not fit these images. Calibrate this camera again from a "
            f"board recording at {w}x{h} in the same orientation (mocap calibrate), or record at {w0}x{h0}."
        )
    _, s = min(candidates)
    K = camera.K.copy()
    if s != 1.0:
        K[0, 0], K[1, 1], K[0, 1] = s * K[0, 0], s * K[1, 1], s * K[0, 1]
        K[0, 2], K[1, 2] = s * (K[0, 2] + 0.5) - 0.5, s * (K[1, 2] + 0.5) - 0.5
    adapted = camera.replace(K=K, size=(w, h))
    pad_w, pad_h = round(w - w0 * s), round(h - h0 * s)
    padding = " and ".join(f"{abs(p)} px {'more' if p > 0 else 'fewer'} {side}"
                           for p, side in ((pad_w, "columns"), (pad_h, "rows")) if p)
    if s == 1.0:
        what = f"{padding} taken as encoder padding at the right/bottom edge; K kept"
    else:
        what = f"scaled by {s:.6g} (K scaled)" + (f", then {padding} taken as encoder padding" if padding else "")
    return adapted, (f"camera {camera.name!r}: calibrated for {w0}x{h0} images, {where} is {w}x{h}: {what}; "
                     f"the calibration now describes {w}x{h} images")


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R (3, 3), t (3,)) for a camera at ``eye`` looking at ``target`` (OpenCV axes:
    x right, y down, z forward)."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: the viewing direction is parallel to 'up'; choose another up vector")
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye
