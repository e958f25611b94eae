"""qlearn.observers against slow, obvious references written here."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from oracles import require

import qlearn as ql
from qlearn.observers import (
    CrossEntropyObserver,
    EntropyObserver,
    Histogram,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
)

ALL = [
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PercentileObserver,
    MSEObserver,
    EntropyObserver,
    CrossEntropyObserver,
]


def batches(x, n):
    return np.array_split(x, n)


# --- min-max ------------------------------------------------------------------------------------
def test_minmax_equals_choose_qparams(rng):
    x = rng.standard_normal((64, 8)).astype(np.float32)
    o = MinMaxObserver(bits=6, symmetric=True)
    for b in batches(x, 5):
        o.observe(b)
    assert o.compute_range() == (float(x.min()), float(x.max()))
    assert o.compute_qparams() == ql.choose_qparams(x, 6, True)


def test_minmax_per_channel(rng):
    x = rng.standard_normal((40, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
    o = MinMaxObserver(axis=1)
    for b in batches(x, 4):
        o.observe(b)
    assert o.compute_qparams() == ql.choose_qparams(x, axis=1)
    with pytest.raises(ValueError, match="every batch must have 6 channels along axis 1; got 5"):
        o.observe(np.ones((2, 5)))


def test_moving_average_reference(rng):
    xs = [rng.standard_normal(100) * (1 + i) for i in range(6)]
    o = MovingAverageMinMaxObserver(averaging_constant=0.3)
    lo, hi = xs[0].min(), xs[0].max()
    for i, b in enumerate(xs):
        o.observe(b)
        if i:
            lo, hi = lo + 0.3 * (b.min() - lo), hi + 0.3 * (b.max() - hi)
    assert o.compute_range() == pytest.approx((lo, hi))


# --- the histogram ------------------------------------------------------------------------------
@pytest.mark.parametrize("two_sided", [False, True])
def test_histogram_regrows_exactly(rng, two_sided):
    # batches of growing magnitude force several merges; the result must equal a one-pass
    # histogram of all the data over the final edges
    data = [rng.standard_normal(5000) * s for s in (1.0, 3.0, 2.0, 10.0, 50.0)]
    if not two_sided:
        data = [np.abs(d) for d in data]
    h = Histogram(bins=64, two_sided=two_sided)
    for d in data:
        h.add(d)
    every = np.concatenate(data)
    edges = h.edges
    assert edges[0] <= every.min() and every.max() <= edges[-1] + 1e-9
    idx = np.clip(np.floor(every / h.width_).astype(int) + h.offset, 0, h.bins - 1)
    np.testing.assert_array_equal(h.counts_, np.bincount(idx, minlength=h.bins))
    assert h.total_ == every.size


def test_histogram_all_zeros_then_data():
    h = Histogram(bins=8).add(np.zeros(5)).add(np.array([0.0, 4.0]))
    assert h.counts_[0] == 6 and h.counts_[-1] == 1 and h.width_ == 0.5


# --- percentile ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("symmetric", "convention"), [(False, "onnxruntime"), (False, "each_tail"), (True, "each_tail")]
)
def test_percentile_close_to_numpy(rng, symmetric, convention):
    x = rng.laplace(size=200_000)
    o = PercentileObserver(percentile=99.9, symmetric=symmetric, convention=convention)
    for b in batches(x, 8):
        o.observe(b)
    lo, hi = o.compute_range()
    width = o.histogram_.width_
    if symmetric:
        assert hi == pytest.approx(np.percentile(np.abs(x), 99.9), abs=width) and lo == -hi
    else:
        cut = 0.05 if convention == "onnxruntime" else 0.1  # percent cut off each side
        # ONNX Runtime's rule reads the lower edge of a bin (up to one width off) and counts the
        # order statistic one further than np.percentile's interpolation: two widths
        tol = 2 * width if convention == "onnxruntime" else width
        assert lo == pytest.approx(np.percentile(x, cut), abs=tol)
        assert hi == pytest.approx(np.percentile(x, 100 - cut), abs=tol)


def test_percentile_barely_depends_on_batch_order(rng):
    x = rng.standard_t(3, 400_000)
    order = np.argsort(np.abs(x))  # smallest magnitudes first: the range grows batch after batch
    a = PercentileObserver(symmetric=True)
    b = PercentileObserver(symmetric=True).observe(x)
    for chunk in batches(x[order], 16):
        a.observe(chunk)
    assert a.compute_range()[1] == pytest.approx(b.compute_range()[1], rel=0.02)


# --- MSE ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("symmetric", "bits"), [(True, 4), (False, 4), (True, 8)])
def test_mse_choice_is_near_the_true_optimum(rng, symmetric, bits):
    x = rng.laplace(size=50_000)
    o = MSEObserver(bits=bits, symmetric=symmetric, n_candidates=50).observe(x)
    lo, hi = o.candidates()
    # the slow, obvious reference: quantize the raw data with every candidate
    true = [
        ql.mse(x, ql.fake_quantize(x, ql.qparams_from_range(a, b, bits, symmetric)))
        for a, b in zip(lo, hi, strict=True)
    ]
    chosen = ql.qparams_from_range(*o.compute_range(), bits, symmetric)
    assert ql.mse(x, ql.fake_quantize(x, chosen)) <= 1.03 * min(true)


# --- entropy (TensorRT procedure) --------------------------------------------------------------
def reference_kl_threshold(hist, width, levels):
    """The documented procedure, one candidate at a time, with plain loops."""
    h = hist.astype(float).copy()
    h[0] = h[1]
    best, best_i = math.inf, None
    for i in range(levels, len(h) + 1):
        p = list(h[:i])
        p[-1] += h[i:].sum()
        q = [0.0] * i
        for g in range(levels):
            members = [j for j in range(i) if (j * levels) // i == g]
            nonzero = [j for j in members if h[j] > 0]
            for j in nonzero:
                q[j] = sum(h[m] for m in members) / len(nonzero)
        sp, sq = sum(p), sum(q)
        kl = 0.0
        for pj, qj in zip(p, q, strict=True):
            if pj > 0:
                kl = math.inf if qj == 0 else kl + pj / sp * math.log((pj / sp) / (qj / sq))
        if kl <= best:  # the last minimum wins
            best, best_i = kl, i
    return best_i * width


@pytest.mark.parametrize("kind", ["normal", "t3", "relu"])
def test_entropy_matches_reference(rng, kind):
    x = {"normal": rng.standard_normal(20_000), "t3": rng.standard_t(3, 20_000),
         "relu": np.maximum(rng.standard_normal(20_000), 0)}[kind]  # fmt: skip
    o = EntropyObserver(bits=5, bins=128).observe(x)  # 16 levels, 128 bins: small enough for loops
    # the reference histogram: 128 bins over [0, max|x|], the top value in the last bin
    amax = np.abs(x).max()
    hist = np.bincount(np.minimum(np.floor(np.abs(x) / (amax / 128)).astype(int), 127), minlength=128)
    np.testing.assert_array_equal(o.histogram_.resample(128, amax), hist)
    expected = reference_kl_threshold(hist, amax / 128, 16)
    assert o.compute_range() == pytest.approx((-expected, expected))


def test_entropy_unsigned_and_batches(rng):
    x = np.abs(rng.standard_t(3, 400_000))
    one = EntropyObserver(signed=False).observe(x)
    assert one.compute_range()[0] == 0.0 and one.compute_qparams().zero_point == 0
    many = EntropyObserver(signed=False)
    for b in batches(x, 8):
        many.observe(b)
    # the KL objective is flat on heavy tails, where bins hold single counts: a few percent apart
    assert many.compute_range()[1] == pytest.approx(one.compute_range()[1], rel=0.05)
    x = rng.standard_normal(400_000)
    many = EntropyObserver()
    for b in batches(x, 8):
        many.observe(b)
    assert many.compute_range()[1] == pytest.approx(EntropyObserver().observe(x).compute_range()[1], rel=0.01)
    with pytest.raises(ValueError, match="non-negative data"):
        EntropyObserver(signed=False).observe([-1.0, 2.0])


# --- cross-entropy ------------------------------------------------------------------------------
def test_cross_entropy_choice_is_the_minimum(rng):
    logits = rng.normal(scale=4.0, size=(300, 10))
    o = CrossEntropyObserver(bits=3, n_candidates=40).observe(logits[:150]).observe(logits[150:])
    lo, hi, ce = o.cross_entropies()

    def reference(a, b):
        z = ql.fake_quantize(logits, ql.qparams_from_range(a, b, 3))
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        log_q = z - z.max(1, keepdims=True)
        log_q -= np.log(np.exp(log_q).sum(1, keepdims=True))
        return -(p * log_q).sum(1).mean()

    np.testing.assert_allclose(ce, [reference(a, b) for a, b in zip(lo, hi, strict=True)], rtol=1e-9)
    assert o.compute_range() == (lo[np.argmin(ce)], hi[np.argmin(ce)])


# --- common contract ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_compute_before_observe_raises(cls):
    with pytest.raises(RuntimeError, match="call observe"):
        cls().compute_range()
    with pytest.raises(RuntimeError, match="call observe"):
        cls().compute_qparams()
    for search in ("candidates", "divergences", "cross_entropies"):
        if hasattr(cls, search):
            with pytest.raises(RuntimeError, match=f"before {search}"):
                getattr(cls(), search)()


@pytest.mark.parametrize("cls", ALL)
def test_bad_batches_raise_and_inputs_are_not_mutated(cls, rng):
    with pytest.raises(ValueError, match="finite"):
        cls().observe(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="empty"):
        cls().observe(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="real numbers"):
        cls().observe(np.array([["a"]]))
    x = np.abs(rng.standard_normal((32, 4)))
    before = x.copy()
    o = cls().observe(x)
    assert o.observe(x) is o
    qp = o.compute_qparams()
    assert isinstance(qp, ql.QParams)
    np.testing.assert_array_equal(x, before)


def test_bad_settings():
    with pytest.raises(ValueError, match="averaging_constant must be in"):
        MovingAverageMinMaxObserver(averaging_constant=0.0)
    with pytest.raises(ValueError, match="percentile must be in"):
        PercentileObserver(percentile=120)
    with pytest.raises(ValueError, match="bits must be"):
        EntropyObserver(bits=1)
    with pytest.raises(ValueError, match="at least the number of levels"):
        EntropyObserver(bits=8, bins=64)
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        Histogram(bins=3, two_sided=True)


# --- issue 9: ONNX Runtime's conventions, edge cases of the histogram ---------------------------
def ort_collect(method, symmetric, num_bins, num_quantized_bins, percentile, batches_):
    import contextlib
    import io

    calibrate = require("onnxruntime.quantization.calibrate")
    c = calibrate.HistogramCollector(method, symmetric, num_bins, num_quantized_bins, percentile, "same")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        for b in batches_:
            c.collect({"x": b})
        result = c.compute_collection_result()["x"]
    return float(result[0]), float(result[1])


@pytest.mark.parametrize("kind", ["normal", "laplace", "relu"])
@pytest.mark.parametrize("percentile", [99.99, 99.9, 99.0, 90.0])
def test_percentile_equals_onnxruntime(rng, kind, percentile):
    x = {"normal": rng.standard_normal(100_000), "laplace": rng.laplace(size=100_000),
         "relu": np.maximum(rng.standard_normal(100_000), 0)}[kind].astype(np.float32)  # fmt: skip
    ort_lo, ort_hi = ort_collect("percentile", False, 2048, 128, percentile, [x])
    o = PercentileObserver(percentile).observe(x)
    lo, hi = o.compute_range()
    # the same 2048 bins over [-max|x|, max|x|] and the same rule: equal up to float32 edges
    amax = float(np.abs(x).max())
    assert lo == pytest.approx(ort_lo, abs=1e-6 * amax) and hi == pytest.approx(ort_hi, abs=1e-6 * amax)
    # the other convention cuts twice as much off each side: clearly another range on bell-shaped data
    each = PercentileObserver(percentile, convention="each_tail").observe(x).compute_range()
    if kind != "relu":
        assert each[1] < hi - 3 * o.histogram_.width_


@pytest.mark.parametrize("percentile", [99.99, 99.0])
def test_symmetric_percentile_near_onnxruntime(rng, percentile):
    x = rng.standard_t(4, 100_000).astype(np.float32)
    _, ort_hi = ort_collect("percentile", True, 2048, 128, percentile, [x])
    o = PercentileObserver(percentile, symmetric=True).observe(x)
    # ONNX Runtime's |x| histogram spans [min|x|, max|x|] and reads a bin edge: one bin apart at most
    assert o.compute_range()[1] == pytest.approx(ort_hi, abs=o.histogram_.width_ * 1.01)


def test_onnxruntime_default_entropy_is_min_max(rng):
    calibrate = require("onnxruntime.quantization.calibrate")
    import inspect

    defaults = inspect.signature(calibrate.EntropyCalibrater.__init__).parameters
    num_bins, num_quantized = defaults["num_bins"].default, defaults["num_quantized_bins"].default
    assert (num_bins, num_quantized) == (128, 128)
    for x in (rng.standard_normal(50_000), rng.standard_t(3, 50_000), np.maximum(rng.standard_normal(50_000), 0)):
        x = x.astype(np.float32)
        lo, hi = ort_collect("entropy", True, num_bins, num_quantized, 99.99, [x])
        # one candidate only, the full histogram, clamped to [min, max]: the min-max range
        assert (lo, hi) == MinMaxObserver().observe(x).compute_range()


def test_percentile_constant_data_and_bad_percentiles():
    for c in (3.0, -2.0, 0.0):
        for sym in (False, True):
            for conv in ("onnxruntime", "each_tail"):
                o = PercentileObserver(99.0, symmetric=sym, convention=conv).observe(np.full(1000, c))
                lo, hi = o.compute_range()
                assert lo <= hi
                if not sym:
                    assert (lo, hi) == (c, c)
                assert isinstance(o.compute_qparams(), ql.QParams)
    for bad in (50.0, 10.0, 0.0):
        with pytest.raises(ValueError, match=r"percentile must be in \(50, 100\]"):
            PercentileObserver(bad, convention="each_tail")
    PercentileObserver(10.0)  # ONNX Runtime's convention cuts 45 % off each side: a valid range
    for bad in (0.0, -1.0, 100.5, float("nan")):
        with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
            PercentileObserver(bad)
    with pytest.raises(ValueError, match="convention must be one of"):
        PercentileObserver(99.0, convention="tensorrt")
    with pytest.raises(TypeError, match="percentile must be a number"):
        PercentileObserver("99")


@pytest.mark.parametrize("cls", [PercentileObserver, MSEObserver, EntropyObserver])
@pytest.mark.parametrize(
    ("tiny", "huge"), [(1e-30, 1e30), (1e-40, 1e38), (1e-45, 1e37), (1e-300, 1e300), (5e-324, 1e308)]
)
def test_histogram_observers_survive_a_huge_range_jump(cls, tiny, huge):
    o = cls().observe(np.array([tiny, -tiny, 0.0])).observe(np.array([huge, -huge / 2, 1.0]))
    h = o.histogram_
    assert h.total_ == 6 and h.counts_.sum() == 6
    if huge < 3.4e38:  # a range float32 can hold
        lo, hi = o.compute_range()
        assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi
        assert isinstance(o.compute_qparams(), ql.QParams)
    else:  # no float32 scale exists: refused with a sentence, never an OverflowError
        with pytest.raises(ValueError, match="finite|float32"):
            o.compute_qparams()


@pytest.mark.parametrize("two_sided", [False, True])
def test_histogram_huge_jump_keeps_counts_exact(two_sided):
    h = Histogram(bins=8, two_sided=two_sided).add(np.array([1e-300, 2e-300]))
    h.add(np.array([1e300]))
    assert h.counts_.sum() == 3 and h.counts_[-1] == 1 and h.counts_[h.offset] == 2
    assert h.edges[-1] >= 1e300


def test_histogram_refuses_nan_inf_and_bad_quantiles():
    h = Histogram(bins=8)
    for bad in (np.array([1.0, np.nan]), np.array([np.inf]), np.array([-np.inf, 1.0])):
        with pytest.raises(ValueError, match="finite"):
            Histogram(bins=8, two_sided=True).add(bad)
    with pytest.raises(ValueError, match="empty"):
        h.quantile(0.5)
    h.add(np.array([1.0, 2.0, 3.0, 4.0]))
    assert h.counts_.sum() == 4 and h.counts_[0] == 0  # nothing counted in bin 0 by the refused calls
    assert h.quantile(0.0) == 0.0 and h.quantile(1.0) == h.edges[-1]
    for q in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match=r"q must be a fraction in \[0, 1\]"):
            h.quantile(q)
    with pytest.raises(ValueError, match="magnitudes"):
        h.add(np.array([-1.0]))


def test_moving_average_is_pytorch_bit_for_bit(rng):
    torch = require("torch")
    ao = require("torch.ao.quantization")
    import warnings

    mismatches = 0
    for _ in range(200):
        c = float(rng.choice([0.01, 0.1, 0.3, 1 / 3, rng.uniform(0.001, 1)]))
        xs = [(rng.standard_normal(int(rng.integers(1, 64))) * rng.uniform(0.01, 100)).astype(np.float32)
              for _ in range(int(rng.integers(2, 12)))]  # fmt: skip
        ours = MovingAverageMinMaxObserver(averaging_constant=c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ao.MovingAverageMinMaxObserver(averaging_constant=c)
            for b in xs:
                ours.observe(b)
                theirs(torch.from_numpy(b))
        mismatches += ours.compute_range() != (float(theirs.min_val), float(theirs.max_val))
    assert mismatches == 0


@given(
    data=hnp.arrays(np.float64, st.integers(1, 200), elements=st.floats(-1e6, 1e6)),
    bins=st.sampled_from([2, 4, 16, 2048]),
    two_sided=st.booleans(),
    magnitudes=st.booleans(),
)
def test_histogram_counts_equal_the_floor_reference(data, bins, two_sided, magnitudes):
    # the truncating fast path for non-negative batches must bin exactly like floor(v / width)
    v = np.abs(data) if magnitudes or not two_sided else data
    h = Histogram(bins=bins, two_sided=two_sided).add(v)
    if h.width_ == 0.0:
        assert h.counts_[h.offset] == v.size
        return
    idx = np.clip(np.floor(v / h.width_).astype(np.int64) + h.offset, 0, bins - 1)
    np.testing.assert_array_equal(h.counts_, np.bincount(idx, minlength=bins))
