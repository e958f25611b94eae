"""Hand fixed quantization parameters to :func:`qlearn.ptq.convert` (for QAT, AdaRound, mixed precision)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qlearn.nn import MLP, Linear
from qlearn.observers import _Observer
from qlearn.ptq import PreparedModel
from qlearn.qparams import PerAxis, QParams

__all__ = ["FixedObserver", "prepared_from_qparams"]


class FixedObserver(_Observer):
    """An observer whose answer is fixed in advance: ``compute_qparams`` returns ``qparams``.

    Parameters
    ----------
    qparams : QParams
        Per tensor, or per axis 1 for weights of shape (in, out).

    Raises
    ------
    TypeError
        If ``qparams`` is not a QParams.

    Notes
    -----
    ``observe`` only counts batches; the range is :math:`[s(q_{min} - z), s(q_{max} - z)]`.
    ``symmetric`` is true when every zero point is 0.

    Examples
    --------
    >>> from qlearn.qparams import QParams
    >>> obs = FixedObserver(QParams(scale=0.5, zero_point=0, qmin=-2, qmax=1))
    >>> obs.bits, obs.symmetric, obs.compute_range()
    (2, True, (-1.0, 0.5))
    """

    def __init__(self, qparams: QParams) -> None:
        if not isinstance(qparams, QParams):
            raise TypeError(f"qparams must be a QParams; got {type(qparams).__name__}")
        super().__init__(qparams.bits, bool(np.all(qparams.zero_point == 0)), signed=qparams.signed)
        self.qparams = qparams
        self.axis = qparams.granularity.axis if isinstance(qparams.granularity, PerAxis) else None
        self.n_batches_ = 1  # nothing to learn from data

    def _update(self, x: Any) -> None:
        pass

    def _range(self) -> tuple[Any, Any]:
        s, z = self.qparams.scale.astype(np.float64), self.qparams.zero_point.astype(np.float64)
        lo, hi = s * (self.qparams.qmin - z), s * (self.qparams.qmax - z)
        return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)

    def compute_qparams(self) -> QParams:
        """``qparams``, unchanged."""
        return self.qparams


def prepared_from_qparams(
    model: MLP, weight_qparams: Sequence[QParams], activation_qparams: Sequence[QParams]
) -> PreparedModel:
    """A :class:`qlearn.ptq.PreparedModel` whose observers return the given QParams.

    Parameters
    ----------
    model : MLP
        Linear and ReLU layers (fold batch norm first).
    weight_qparams : sequence of QParams
        One per Linear layer, zero point 0.
    activation_qparams : sequence of QParams
        The input, then the (post-ReLU) output of every Linear layer.

    Returns
    -------
    PreparedModel
        Ready for :func:`qlearn.ptq.convert` without calibration.

    Raises
    ------
    TypeError, ValueError
        On a model with other layers or the wrong number of QParams.

    Notes
    -----
    The integer model then quantizes each :math:`W` with its given
    :math:`s_w`: :math:`q_w = \\operatorname{round}(W / s_w)`.

    Examples
    --------
    >>> from qlearn.nn import MLP
    >>> from qlearn.ptq import convert
    >>> from qlearn.qparams import QParams
    >>> w = QParams(scale=0.1, zero_point=0, qmin=-8, qmax=7)
    >>> a = QParams(scale=0.1, zero_point=8, qmin=0, qmax=15)
    >>> q = convert(prepared_from_qparams(MLP([4, 3, 2]), [w, w], [a, a, a]))
    >>> q.weight_qparams[0] == w
    True
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a qlearn.nn.MLP; got {type(model).__name__}")
    n = sum(isinstance(layer, Linear) for layer in model.layers)
    if len(weight_qparams) != n or len(activation_qparams) != n + 1:
        raise ValueError(
            f"a model with {n} Linear layers needs {n} weight QParams and {n + 1} activation QParams; "
            f"got {len(weight_qparams)} and {len(activation_qparams)}"
        )
    for qp in weight_qparams:
        if not isinstance(qp, QParams) or np.any(qp.zero_point != 0):
            raise ValueError("every weight QParams must be a QParams with zero point 0 (symmetric)")
    return PreparedModel(
        model, [FixedObserver(qp) for qp in weight_qparams], [FixedObserver(qp) for qp in activation_qparams]
    )
