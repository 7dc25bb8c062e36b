"""The take viewer: an interactive 3D view of a finished take (``mocap view``) and the live preview (``mocap live``).

Front-end code on top of every stage (no stage imports it). The 3D view is served by viser, whose web client ships
built inside its Python wheel, so it runs with no internet access:

- :mod:`.skinned` reads the export stage's skinned, animated GLB and poses it (the same file the report's static
  3D scene plays in the browser);
- :mod:`.take` gathers what a take shows (cameras with their video frames, 3D keypoints with their per-joint
  error, the body mesh) from the session folder;
- :mod:`.app` draws it in viser with a timeline to scrub and play.
"""
