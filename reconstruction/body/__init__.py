"""Body models (Anny, SMPL family) behind one protocol, their skinning and keypoint regressors, fitting to 3D
keypoints, and body measurements."""
