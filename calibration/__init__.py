"""Camera calibration: camera model, boards, intrinsics, extrinsics, bundle adjustment, world alignment,
and calibration file formats."""

from mocap_studio.calibration.camera import Camera, CameraRig

__all__ = ["Camera", "CameraRig"]
