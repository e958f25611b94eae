"""qlearn.rescue.export: fixed QParams reach ptq.convert unchanged."""

from functools import partial

import numpy as np
import pytest

from qlearn import ptq
from qlearn.nn import MLP
from qlearn.observers import MinMaxObserver
from qlearn.qparams import PerAxis, QParams
from qlearn.rescue import FixedObserver, prepared_from_qparams


def test_convert_with_fixed_qparams_equals_convert_with_observers(rng):
    model = MLP([6, 5, 3], seed=0)
    x = rng.random((40, 6)).astype(np.float32)
    w_obs = partial(MinMaxObserver, bits=4, symmetric=True, axis=1)
    prepared = ptq.calibrate(ptq.prepare(model, w_obs, partial(MinMaxObserver, bits=4)), [x])
    reference = ptq.convert(prepared)
    w = [o.compute_qparams() for o in prepared.weight_observers]
    a = [o.compute_qparams() for o in prepared.activation_observers]
    fixed = ptq.convert(prepared_from_qparams(model, w, a))
    assert fixed.weight_qparams == reference.weight_qparams
    assert fixed.activation_qparams == reference.activation_qparams
    np.testing.assert_array_equal(fixed.forward_codes(x), reference.forward_codes(x))


def test_fixed_observer_reports_its_qparams():
    qp = QParams(scale=[0.5, 0.25], zero_point=[0, 0], qmin=-8, qmax=7, granularity=PerAxis(1))
    obs = FixedObserver(qp)
    assert obs.compute_qparams() is qp and obs.symmetric and obs.bits == 4 and obs.axis == 1
    lo, hi = obs.compute_range()
    np.testing.assert_allclose(lo, [-4.0, -2.0])
    np.testing.assert_allclose(hi, [3.5, 1.75])
    assert FixedObserver(QParams(scale=0.1, zero_point=3, qmin=0, qmax=15)).symmetric is False


def test_errors():
    qp = QParams(scale=0.1, zero_point=0, qmin=-8, qmax=7)
    with pytest.raises(TypeError, match="QParams"):
        FixedObserver(0.1)
    with pytest.raises(ValueError, match="needs 2 weight QParams and 3"):
        prepared_from_qparams(MLP([4, 3, 2]), [qp], [qp])
    with pytest.raises(ValueError, match="zero point 0"):
        asym = QParams(scale=0.1, zero_point=3, qmin=0, qmax=15)
        prepared_from_qparams(MLP([4, 3, 2]), [asym, qp], [qp, qp, qp])
