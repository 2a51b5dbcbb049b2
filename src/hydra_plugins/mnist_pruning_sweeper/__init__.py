"""Hydra plugin of mnist-pruning: the `grid` sweeper (a union of cartesian grids)."""
