"""Scaling-law fits on training curves: numpy and scipy only (no torch, nothing of ours)."""
