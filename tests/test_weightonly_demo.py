import numpy as np
import pytest

from qlearn import lm
from qlearn.weightonly import AWQQuant, load_demo, rtn


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_committed_demo_is_consistent(method):
    qm = load_demo(method)
    float_model = lm.load_model()
    assert sorted(qm.quants) == sorted(float_model.linear_names())
    for name, q in qm.quants.items():
        gq = q.quant if isinstance(q, AWQQuant) else q
        assert gq.bits == 3 and gq.group_size == 64
        assert gq.codes.min() >= 0 and gq.codes.max() <= 7
        np.testing.assert_array_equal(qm.model.params[name + ".weight"], q.dequantize(np.float32))
    # the non-linear parameters are the float model's
    np.testing.assert_array_equal(qm.model.params["tok_emb"], float_model.params["tok_emb"])


def test_demo_differs_from_rtn():
    qm = load_demo("gptq")
    w = lm.load_model().params["blocks.0.mlp.fc1.weight"]
    assert not np.array_equal(qm.quants["blocks.0.mlp.fc1"].codes, rtn(w, 3, 64).codes)


def test_bad_method():
    with pytest.raises(ValueError):
        load_demo("rtn")
