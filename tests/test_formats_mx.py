"""qlearn.formats.mx and nvfp4 against torchao's reference implementations (to_mx, nvfp4_quantize, NVFP4Tensor)."""

import numpy as np
import pytest
from oracles import require

from qlearn.formats import (
    E2M1,
    E4M3,
    MX_ELEMENTS,
    decode,
    emax,
    mx_bits_per_weight,
    mx_dequantize,
    mx_quantize,
    nvfp4_bits_per_weight,
    nvfp4_dequantize,
    nvfp4_quantize,
    pack,
)


def _torch_dtypes(torch):
    c = require("torchao.prototype.mx_formats.constants")
    return {
        "MXFP8_E4M3": torch.float8_e4m3fn,
        "MXFP8_E5M2": torch.float8_e5m2,
        "MXFP6_E3M2": c.DTYPE_FP6_E3M2,
        "MXFP6_E2M3": c.DTYPE_FP6_E2M3,
        "MXFP4": torch.float4_e2m1fn_x2,
    }


def _data(rng):
    x = (rng.standard_normal((32, 256)) * rng.choice([1e-30, 1e-3, 1.0, 1e3, 1e30], (32, 1))).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block
    x[1, :32] = 1e-40  # subnormal amax
    return x


@pytest.mark.parametrize("elem", list(MX_ELEMENTS))
def test_mx_equals_torchao_to_mx(elem, rng):
    torch = require("torch")
    mx = require("torchao.prototype.mx_formats.mx_tensor")
    x = _data(rng)
    scale, data = mx.to_mx(torch.from_numpy(x), _torch_dtypes(torch)[elem], 32)
    s, q = mx_quantize(x, elem)
    np.testing.assert_array_equal(s, scale.view(torch.uint8).numpy())
    np.testing.assert_array_equal(pack(q, 4) if elem == "MXFP4" else q, data.view(torch.uint8).numpy())
    assert s[0, 0] == 0  # E8M0 of an all-zero block: code 0 (2^-127), never NaN


def test_mx_golden_and_dequantize():
    x = np.linspace(-6.0, 6.0, 32, dtype=np.float32)
    s, q = mx_quantize(x, "MXFP4")
    assert s.tolist() == [127] and emax(E2M1) == 2 and emax(E4M3) == 8
    np.testing.assert_array_equal(mx_dequantize(s, q, "MXFP4"), decode(q, E2M1))
    s, q = mx_quantize(np.full(32, 0.3, np.float32), "MXFP8_E4M3")  # floor(log2 0.3) - 8 = -10
    assert s.tolist() == [117] and mx_dequantize(s, q, "MXFP8_E4M3")[0] == 0.3125
    assert (mx_bits_per_weight("MXFP4"), mx_bits_per_weight("MXFP6_E2M3")) == (4.25, 6.25)


def test_mx_nan_block_gets_nan_scale():
    x = np.ones((2, 32), np.float32)
    x[1, 4] = np.nan
    s, q = mx_quantize(x, "MXFP8_E4M3")
    assert s[:, 0].tolist() == [127 - 8, 255]
    xh = mx_dequantize(s, q, "MXFP8_E4M3")
    assert np.isnan(xh[1]).all() and (xh[0] == 1).all()


def test_nvfp4_equals_torchao(rng):
    torch = require("torch")
    nv = require("torchao.prototype.mx_formats.nvfp4_tensor")
    for x in (rng.standard_normal((16, 256)).astype(np.float32), rng.standard_t(3, (8, 128)).astype(np.float32) * 100):
        t = nv.per_tensor_amax_to_scale(torch.tensor(np.abs(x).max()))
        scale, data = nv.nvfp4_quantize(torch.from_numpy(x), 16, t)
        s, q, ts = nvfp4_quantize(x)
        assert np.float32(t.item()) == ts
        np.testing.assert_array_equal(s, scale.view(torch.uint8).numpy())
        np.testing.assert_array_equal(pack(q, 4), data.numpy())
        ref = nv.NVFP4Tensor.to_nvfp4(torch.from_numpy(x), per_tensor_scale=t).dequantize(torch.float32).numpy()
        np.testing.assert_array_equal(nvfp4_dequantize(s, q, ts), ref)
        scale1, data1 = nv.nvfp4_quantize(torch.from_numpy(x), 16, None)
        s1, q1, _ = nvfp4_quantize(x, two_level=False)
        np.testing.assert_array_equal(s1, scale1.view(torch.uint8).numpy())
        np.testing.assert_array_equal(pack(q1, 4), data1.numpy())


def test_nvfp4_golden_and_bits():
    s, q, t = nvfp4_quantize(np.linspace(-6.0, 6.0, 16, dtype=np.float32))
    assert decode(s, E4M3).tolist() == [448.0] and t == np.float32(6.0) / np.float32(2688.0)
    assert nvfp4_bits_per_weight() == 4.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mx_quantize(np.ones(30), "MXFP4"), "multiple of block_size"),
        (lambda: mx_quantize(np.ones(32), "MXINT8"), "elem must be one of"),
        (lambda: mx_dequantize(np.zeros(2, np.uint8), np.zeros(32, np.uint8)), "scales must have shape"),
        (lambda: nvfp4_quantize(np.ones(20)), "multiple of 16"),
        (lambda: nvfp4_quantize([np.nan] * 16), "finite"),
        (lambda: nvfp4_quantize(np.ones(16), tensor_scale=0.0), "positive"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
