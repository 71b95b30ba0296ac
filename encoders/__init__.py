"""Encoders map images and texts into one L2-normalised space."""
