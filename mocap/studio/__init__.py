"""The virtual studio: a synthetic capture rig that renders a performer with known truth.

It sits on top of the stages (it uses the camera model, boards, the body model and the BVH reader); no stage
imports it. See :mod:`.studio` for the folders it writes.
"""

from mocap_studio.studio.performer import EXERCISES, Performance, PerformerError, exercise_motion, load_bvh_motion, perform
from mocap_studio.studio.rigs import StudioCamera, StudioRig, load_rig_preset, rig_presets
from mocap_studio.studio.studio import StudioConfig, StudioError, Take, synthesize

__all__ = [
    "EXERCISES", "Performance", "PerformerError", "exercise_motion", "load_bvh_motion", "perform",
    "StudioCamera", "StudioRig", "load_rig_preset", "rig_presets",
    "StudioConfig", "StudioError", "Take", "synthesize",
]
