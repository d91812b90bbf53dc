"""Input checks shared by the public API: clear ValueErrors naming the bad value, never a NaN."""
from __future__ import annotations

import numpy as np


def as_float_array(name: str, value, *, lo: float | None = None, hi: float | None = None,
                   lo_open: bool = False, hi_open: bool = False, allow_nan: bool = False) -> np.ndarray:
    """Return ``value`` as a float64 array, raising ``ValueError`` naming ``name`` and the first
    offending index when an element is non-finite or outside [lo, hi] (open ends on request).

    Examples
    --------
    >>> as_float_array("gamma_in", [0.5, 1.0], lo=0.0, hi=2.4)
    array([0.5, 1. ])
    """
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    bad = ~np.isfinite(arr)
    if allow_nan:
        bad &= ~np.isnan(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite; got {_describe(arr, bad)}")
    finite = np.isfinite(arr)
    if lo is not None:
        out = finite & ((arr <= lo) if lo_open else (arr < lo))
        if out.any():
            rel = ">" if lo_open else ">="
            raise ValueError(f"{name} must be {rel} {lo}; got {_describe(arr, out)}")
    if hi is not None:
        out = finite & ((arr >= hi) if hi_open else (arr > hi))
        if out.any():
            rel = "<" if hi_open else "<="
            raise ValueError(f"{name} must be {rel} {hi}; got {_describe(arr, out)}")
    return arr


def _describe(arr: np.ndarray, mask: np.ndarray) -> str:
    if arr.ndim == 0:
        return repr(float(arr))
    idx = np.argwhere(mask)[0]
    where = int(idx[0]) if len(idx) == 1 else tuple(int(i) for i in idx)
    return f"{float(arr[tuple(idx)])!r} at index {where} ({int(mask.sum())} bad value(s))"
