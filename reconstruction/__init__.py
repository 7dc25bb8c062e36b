"""Reconstruction: 2D keypoints, triangulation, filtering, body models, fitting, measurements."""
