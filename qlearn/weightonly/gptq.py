"""GPTQ: column-by-column rounding with the optimal-brain-surgeon correction of the columns left.

For a linear layer :math:`y = W x` and calibration inputs :math:`X` (N, in), the layer error of a
quantized weight is :math:`\\lVert X (W - \\hat W)^\\top \\rVert^2 = \\sum_i (w_i - \\hat w_i)^\\top
\\tfrac12 H (w_i - \\hat w_i)` with :math:`H = 2 X^\\top X`, one quadratic per row :math:`w_i`
sharing :math:`H`. Rounding input column :math:`q` moves every row by :math:`\\delta_q`; the
optimal-brain-surgeon update spreads it over the columns :math:`F` not yet quantized,

    w_F ← w_F − (w_q − ŵ_q) / [H_F⁻¹]_qq · [H_F⁻¹]_{q,F},

where :math:`H_F^{-1}` is the inverse Hessian restricted to the columns still free. The rows of the
upper Cholesky factor :math:`U` of :math:`H^{-1}` (:math:`U^\\top U = H^{-1}`) are exactly those
scaled rows, so one factorisation replaces every downdate of :math:`H^{-1}` (Frantar et al., 2023).
Updates to columns beyond the current block of ``block_size`` columns are batched into one matrix
product per block ("lazy batch updates").

Groups: a group's scale and zero point are fitted to the group's *current* (already corrected)
weights when the first of its columns is quantized. Without activation order the groups are met
in order; with it (columns sorted by decreasing :math:`H_{jj}`) the columns of a group are
scattered, and the group is still stored by its original columns, so checkpoints need no
reordering index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int, check_bits
from qlearn.qparams import qrange
from qlearn.weightonly.rtn import (
    GroupQuant,
    _check_group_size,
    _check_weight,
    _check_zero,
    _round_to_grid,
    group_params,
)


def hessian(x: ArrayLike) -> NDArray[np.floating[Any]]:
    """The GPTQ Hessian :math:`H = 2 X^\\top X` of a layer's calibration inputs.

    Parameters
    ----------
    x : array_like of float, shape (N, in) or (..., in)
        Inputs of the layer (leading axes are flattened into rows).

    Returns
    -------
    ndarray, shape (in, in)
        In ``x``'s float dtype (float64 for integer input).

    Raises
    ------
    TypeError, ValueError
        On non-numeric, empty or non-finite ``x``, or a scalar.

    Notes
    -----
    .. math:: H = 2 \\sum_t x_t x_t^\\top

    Examples
    --------
    >>> hessian([[1.0, 2.0], [0.0, 1.0]])
    array([[ 2.,  4.],
           [ 4., 10.]])
    """
    arr = as_float_array(x, "x")
    if arr.ndim == 0:
        raise ValueError("x must have at least one dimension (rows, in); got a scalar")
    rows = arr.reshape(-1, arr.shape[-1])  # (N, in)
    return 2 * (rows.T @ rows)


def inverse_cholesky_upper(h: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """Upper-triangular :math:`U` with :math:`U^\\top U = H^{-1}`, from one Cholesky factorisation.

    Parameters
    ----------
    h : ndarray, shape (n, n)
        Symmetric positive definite.

    Returns
    -------
    ndarray, shape (n, n)

    Raises
    ------
    ValueError
        If ``h`` is not square or not positive definite.

    Notes
    -----
    With :math:`P` the reversal permutation and :math:`P H P = L L^\\top`,
    :math:`H^{-1} = (P L^{-1} P)^\\top (P L^{-1} P)` and :math:`P L^{-1} P` is upper triangular.
    :math:`L^{-1}` is built by blocks, :math:`\\begin{pmatrix}A&0\\\\C&D\\end{pmatrix}^{-1} =
    \\begin{pmatrix}A^{-1}&0\\\\-D^{-1}CA^{-1}&D^{-1}\\end{pmatrix}`, so the work is matrix products.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.array([[4.0, 2.0], [2.0, 3.0]])
    >>> u = inverse_cholesky_upper(h)
    >>> bool(np.allclose(u.T @ u, np.linalg.inv(h))), bool(u[1, 0] == 0)
    (True, True)
    """
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"h must be a square matrix; got shape {h.shape}")
    try:
        lower = np.linalg.cholesky(h[::-1, ::-1])
    except np.linalg.LinAlgError:
        raise ValueError("h must be positive definite; increase percdamp or give more calibration rows") from None
    return _lower_inverse(lower)[::-1, ::-1].copy()


def _lower_inverse(lower: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    n = lower.shape[0]
    if n <= 256:
        inv: NDArray[np.floating[Any]] = np.linalg.inv(lower)
        return np.tril(inv)
    k = n // 2
    a_inv = _lower_inverse(lower[:k, :k])
    d_inv = _lower_inverse(lower[k:, k:])
    out = np.zeros_like(lower)
    out[:k, :k] = a_inv
    out[k:, k:] = d_inv
    out[k:, :k] = -(d_inv @ (lower[k:, :k] @ a_inv))
    return out


def gptq(
    w: ArrayLike,
    h: ArrayLike,
    bits: int = 4,
    group_size: int | None = 128,
    *,
    zero: str = "int",
    percdamp: float = 0.01,
    block_size: int = 128,
    act_order: bool = False,
) -> GroupQuant:
    """Quantize a weight matrix with GPTQ, given the Hessian of its layer's inputs.

    Parameters
    ----------
    w : array_like of float, shape (out, in)
        Weights, not modified. float64 input is processed in float64, anything else in float32.
    h : array_like of float, shape (in, in)
        :func:`hessian` of the calibration inputs (any positive multiple gives the same codes).
    bits : int, default 4
        Code width.
    group_size : int or None, default 128
        Columns per group; ``None`` for per-channel.
    zero : {"symmetric", "int", "float"}, default "int"
        Zero-point convention of :mod:`qlearn.weightonly.rtn`.
    percdamp : float, default 0.01
        Dampening: :math:`\\lambda = ` ``percdamp`` · mean diag(H) is added to the diagonal.
    block_size : int, default 128
        Columns per lazy batch (rounded to a multiple of ``group_size`` when smaller groups
        would straddle blocks); does not change the result, only the speed.
    act_order : bool, default False
        Quantize columns in order of decreasing :math:`H_{jj}`.

    Returns
    -------
    GroupQuant

    Raises
    ------
    TypeError, ValueError
        On shapes that do not match, non-finite input, a bad ``percdamp`` or ``block_size``, or a
        Hessian that is not positive definite after dampening.

    Notes
    -----
    Inputs with :math:`H_{jj} = 0` never reach the layer: their weights are set to 0 and
    :math:`H_{jj}` to 1 first. Then, with :math:`U^\\top U = (H + \\lambda I)^{-1}` upper
    triangular, column by column:

    .. math:: \\hat w_q = Q(w_q), \\quad e = (w_q - \\hat w_q) / U_{qq}, \\quad
              w_{j} \\mathrel{-}= e\\, U_{qj} \\ (j > q).

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.weightonly import rtn
    >>> rng = np.random.default_rng(0)
    >>> w, x = rng.standard_normal((16, 64)), rng.standard_normal((256, 64))
    >>> gq = gptq(w, np.eye(64), bits=4, group_size=32)   # H ∝ I: plain rounding
    >>> bool(np.array_equal(gq.codes, rtn(w, bits=4, group_size=32).codes))
    True
    >>> def err(g): return float(np.sum((x @ (w - g.dequantize(np.float64)).T) ** 2))
    >>> bool(err(gptq(w, hessian(x), 3, 32)) < err(rtn(w, 3, 32)))
    True
    """
    w_in = _check_weight(w)
    dtype = np.float64 if w_in.dtype == np.float64 else np.float32
    n_out, n = w_in.shape
    bits = check_bits(bits)
    gs = _check_group_size(group_size, n)
    kind = _check_zero(zero)
    h_in = as_float_array(h, "h")
    if h_in.shape != (n, n):
        raise ValueError(f"h must have shape ({n}, {n}) for a weight of shape {w_in.shape}; got {h_in.shape}")
    if isinstance(percdamp, bool) or not isinstance(percdamp, (int, float)) or not 0 <= percdamp < np.inf:
        raise ValueError(f"percdamp must be a non-negative finite number; got {percdamp!r}")
    bs = as_int(block_size, "block_size")
    if bs < 1:
        raise ValueError(f"block_size must be a positive integer; got {bs}")
    if not isinstance(act_order, (bool, np.bool_)):
        raise TypeError(f"act_order must be True or False; got {act_order!r}")
    if gs < n and not act_order:
        bs = max(bs // gs, 1) * gs  # blocks aligned to groups: a group never straddles two blocks
    qmin, qmax = qrange(bits, kind == "symmetric")

    wk: NDArray[np.floating[Any]] = w_in.astype(
        dtype, copy=True
    )  # (out, in), corrected in place as columns are quantized
    hk: NDArray[np.floating[Any]] = h_in.astype(dtype, copy=True)  # (in, in)
    diag = np.diagonal(hk)
    dead = diag == 0
    hk[dead, dead] = 1
    wk[:, dead] = 0
    perm = np.argsort(-np.diagonal(hk), kind="stable") if act_order else np.arange(n)
    inv_perm = np.argsort(perm)
    wk = wk[:, perm]  # columns in processing order
    hk = hk[np.ix_(perm, perm)]
    hk[np.diag_indices(n)] += dtype(percdamp * np.mean(np.diagonal(hk)))
    u = inverse_cholesky_upper(hk)  # (in, in), upper

    n_groups = n // gs
    scale = np.zeros((n_out, n_groups), dtype=np.float32)
    zp = np.zeros((n_out, n_groups), dtype=np.float32)
    fitted = np.zeros(n_groups, dtype=bool)
    codes = np.zeros((n_out, n), dtype=dtype)  # processing order
    for i1 in range(0, n, bs):
        i2 = min(i1 + bs, n)
        w1 = wk[:, i1:i2].copy()  # (out, B): this block, kept current
        u1 = u[i1:i2, i1:i2]
        err1 = np.zeros_like(w1)  # (out, B): scaled errors, for the lazy update
        for j in range(i2 - i1):
            g = int(perm[i1 + j]) // gs
            if not fitted[g]:
                pos = inv_perm[g * gs : (g + 1) * gs]  # processing positions of the group's columns
                cur = np.empty((n_out, gs), dtype=dtype)  # (out, gs): their current values
                inside = pos < i2
                cur[:, inside] = w1[:, pos[inside] - i1]
                later = pos[~inside]
                cur[:, ~inside] = wk[:, later] - err1[:, :j] @ u[i1 : i1 + j, later]
                s_g, z_g = group_params(cur, bits, None, zero=kind)
                scale[:, g], zp[:, g], fitted[g] = s_g[:, 0], z_g[:, 0], True
            q, wq = _round_to_grid(w1[:, j], scale[:, g], zp[:, g], qmin, qmax)
            codes[:, i1 + j] = q
            e = (w1[:, j] - wq) / u1[j, j]  # (out,)
            w1[:, j + 1 :] -= np.outer(e, u1[j, j + 1 :])
            err1[:, j] = e
        wk[:, i2:] -= err1 @ u[i1:i2, i2:]
    out_dtype = np.int8 if kind == "symmetric" and bits <= 8 else np.uint8 if bits <= 8 else np.int32
    return GroupQuant(codes[:, inv_perm].astype(out_dtype), scale, zp, bits, gs, kind)


__all__ = ["gptq", "hessian", "inverse_cholesky_upper"]
