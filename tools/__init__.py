"""Asset builders run by hand: the pose landmarker bundle, the body model's landmark regressors and their training takes."""
