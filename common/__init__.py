"""The shared floor every stage imports: atomic file writes, typed configs, rotations, the project cache and natural ordering."""
