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


def axis_range(start: float, stop: float, step: float, *, name: str = "axis") -> np.ndarray:
    """The grid ``start, start + step, ...`` up to ``stop`` inclusive (the one meaning of an axis
    spec ``name:start:stop:step`` everywhere in sl_cy); ValueError naming ``name`` otherwise.

    Examples
    --------
    >>> axis_range(12.0, 13.0, 0.25).tolist()
    [12.0, 12.25, 12.5, 12.75, 13.0]
    """
    start, stop, step = (float(v) for v in (start, stop, step))
    if not (np.isfinite(start) and np.isfinite(stop) and np.isfinite(step)) or not step > 0 or stop < start:
        raise ValueError(f"{name}: need finite values, step > 0 and stop >= start, got {start}:{stop}:{step}")
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(n), 12)


def parse_axis_specs(spec: str, names, *, allow_fixed: bool = False) -> dict:
    """Parse comma-separated ``name:start:stop:step`` axes (and ``name=value`` items when
    ``allow_fixed``) into {name: array or float}; ValueError naming the bad item.

    Examples
    --------
    >>> {k: getattr(v, "tolist", lambda: v)() for k, v in parse_axis_specs("mu_h:12:14:1,a=2", ["mu_h", "a"],
    ...                                                                        allow_fixed=True).items()}
    {'mu_h': [12.0, 13.0, 14.0], 'a': 2.0}
    """
    out: dict = {}
    form = "name:start:stop:step" + (" or name=value" if allow_fixed else "")
    for item in filter(None, (s.strip() for s in str(spec).split(","))):
        if allow_fixed and "=" in item:
            name, val = (s.strip() for s in item.split("=", 1))
            nums = [val]
        else:
            parts = [s.strip() for s in item.split(":")]
            if len(parts) != 4:
                raise ValueError(f"axis {item!r}: expected {form}")
            name, nums = parts[0], parts[1:]
        if name not in names:
            raise ValueError(f"unknown axis {name!r} in {item!r}; names are {', '.join(names)}")
        if name in out:
            raise ValueError(f"axis {name!r} given twice")
        vals = []
        for v in nums:
            try:
                vals.append(float(v))
            except ValueError:
                raise ValueError(f"axis {item!r}: {v!r} is not a number") from None
        out[name] = vals[0] if len(vals) == 1 else axis_range(*vals, name=f"axis {item!r}")
    if not out:
        raise ValueError(f"no axes given (expected {form})")
    return out
