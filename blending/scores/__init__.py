"""Automatic scores of blends: :mod:`~blending.scores.clip` (how much of each prompt a blend shows)."""
