"""Uncertainty of the box metrics: bootstrap intervals and paired tests from per-image results."""
