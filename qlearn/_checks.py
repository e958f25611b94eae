"""Input validation shared by the public functions.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind,
wrong value) with a sentence saying what was wrong, what is allowed and what was
received. Nothing here mutates its argument.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

MIN_BITS, MAX_BITS = 2, 16


def as_array(x: Any, name: str) -> NDArray[Any]:
    """``np.asarray(x)``, turning numpy's own errors (ragged lists, huge Python ints) into ours."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError, OverflowError) as err:
        raise ValueError(
            f"{name} must be a number or a rectangular array of numbers; got {type(x).__name__} ({err})"
        ) from None


def as_float_array(x: ArrayLike, name: str = "x", *, check_finite: bool = True) -> NDArray[np.floating]:
    """Return ``x`` as a non-empty real floating array (a view when possible).

    float16 is promoted to float32 and integers to float64, so arithmetic never
    overflows or loses the sign.
    """
    arr = as_array(x, name)
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind != "f":
        raise TypeError(f"{name} must hold real numbers (a float or integer dtype); got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} must contain at least one value; got an empty array of shape {arr.shape}")
    if check_finite:
        require_finite(arr, name)
    return arr


def require_finite(arr: NDArray[np.floating], name: str, *, whole: NDArray[np.floating] | None = None) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or ±inf (``whole`` is reported, if given)."""
    if np.isfinite(arr).all():
        return
    report = arr if whole is None else whole
    bad = ~np.isfinite(report)
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if report.ndim else ()
    raise ValueError(
        f"{name} must contain only finite numbers; got {int(bad.sum())} NaN or infinite "
        f"value(s), the first at index {first}"
    )


def as_float32(arr: NDArray[np.floating], name: str) -> NDArray[np.float32]:
    """``arr`` cast to float32, refusing values that overflow it (to ±inf) instead of warning."""
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    require_finite(out, f"{name} (as float32)")
    return out


def check_flag(value: Any, name: str) -> bool:
    """Return ``value`` as a bool, refusing anything but True/False (and numpy bools)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {value!r} of type {type(value).__name__}")
    return bool(value)


def as_int(value: Any, name: str) -> int:
    """Return ``value`` as a Python int, refusing bools, floats and strings."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type {type(value).__name__}")
    return int(value)


def check_bits(bits: Any, high: int = MAX_BITS) -> int:
    """Return ``bits`` as an int in [MIN_BITS, high] (``high`` at most MAX_BITS)."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise TypeError(f"bits must be an integer in [{MIN_BITS}, {high}]; got {bits!r} of type {type(bits).__name__}")
    value = int(bits)
    if not MIN_BITS <= value <= high:
        raise ValueError(f"bits must be an integer in [{MIN_BITS}, {high}]; got {value}")
    return value


def check_axis(axis: Any, ndim: int) -> int:
    """Return ``axis`` normalised to [0, ndim)."""
    value = as_int(axis, "axis")
    if not -ndim <= value < ndim:
        raise ValueError(f"axis must be in [{-ndim}, {ndim - 1}] for an array with {ndim} dimension(s); got {value}")
    return value % ndim
