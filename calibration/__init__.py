"""Camera calibration: camera model, boards, intrinsics, extrinsics, bundle adjustment, world alignment,
and calibration file formats."""

from .camera import Camera, CameraRig, natural_key

__all__ = ["Camera", "CameraRig", "natural_key"]
