"""Export: skeletons, retargeting, and BVH / FBX / glTF / USD / mesh / biomechanics writers."""
