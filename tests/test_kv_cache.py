"""qlearn.activations.kv_cache: cache bytes, per-token and static per-channel KV quantization, the hook."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qlearn as ql
from qlearn.activations import kv_cache_bytes, kv_quant_hook, kv_ranges, quantize_kv
from qlearn.formats import pack, unpack

CFG = ql.lm.LMConfig(vocab_size=7, d_model=16, n_layers=2, n_heads=2, d_ff=32, context=8)
TOK = np.array([[0, 1, 2, 3, 4, 5, 6, 0], [3, 3, 1, 0, 6, 2, 5, 4]])
CALIB = np.array([[6, 5, 4, 3, 2, 1, 0, 1], [2, 2, 4, 4, 6, 6, 1, 3], [0, 3, 6, 2, 5, 1, 4, 0]])


@pytest.fixture(scope="module")
def model():
    return ql.lm.Transformer.initialize(CFG, seed=1)


@pytest.fixture(scope="module")
def ranges(model):
    return kv_ranges(model, CALIB)


def hooks(ranges):
    """Every layout the hook offers, at the widths that matter."""
    out = {}
    for bits in (8, 4, 2):
        out[f"token-{bits}"] = kv_quant_hook(bits)
        out[f"token-{bits}-g4"] = kv_quant_hook(bits, group_size=4)
        out[f"channel-{bits}"] = kv_quant_hook(bits, key_axis="channel", key_ranges=ranges)
        out[f"channel-{bits}-v-g2"] = kv_quant_hook(bits, key_axis="channel", group_size=2, key_ranges=ranges)
    return out


def per_channel_over_call(bits):
    """The old layout (a key's per-channel scale over all tokens of the call), as a negative control."""

    def hook(layer, k, v):
        kd = k.astype(np.float64).transpose(0, 1, 3, 2)  # (B, H, d, T)
        flat = kd.reshape(-1, kd.shape[-1])  # (B*H*d, T): one row per channel, over the tokens
        kq = ql.fake_quantize(flat, ql.choose_qparams(flat, bits, axis=0)).reshape(kd.shape).transpose(0, 1, 3, 2)
        return kq.astype(k.dtype), quantize_kv(v, bits).astype(v.dtype)

    return hook


# ------------------------------------------------------------------ golden values by hand


def test_per_token_golden():
    # token 0: range [0, 3], 2 bits -> step 1, exact; token 1: range [-1, 2], step 1, zero point 1;
    # 0.5 / 1 = 0.5 rounds half to even -> 0, plus the zero point: code 1 -> 0.0
    x = np.array([[0.0, 1.0, 2.0, 3.0], [-1.0, 0.0, 0.5, 2.0]]).reshape(1, 1, 2, 4)
    np.testing.assert_array_equal(quantize_kv(x, 2)[0, 0], [[0, 1, 2, 3], [-1, 0, 0, 2]])


def test_per_token_groups_golden():
    # groups [0, 1] (step 1/3, exact) and [10, 20] (widened to [0, 20], step 20/3: 10 -> code 2 -> 40/3)
    x = np.array([0.0, 1.0, 10.0, 20.0]).reshape(1, 1, 1, 4)
    np.testing.assert_allclose(quantize_kv(x, 2, group_size=2)[0, 0, 0], [0, 1, 40 / 3, 20], rtol=1e-6)
    # one scale for the whole token: step 20/3 -> 0 and 1 both round to 0
    np.testing.assert_allclose(quantize_kv(x, 2)[0, 0, 0], [0, 0, 40 / 3, 20], rtol=1e-6)


def test_per_channel_static_golden():
    # channel 0: [0, 4], step 4/3, zero point 0; channel 1: [-2, 2], step 4/3, zero point round(1.5) = 2
    lo, hi = np.array([[0.0, -2.0]]), np.array([[4.0, 2.0]])
    x = np.array([[1.0, -3.0], [5.0, 0.7]]).reshape(1, 1, 2, 2)
    out = quantize_kv(x, 2, "channel", ranges=(lo, hi))[0, 0]
    # 1 -> code 1 -> 4/3; -3 clipped to code 0 -> -8/3; 5 clipped to code 3 -> 4; 0.7 -> code 3 - 2 -> 4/3
    np.testing.assert_allclose(out, [[4 / 3, -8 / 3], [4.0, 4 / 3]], rtol=1e-6)


def test_kv_ranges_are_the_captured_extremes(model, ranges):
    lo, hi = ranges
    assert lo.shape == hi.shape == (CFG.n_layers, CFG.n_heads, CFG.d_head)
    seen = {}
    model.forward(CALIB, kv_hook=lambda i, k, v: (seen.__setitem__(i, k.copy()), (k, v))[1])
    for i, k in seen.items():
        np.testing.assert_array_equal(lo[i], k.min(axis=(0, 2)))
        np.testing.assert_array_equal(hi[i], k.max(axis=(0, 2)))


def test_layouts_on_an_outlier_channel():
    rng = np.random.default_rng(2)
    k = rng.standard_normal((1, 2, 16, 8))
    k[..., 3] *= 20  # an outlier channel, as keys of large models have
    rest = [0, 1, 2, 4, 5, 6, 7]
    e_tok = np.abs(quantize_kv(k, 4) - k)[..., rest].mean()
    own = (k.min(axis=(0, 2)), k.max(axis=(0, 2)))  # static ranges calibrated on k itself
    e_ch = np.abs(quantize_kv(k, 4, "channel", ranges=own) - k)[..., rest].mean()
    assert e_ch < e_tok / 3
    e_g = np.abs(quantize_kv(k, 4, group_size=4) - k)[..., :3].mean()
    assert e_g < np.abs(quantize_kv(k, 4) - k)[..., :3].mean()
    np.testing.assert_allclose(quantize_kv(k, 8), k, atol=np.ptp(k, axis=-1).max() / 255)


# ------------------------------------------------------------------ the memory formula against real arrays


def test_memory_formula_golden_and_groups():
    assert kv_cache_bytes(32, 32, 128, 4096, 2) == 2**31
    assert kv_cache_bytes(2, 2, 8, 3, 1, batch=5) == 2 * 5 * 2 * 2 * 8 * 3
    # int4 in groups of 32 with a float16 scale and zero point: 16 + 4 bytes per group, twice
    assert kv_cache_bytes(1, 1, 32, 1, 0.5, group_size=32) == 40.0
    assert kv_cache_bytes(1, 1, 32, 1, 0.5, group_size=8, group_bytes=3) == 2 * (16 + 4 * 3)


def test_cache_the_model_builds_matches_formula(model):
    # the cache the model builds while scoring: one (k, v) pair per layer, each (B, H, T, d) float32
    seen = []
    model.forward(TOK, kv_hook=lambda i, k, v: (seen.append(k.nbytes + v.nbytes), (k, v))[1])
    c = model.config
    assert len(seen) == c.n_layers
    assert sum(seen) == kv_cache_bytes(c.n_layers, c.n_heads, c.d_head, TOK.shape[1], 4, batch=TOK.shape[0])


@pytest.mark.parametrize("group", [None, 4])
def test_packed_int4_cache_matches_formula(model, group):
    # a real int4 store: per-token codes packed two to a byte, a float16 scale and zero point per group
    c = model.config
    g = c.d_head if group is None else group
    seen = []
    model.forward(TOK, kv_hook=lambda i, k, v: (seen.extend([k, v]), (k, v))[1])
    total = 0
    for x in seen:  # (B, H, T, d)
        flat = x.astype(np.float64).reshape(-1, g)
        qp = ql.choose_qparams(flat, 4, axis=0)
        q = ql.quantize(flat, qp).reshape(x.shape)  # codes in [0, 15]
        codes = pack(q, bits=4)  # (B, H, T, d / 2) uint8
        np.testing.assert_array_equal(unpack(codes, 4, n=c.d_head), q)
        scale, zero = qp.scale.astype(np.float16), qp.zero_point.astype(np.float16)
        total += codes.nbytes + scale.nbytes + zero.nbytes
        np.testing.assert_allclose(
            ql.dequantize(q.reshape(-1, g), qp), quantize_kv(x, 4, group_size=group).reshape(-1, g)
        )
    want = kv_cache_bytes(c.n_layers, c.n_heads, c.d_head, TOK.shape[1], 0.5, batch=2, group_size=g)
    assert total == want


# ------------------------------------------------------------------ causality and generation


def _causal(model, hook):
    """True if changing a token never changes the logits at the positions before it."""
    base = model.forward(TOK, kv_hook=hook)
    for pos in (TOK.shape[1] - 1, 3):
        tok = TOK.copy()
        tok[:, pos] = (tok[:, pos] + 1) % CFG.vocab_size
        if not np.allclose(model.forward(tok, kv_hook=hook)[:, :pos], base[:, :pos], rtol=0, atol=1e-6):
            return False
    return True


def test_every_hook_is_causal(model, ranges):
    for name, hook in hooks(ranges).items():
        assert _causal(model, hook), name


def test_causality_check_catches_per_channel_scales_over_the_call(model):
    # the layout the hook refuses: each key's scale over all tokens of the call depends on later tokens
    assert not _causal(model, per_channel_over_call(4))


def test_one_token_at_a_time_equals_whole_window(model, ranges):
    k = np.random.default_rng(3).standard_normal((2, CFG.n_heads, 6, CFG.d_head)).astype(np.float32)
    for name, hook in hooks(ranges).items():
        whole = hook(1, k, k)
        steps = [hook(1, k[:, :, t : t + 1], k[:, :, t : t + 1]) for t in range(k.shape[2])]
        for j in (0, 1):
            np.testing.assert_array_equal(np.concatenate([s[j] for s in steps], axis=2), whole[j], err_msg=name)
    # the refused layout is lossless one token at a time, and lossy on the window
    old = per_channel_over_call(2)
    single = old(1, k[:, :, :1], k[:, :, :1])[0]
    np.testing.assert_allclose(single, k[:, :, :1], rtol=1e-6)
    assert np.abs(old(1, k, k)[0] - k).max() > 0.05


def test_generate_with_hook_equals_forward_with_hook(model, ranges):
    prompt = np.array([1, 2, 3])
    n = CFG.context - len(prompt)  # stays inside the window: no rebuild of the cache
    for name, hook in hooks(ranges).items():
        ids, logits = model.generate(prompt, n, kv_hook=hook, return_logits=True)
        full = np.concatenate([prompt, ids[:-1]])[None]
        ref = model.forward(full, kv_hook=hook)[0, len(prompt) - 1 :]
        np.testing.assert_allclose(logits, ref, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(ids, ref.argmax(-1), err_msg=name)


def test_quantization_changes_the_cache(model, ranges):
    # a hook that silently did nothing would pass the causality tests: check each one quantizes
    k = np.random.default_rng(4).standard_normal((1, CFG.n_heads, 5, CFG.d_head)).astype(np.float32)
    for name, hook in hooks(ranges).items():
        kq, vq = hook(0, k, k)
        assert kq.dtype == vq.dtype == np.float32, name
        assert np.abs(kq - k).max() > 0 and np.abs(vq - k).max() > 0, name


def test_inputs_not_mutated(ranges):
    k = np.random.default_rng(5).standard_normal((1, CFG.n_heads, 4, CFG.d_head)).astype(np.float32)
    before = k.copy()
    lo, hi = (r.copy() for r in ranges)
    kv_quant_hook(4, key_axis="channel", key_ranges=ranges)(0, k, k)
    quantize_kv(k, 2, group_size=2)
    np.testing.assert_array_equal(k, before)
    np.testing.assert_array_equal(ranges[0], lo)
    np.testing.assert_array_equal(ranges[1], hi)


# ------------------------------------------------------------------ errors


def test_quantize_kv_errors():
    k = np.zeros((1, 2, 3, 8))
    own = (np.zeros((2, 8)), np.ones((2, 8)))
    bad_value = [
        dict(bits=1),
        dict(bits=9),
        dict(bits=4, axis="head"),
        dict(bits=4, group_size=1),  # one value per group: lossless
        dict(bits=4, group_size=3),  # does not divide 8
        dict(bits=4, group_size=0),
        dict(bits=4, axis="channel"),  # no ranges: not causal
        dict(bits=4, axis="channel", ranges=own, group_size=4),
        dict(bits=4, ranges=own),  # ranges with per-token
        dict(bits=4, axis="channel", ranges=(np.zeros((2, 4)), np.ones((2, 4)))),  # wrong shape
        dict(bits=4, axis="channel", ranges=(np.ones((2, 8)), np.zeros((2, 8)))),  # lo > hi
        dict(bits=4, axis="channel", ranges=(np.zeros((2, 8)), np.full((2, 8), np.inf))),
        dict(bits=4, axis="channel", ranges=np.zeros((2, 8))),  # not a pair
    ]
    for kw in bad_value:
        with pytest.raises(ValueError):
            quantize_kv(k, **kw)
    with pytest.raises(ValueError, match="later tokens"):
        quantize_kv(k, 4, "channel")
    with pytest.raises(ValueError, match=r"\(B, H, T, d\)"):
        quantize_kv(k[0], 4)
    for bits in (4.0, True, "4"):
        with pytest.raises(TypeError):
            quantize_kv(k, bits)


def test_hook_errors(ranges):
    for kw in (
        dict(bits=1),
        dict(bits=9),
        dict(bits=4, key_axis="head"),
        dict(bits=4, group_size=1),
        dict(bits=4, key_axis="channel"),
        dict(bits=4, key_ranges=ranges),
        dict(bits=4, key_axis="channel", key_ranges=(ranges[0][0], ranges[1][0])),  # (H, d), not (L, H, d)
        dict(bits=4, key_axis="channel", key_ranges=(ranges[1], ranges[0] - 1)),  # lo > hi
    ):
        with pytest.raises(ValueError):
            kv_quant_hook(**kw)
    with pytest.raises(ValueError, match="lossless"):
        kv_quant_hook(4, key_axis="channel")
    with pytest.raises(TypeError):
        kv_quant_hook(4.0)
    k = np.zeros((1, CFG.n_heads, 2, CFG.d_head), np.float32)
    hook = kv_quant_hook(4, key_axis="channel", key_ranges=ranges)
    with pytest.raises(ValueError, match="layers"):
        hook(CFG.n_layers, k, k)
    with pytest.raises(ValueError, match="n_heads, d_head"):
        hook(0, k[..., :4], k[..., :4])
    with pytest.raises(ValueError, match="divide"):
        kv_quant_hook(4, group_size=3)(0, k, k)


def test_kv_cache_bytes_errors():
    for args, kw in (
        ((0, 1, 1, 1, 1), {}),
        ((1, 1, 1, 1, 0), {}),
        ((1, 1, 1, 1.5, 1), {}),
        ((1, 1, 1, 1, 1), dict(batch=0)),
        ((1, 1, 1, 1, 1), dict(group_size=0)),
        ((1, 1, 1, 1, 1), dict(group_size=4, group_bytes=0)),
    ):
        with pytest.raises(ValueError):
            kv_cache_bytes(*args, **kw)


# ------------------------------------------------------------------ properties

tensors = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 4), st.sampled_from([4, 8])),
    elements=st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
)


@given(x=tensors, bits=st.integers(2, 8), grouped=st.booleans())
def test_per_token_error_at_most_half_a_step(x, bits, grouped):
    g = 4 if grouped else x.shape[-1]
    groups = x.reshape(-1, g)
    lo, hi = np.minimum(groups.min(1), 0), np.maximum(groups.max(1), 0)
    step = np.maximum((hi - lo) / (2**bits - 1), np.finfo(np.float32).eps)  # (groups,)
    err = np.abs(quantize_kv(x, bits, group_size=g) - x).reshape(-1, g)
    assert np.all(err <= step[:, None] / 2 * (1 + 1e-5) + 1e-4 * step[:, None])


@given(x=tensors, bits=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_static_channel_error_inside_range_and_clipping_outside(x, bits, seed):
    _, h, _, d = x.shape
    rng = np.random.default_rng(seed)
    lo = -rng.uniform(0.1, 500, (h, d))
    hi = rng.uniform(0.1, 500, (h, d))
    out = quantize_kv(x, bits, "channel", ranges=(lo, hi))
    step = (hi - lo) / (2**bits - 1)  # (H, d); the ranges contain 0
    inside = (x >= lo[None, :, None]) & (x <= hi[None, :, None])
    err = np.abs(out - x)
    tol = step[None, :, None] * (0.5 + 1e-4)
    assert np.all(err[inside] <= np.broadcast_to(tol, x.shape)[inside])
    # outside the range the value becomes (within a step of) the nearest end
    clipped = np.clip(x, lo[None, :, None], hi[None, :, None])
    assert np.all(np.abs(out - clipped) <= np.broadcast_to(tol, x.shape) + 1e-9)
