"""qlearn.rescue.weight_range: the MSE-optimal per-channel range against a brute-force reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qlearn import choose_qparams, fake_quantize
from qlearn.qparams import PerAxis
from qlearn.rescue import mse_weight_qparams


def channel_mse(w, s, qmin, qmax):
    return float(((w - s * np.clip(np.rint(w / s), qmin, qmax)) ** 2).sum())


@given(st.integers(0, 10_000), st.sampled_from([2, 3, 4, 8]))
def test_matches_slow_search_and_beats_min_max(seed, bits):
    rng = np.random.default_rng(seed)
    W = rng.standard_t(3, (30, 4))
    qp = mse_weight_qparams(W, bits, n_grid=50)
    assert qp.granularity == PerAxis(1) and np.all(qp.zero_point == 0)
    minmax = choose_qparams(W, bits=bits, symmetric=True, axis=1)
    for c in range(4):
        top, qmax = np.abs(W[:, c]).max(), 2 ** (bits - 1) - 1
        errs = [channel_mse(W[:, c], k / 50 * top / qmax, qp.qmin, qp.qmax) for k in range(1, 51)]
        best = min(errs)
        assert channel_mse(W[:, c], float(qp.scale[c]), qp.qmin, qp.qmax) <= best * (1 + 1e-5) + 1e-12
        assert best <= channel_mse(W[:, c], float(minmax.scale[c]), qp.qmin, qp.qmax) * (1 + 1e-5) + 1e-12
    assert ((W - fake_quantize(W, qp)) ** 2).sum() <= ((W - fake_quantize(W, minmax)) ** 2).sum() * (1 + 1e-5)


def test_errors():
    with pytest.raises(ValueError, match=r"shape \(in, out\)"):
        mse_weight_qparams(np.ones(3), 4)
    with pytest.raises(ValueError, match="n_grid"):
        mse_weight_qparams(np.ones((3, 2)), 4, n_grid=0)
    with pytest.raises(ValueError, match="bits"):
        mse_weight_qparams(np.ones((3, 2)), 1)
