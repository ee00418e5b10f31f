"""Compiled covariance operations used by `nt_gp.stax` layers.

All functions work on the batch-last layout of `nt_gp.kernel.Kernel`.
"""
