"""Scaling-law fits (``scaling.laws``: numpy/scipy only), sweeps, studies, reports and the CLI."""
