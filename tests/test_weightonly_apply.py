import numpy as np
import pytest

from qlearn.lm import LMConfig, Transformer
from qlearn.weightonly import AWQQuant, PackedWeight, gptq, hessian, layer_inputs, quantize_model, rtn

CFG = LMConfig(vocab_size=11, context=8, d_model=16, n_layers=2, n_heads=2, d_ff=32)


@pytest.fixture
def model():
    return Transformer.initialize(CFG, seed=3)


@pytest.fixture
def tokens(rng):
    return rng.integers(0, CFG.vocab_size, size=(6, 8))


def test_layer_inputs_match_capture(model, tokens):
    full = model.capture_inputs(tokens)
    for name in model.linear_names():
        np.testing.assert_array_equal(layer_inputs(model, tokens, name), full[name])


def test_rtn_model_is_rtn_of_each_weight(model):
    qm = quantize_model(model, "rtn", bits=4, group_size=8)
    for name in model.linear_names():
        expect = rtn(model.params[name + ".weight"], 4, 8).dequantize()
        np.testing.assert_array_equal(qm.model.params[name + ".weight"], expect)
    assert np.array_equal(model.params["tok_emb"], qm.model.params["tok_emb"])


def test_gptq_is_sequential(model, tokens):
    qm = quantize_model(model, "gptq", bits=3, group_size=8, tokens=tokens)
    names = model.linear_names()
    # the second layer is calibrated on what it sees after the first is quantized
    first = qm.quants[names[0]]
    partial = model.with_params({names[0] + ".weight": first.dequantize(np.float32)})
    x = layer_inputs(partial, tokens, names[1])
    expect = gptq(model.params[names[1] + ".weight"], hessian(x), 3, 8)
    assert np.array_equal(qm.quants[names[1]].codes, expect.codes)
    x_float = model.capture_inputs(tokens, [names[1]])[names[1]]
    assert not np.array_equal(x, x_float)


def test_awq_model_and_sizes(model, tokens):
    qm = quantize_model(model, "awq", bits=4, group_size=8, tokens=tokens, names=["blocks.0.mlp.fc1"])
    assert list(qm.quants) == ["blocks.0.mlp.fc1"]
    q = qm.quants["blocks.0.mlp.fc1"]
    assert isinstance(q, AWQQuant)
    w = model.params["blocks.0.mlp.fc1.weight"]
    others = 4 * (model.n_params - w.size)
    assert qm.nbytes == others + PackedWeight.from_quant(q.quant).nbytes + 2 * w.shape[1]


def test_model_not_modified(model, tokens):
    before = {k: v.copy() for k, v in model.params.items()}
    quantize_model(model, "gptq", bits=4, group_size=8, tokens=tokens)
    assert all(np.array_equal(before[k], v) for k, v in model.params.items())


def test_bad_input(model, tokens):
    with pytest.raises(ValueError):
        quantize_model(model, "hqq")
    with pytest.raises(ValueError):
        quantize_model(model, "gptq")
    with pytest.raises(ValueError):
        quantize_model(model, "rtn", names=["blocks.9.mlp.fc1"])
    with pytest.raises(ValueError):
        layer_inputs(model, tokens, "tok_emb")


def test_last_layer_sees_every_quantized_layer_before_it(model, tokens):
    qm = quantize_model(model, "gptq", bits=3, group_size=8, tokens=tokens)
    others = {n + ".weight": q.dequantize(np.float32) for n, q in qm.quants.items() if n != "head"}
    x = layer_inputs(model.with_params(others), tokens, "head")
    expect = gptq(model.params["head.weight"], hessian(x), 3, 8)
    assert np.array_equal(qm.quants["head"].codes, expect.codes)
