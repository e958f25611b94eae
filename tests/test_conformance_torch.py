"""qlearn against PyTorch: scales, zero points and codes must be identical, bit for bit.

torch and ``torch.ao.quantization`` come through ``oracles.require``: skipped on a machine
without them, a failure in CI (.ci/run installs the CPU build, torch==2.13.0), so the
tests cannot pass silently once PyTorch removes the deprecated eager-mode module.
"""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from oracles import require

import qlearn as ql

with warnings.catch_warnings():  # torch 2.13 warns that torch.ao.quantization will be removed
    warnings.simplefilter("ignore")
    try:
        torch = require("torch")
        ao = require("torch.ao.quantization")
    except pytest.skip.Exception as exc:  # a developer's machine: skip the module (CI fails inside require)
        pytest.skip(str(exc), allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")

# (torch dtype, torch qscheme, qlearn options) for the schemes PyTorch's observers offer
PER_TENSOR = [
    ("quint8", "per_tensor_affine", dict(symmetric=False)),
    ("qint8", "per_tensor_affine", dict(symmetric=False, signed=True)),
    ("qint8", "per_tensor_symmetric", dict(symmetric=True, half_range=True)),
    ("quint8", "per_tensor_symmetric", dict(symmetric=True, signed=False, half_range=True)),
]
PER_CHANNEL = [
    ("quint8", "per_channel_affine", dict(symmetric=False)),
    ("qint8", "per_channel_symmetric", dict(symmetric=True, half_range=True)),
]

tensors = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=16),
    elements=st.floats(-100, 100, width=32),
).filter(lambda a: np.ptp(a) > 0 and not np.all(a == a.reshape(-1)[0]))


def observe(observer, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = observer
        obs(torch.from_numpy(x))
        scale, zp = obs.calculate_qparams()
    return scale.numpy(), zp.numpy()


@pytest.mark.parametrize(("dtype", "qscheme", "opts"), PER_TENSOR)
@given(x=tensors)
def test_minmax_observer(dtype, qscheme, opts, x):
    scale, zp = observe(ao.MinMaxObserver(dtype=getattr(torch, dtype), qscheme=getattr(torch, qscheme)), x)
    qp = ql.choose_qparams(x, 8, **opts)
    assert qp.scale.item() == scale.item()
    assert int(qp.zero_point) == int(zp.item())


def test_narrow_int8_symmetric_observer(rng):
    x = rng.standard_normal((8, 8)).astype(np.float32)
    obs = ao.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-127, quant_max=127)
    scale, zp = observe(obs, x)
    qp = ql.choose_qparams(x, 8, symmetric=True, narrow=True)
    assert (qp.qmin, qp.qmax) == (-127, 127)
    assert qp.scale.item() == scale.item() and int(zp.item()) == 0


@pytest.mark.parametrize(("dtype", "qscheme", "opts"), PER_CHANNEL)
@given(x=tensors, data=st.data())
def test_per_channel_minmax_observer(dtype, qscheme, opts, x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    slices = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    assume(np.all(slices.min(axis=1) < slices.max(axis=1)))  # constant channels: see the test below
    obs = ao.PerChannelMinMaxObserver(ch_axis=axis, dtype=getattr(torch, dtype), qscheme=getattr(torch, qscheme))
    scale, zp = observe(obs, x)
    qp = ql.choose_qparams(x, 8, axis=axis, **opts)
    np.testing.assert_array_equal(qp.scale, scale.astype(np.float32))
    np.testing.assert_array_equal(qp.zero_point, zp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq = torch.quantize_per_channel(
            torch.from_numpy(x), torch.from_numpy(scale), torch.from_numpy(zp), axis, getattr(torch, dtype)
        )
    q = ql.quantize(x, qp, method="mul_add")  # quantize_per_channel rounds the product, then the sum
    np.testing.assert_array_equal(q, tq.int_repr().numpy())
    np.testing.assert_array_equal(ql.dequantize(q, qp), tq.dequantize().numpy())


@pytest.mark.parametrize(("dtype", "qscheme", "opts"), PER_TENSOR)
def test_quantize_per_tensor_codes_and_values(dtype, qscheme, opts, rng):
    # large enough to use the blocked path and to contain values where the rounding modes differ
    x = (rng.standard_normal(300_000) * 3).astype(np.float32)
    qp = ql.choose_qparams(x, 8, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq = torch.quantize_per_tensor(torch.from_numpy(x), qp.scale.item(), int(qp.zero_point), getattr(torch, dtype))
    q = ql.quantize(x, qp, method="fma")
    np.testing.assert_array_equal(q, tq.int_repr().numpy())
    assert q.dtype == tq.int_repr().numpy().dtype
    np.testing.assert_array_equal(ql.dequantize(q, qp), tq.dequantize().numpy())
    # the textbook rounding round(x / s) differs from PyTorch's fused multiply-add by at most one code
    diff = ql.quantize(x, qp).astype(int) - q.astype(int)
    assert np.abs(diff).max() <= 1


def test_quantize_per_channel_codes_large(rng):
    x = (rng.standard_normal((4, 200_000)) * 3).astype(np.float32)
    qp = ql.choose_qparams(x, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq = torch.quantize_per_channel(
            torch.from_numpy(x),
            torch.from_numpy(qp.scale.astype(np.float64)),
            torch.from_numpy(qp.zero_point.astype(np.int64)),
            0,
            torch.quint8,
        )
    np.testing.assert_array_equal(ql.quantize(x, qp, method="mul_add"), tq.int_repr().numpy())


@given(x=tensors, bits=st.integers(2, 8), symmetric=st.booleans())
def test_fake_quantize_per_tensor_affine(x, bits, symmetric):
    # torch's fake-quantize op takes any [quant_min, quant_max], so other bit widths are checked too
    qp = ql.choose_qparams(x, bits, symmetric)
    got = ql.fake_quantize(x, qp, method="mul")  # torch: rint(float32(x * float32(1/s))) + z
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.fake_quantize_per_tensor_affine(
            torch.from_numpy(x), qp.scale.item(), int(qp.zero_point), qp.qmin, qp.qmax
        ).numpy()
    np.testing.assert_array_equal(got, ref)  # also equal on 4M normals at 8 and 4 bits


def torch_fake_quantize(x, qp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.fake_quantize_per_tensor_affine(
            torch.from_numpy(x), qp.scale.item(), int(qp.zero_point), qp.qmin, qp.qmax
        ).numpy()


def near_ties(rng, scale, zp, n):
    """float32 values x with x * float32(1/scale) (+ zp) at, or a few ulps from, a half-integer."""
    inv = np.float32(1) / np.float32(scale)
    k = rng.integers(-140, 140, n) - zp
    x = ((k + 0.5) / np.float64(inv)).astype(np.float32)
    steps = rng.integers(-3, 4, n)
    for _ in range(3):  # walk up to 3 ulps either way
        x = np.where(steps > 0, np.nextafter(x, np.float32(np.inf)), x)
        x = np.where(steps < 0, np.nextafter(x, np.float32(-np.inf)), x)
        steps = steps - np.sign(steps)
    return x.astype(np.float32)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_fake_quantize_near_ties(rng, bits):
    for _ in range(20):
        scale = np.float32(rng.uniform(1e-3, 0.2))
        zp = int(rng.integers(0, 2**bits))
        qp = ql.QParams(scale=scale, zero_point=zp, qmin=0, qmax=2**bits - 1)
        x = near_ties(rng, scale, zp, 50_000)
        np.testing.assert_array_equal(ql.fake_quantize(x, qp, method="mul"), torch_fake_quantize(x, qp))


@given(
    x=hnp.arrays(np.float32, st.integers(1, 64), elements=st.floats(-50, 50, width=32)),
    scale=st.floats(float(np.float32(1e-3)), 1.0, width=32),
    zp=st.integers(0, 255),
)
def test_fake_quantize_any_scale(x, scale, zp):
    qp = ql.QParams(scale=scale, zero_point=zp, qmin=0, qmax=255)
    np.testing.assert_array_equal(ql.fake_quantize(x, qp, method="mul"), torch_fake_quantize(x, qp))


def test_quantize_per_tensor_fma_many_values_and_near_ties(rng):
    # tens of millions of values: random normals and constructed near-ties, over many scales
    total = 0
    for _ in range(12):
        scale = np.float32(rng.uniform(1e-3, 0.1))
        zp = int(rng.integers(0, 256))
        x = np.concatenate(
            [(rng.standard_normal(1_500_000) * 3).astype(np.float32), near_ties(rng, scale, zp, 1_000_000)]
        )
        qp = ql.QParams(scale=scale, zero_point=zp, qmin=0, qmax=255)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tq = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), zp, torch.quint8).int_repr().numpy()
        np.testing.assert_array_equal(ql.quantize(x, qp, method="fma"), tq)
        total += x.size
    assert total == 30_000_000


@pytest.mark.parametrize("k", [47, 48])
def test_quantize_per_tensor_on_double_rounding_traps(k):
    # the constructed values of tests/test_primitives.py: rounding to float64 first gives 130, torch 129
    x_int, inv_int = {47: (11506049, 6115711), 48: (8511266, 16535183)}[k]
    inv, x = np.float32(inv_int * 2.0**-24), np.float32(x_int * 2.0 ** -(k - 24))
    scale = np.float32(1) / inv
    scale = next(c for c in (scale, np.nextafter(scale, np.float32(1)), np.nextafter(scale, np.float32(0)))
                 if np.float32(1) / c == inv)  # fmt: skip
    xs = np.full(37, x, dtype=np.float32)  # vector body and scalar tail of the kernel
    qp = ql.QParams(scale=scale, zero_point=129, qmin=0, qmax=255)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq = torch.quantize_per_tensor(torch.from_numpy(xs), float(scale), 129, torch.quint8).int_repr().numpy()
    assert np.all(tq == 129)
    np.testing.assert_array_equal(ql.quantize(xs, qp, method="fma"), tq)
