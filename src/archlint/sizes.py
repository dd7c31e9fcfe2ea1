"""Byte counts as people read them."""

from __future__ import annotations


def gb(n: float) -> str:
    """``12.3 GB`` (decimal units, as model cards and GPU specs count them)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB"
