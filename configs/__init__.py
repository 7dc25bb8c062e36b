"""Rigs, boards, skeleton formats, retarget maps and pipeline defaults, kept as data."""
