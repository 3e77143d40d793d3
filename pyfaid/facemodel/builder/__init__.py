"""Builds the default face model from the CC0 MakeHuman assets (on first use, then cached as one .npz)."""
