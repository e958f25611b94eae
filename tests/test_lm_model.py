"""The transformer: gradient check, a slow reference forward, PyTorch as oracle, KV cache, hooks."""

import math

import numpy as np
import pytest
from oracles import require

from qlearn.lm import LMConfig, Transformer, loss_and_gradients
from qlearn.lm.model import init_params

TINY = LMConfig(vocab_size=7, context=6, d_model=8, n_layers=2, n_heads=2, d_ff=12)


def perturbed(cfg, seed, scale=0.3, dtype=np.float64):
    """Parameters away from the initialisation (non-zero biases, LN gains != 1) so every path is exercised."""
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0, scale, v.shape)).astype(dtype) for k, v in init_params(cfg, seed).items()}


def test_gradient_matches_central_differences_in_float64(rng):
    p = perturbed(TINY, 1)
    tok = rng.integers(0, 7, (2, 5))
    tgt = rng.integers(0, 7, (2, 5))
    loss, grads = loss_and_gradients(p, TINY, tok, tgt)
    assert set(grads) == set(p)
    eps = 1e-6
    for name, value in p.items():
        assert grads[name].shape == value.shape and grads[name].dtype == np.float64
        flat = list(np.ndindex(value.shape))
        picks = [flat[i] for i in rng.choice(len(flat), size=min(12, len(flat)), replace=False)]
        for idx in picks:
            up, down = value.copy(), value.copy()
            up[idx] += eps
            down[idx] -= eps
            lp, _ = loss_and_gradients({**p, name: up}, TINY, tok, tgt)
            lm, _ = loss_and_gradients({**p, name: down}, TINY, tok, tgt)
            num = (lp - lm) / (2 * eps)
            assert abs(num - grads[name][idx]) <= 1e-7 + 1e-6 * abs(num), (name, idx)


def reference_logits(p, cfg, tokens):
    """Slow, literal transformer: one sequence, one position and one head at a time."""

    def ln(x, w, b):
        return (x - x.mean()) / math.sqrt(x.var() + 1e-5) * w + b

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    out = []
    d, dh = cfg.d_model, cfg.d_head
    for seq in tokens:
        xs = [p["tok_emb"][t] + p["pos_emb"][i] for i, t in enumerate(seq)]
        for layer in range(cfg.n_layers):
            b = f"blocks.{layer}."
            qkv = [
                p[b + "attn.qkv.weight"] @ ln(x, p[b + "ln1.weight"], p[b + "ln1.bias"]) + p[b + "attn.qkv.bias"]
                for x in xs
            ]
            new = []
            for i in range(len(xs)):
                heads = []
                for h in range(cfg.n_heads):
                    sl = slice(h * dh, (h + 1) * dh)
                    q = qkv[i][:d][sl]
                    scores = np.array([q @ qkv[j][d : 2 * d][sl] / math.sqrt(dh) for j in range(i + 1)])
                    w = np.exp(scores - scores.max())
                    w /= w.sum()
                    heads.append(sum(w[j] * qkv[j][2 * d :][sl] for j in range(i + 1)))
                o = np.concatenate(heads)
                x = xs[i] + p[b + "attn.proj.weight"] @ o + p[b + "attn.proj.bias"]
                hdn = gelu(
                    p[b + "mlp.fc1.weight"] @ ln(x, p[b + "ln2.weight"], p[b + "ln2.bias"]) + p[b + "mlp.fc1.bias"]
                )
                new.append(x + p[b + "mlp.fc2.weight"] @ hdn + p[b + "mlp.fc2.bias"])
            xs = new
        out.append([p["head.weight"] @ ln(x, p["ln_f.weight"], p["ln_f.bias"]) + p["head.bias"] for x in xs])
    return np.array(out)


def test_forward_equals_slow_reference(rng):
    m = Transformer(TINY, perturbed(TINY, 2, dtype=np.float32))
    tok = rng.integers(0, 7, (3, 6))
    ref = reference_logits({k: v.astype(np.float64) for k, v in m.params.items()}, TINY, tok)
    np.testing.assert_allclose(m.forward(tok), ref, rtol=1e-4, atol=1e-4)


def test_causal_logits_do_not_depend_on_later_tokens(rng):
    m = Transformer(TINY, perturbed(TINY, 3, dtype=np.float32))
    a = rng.integers(0, 7, (1, 6))
    b = a.copy()
    b[0, 4:] = (b[0, 4:] + 1) % 7
    np.testing.assert_array_equal(m.forward(a)[0, :4], m.forward(b)[0, :4])


def torch_model(torch, p, cfg):
    t = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    F = torch.nn.functional

    def run(tokens):
        idx = torch.tensor(tokens)
        x = t["tok_emb"][idx] + t["pos_emb"][: idx.shape[1]]
        bsz, tt = idx.shape
        for i in range(cfg.n_layers):
            b = f"blocks.{i}."
            h = F.layer_norm(x, (cfg.d_model,), t[b + "ln1.weight"], t[b + "ln1.bias"], eps=1e-5)
            qkv = F.linear(h, t[b + "attn.qkv.weight"], t[b + "attn.qkv.bias"])
            q, k, v = qkv.view(bsz, tt, 3, cfg.n_heads, cfg.d_head).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.linear(o.transpose(1, 2).reshape(bsz, tt, -1), t[b + "attn.proj.weight"], t[b + "attn.proj.bias"])
            h = F.layer_norm(x, (cfg.d_model,), t[b + "ln2.weight"], t[b + "ln2.bias"], eps=1e-5)
            a = F.gelu(F.linear(h, t[b + "mlp.fc1.weight"], t[b + "mlp.fc1.bias"]), approximate="tanh")
            x = x + F.linear(a, t[b + "mlp.fc2.weight"], t[b + "mlp.fc2.bias"])
        x = F.layer_norm(x, (cfg.d_model,), t["ln_f.weight"], t["ln_f.bias"], eps=1e-5)
        return F.linear(x, t["head.weight"], t["head.bias"])

    return t, run


def test_forward_and_gradients_match_pytorch(rng):
    torch = require("torch")
    cfg = LMConfig(vocab_size=11, context=8, d_model=16, n_layers=2, n_heads=4, d_ff=24)
    p = perturbed(cfg, 4)
    tok = rng.integers(0, 11, (3, 8))
    tgt = rng.integers(0, 11, (3, 8))
    tp, run = torch_model(torch, p, cfg)
    logits = run(tok)
    loss_t = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), torch.tensor(tgt).reshape(-1))
    loss_t.backward()
    loss, grads = loss_and_gradients(p, cfg, tok, tgt)
    assert loss == pytest.approx(loss_t.item(), rel=1e-10)
    np.testing.assert_allclose(Transformer(cfg, p).forward(tok), logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    for k in p:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("prompt_len", [1, 3, 9])
def test_kv_cache_generation_equals_full_forward(rng, prompt_len):
    m = Transformer(TINY, perturbed(TINY, 5, dtype=np.float32))
    prompt = rng.integers(0, 7, prompt_len)
    n = 2 * TINY.context  # runs past the context, through rebuilds of the cache
    ids, logits = m.generate(prompt, n, return_logits=True)
    seq = np.concatenate([prompt, ids])
    start = max(0, prompt_len - TINY.context)  # the window the cache holds
    cached = prompt_len - start
    for i in range(n):  # logits[i] predicts seq[prompt_len + i] from the window seq[start : prompt_len + i]
        full = m.forward(seq[None, start : prompt_len + i])[0, -1]
        np.testing.assert_allclose(logits[i], full, rtol=1e-5, atol=1e-5)
        assert ids[i] == int(np.argmax(logits[i]))
        if cached >= TINY.context:  # full: rebuilt from the last context // 2 tokens
            start, cached = prompt_len + i + 1 - TINY.context // 2, TINY.context // 2
        else:
            cached += 1


def test_sampling_is_seeded_and_differs_from_greedy(rng):
    m = Transformer(TINY, perturbed(TINY, 6, dtype=np.float32))
    a = m.generate([1, 2], 5, seed=3)
    np.testing.assert_array_equal(a, m.generate([1, 2], 5, seed=3))
    assert a.dtype == np.int32 and a.min() >= 0 and a.max() < 7
    draws = {tuple(m.generate([1, 2], 5, seed=s, temperature=3.0)) for s in range(5)}
    assert len(draws) > 1


def test_kv_hook_is_applied_in_forward_and_in_the_cache(rng):
    m = Transformer(TINY, perturbed(TINY, 7, dtype=np.float32))

    def coarse(layer, k, v):  # a per-token transform: the same whether seen all at once or one by one
        return np.round(k * 4) / 4, np.round(v * 4) / 4

    tok = rng.integers(0, 7, 4)
    ids, logits = m.generate(tok, 2, kv_hook=coarse, return_logits=True)
    full = m.forward(np.concatenate([tok, ids])[None, :5], kv_hook=coarse)[0]
    np.testing.assert_allclose(logits[0], full[3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits[1], full[4], rtol=1e-5, atol=1e-5)
    assert not np.allclose(full, m.forward(np.concatenate([tok, ids])[None, :5])[0])
    seen = []
    m.forward(tok[None], kv_hook=lambda i, k, v: (seen.append((i, k.shape, v.shape)), (k, v))[1])
    assert seen == [(0, (1, 2, 4, 4), (1, 2, 4, 4)), (1, (1, 2, 4, 4), (1, 2, 4, 4))]


def test_linear_hook_and_capture_inputs(rng):
    m = Transformer(TINY, perturbed(TINY, 8, dtype=np.float32))
    tok = rng.integers(0, 7, (2, 5))
    calls = []

    def lin(name, x, w, b):
        calls.append((name, x.shape, w.shape))
        return x @ w.T + b

    np.testing.assert_array_equal(m.forward(tok, linear=lin), m.forward(tok))
    assert [c[0] for c in calls] == m.linear_names()
    for name, xshape, wshape in calls:
        assert m.params[name + ".weight"].shape == wshape and xshape == (2, 5, wshape[1])
    zero_head = m.forward(tok, linear=lambda n, x, w, b: 0 * b if n == "head" else x @ w.T + b)
    np.testing.assert_array_equal(zero_head, 0)
    cap = m.capture_inputs(tok)
    assert list(cap) == m.linear_names()
    for name, x in cap.items():
        assert x.shape == (10, m.params[name + ".weight"].shape[1])
    head_from_capture = cap["head"] @ m.params["head.weight"].T + m.params["head.bias"]
    np.testing.assert_allclose(head_from_capture.reshape(2, 5, 7), m.forward(tok), rtol=1e-5, atol=1e-6)
    assert list(m.capture_inputs(tok, ["blocks.1.mlp.fc2"])) == ["blocks.1.mlp.fc2"]
    with pytest.raises(ValueError, match="linear names"):
        m.capture_inputs(tok, ["blocks.9.mlp.fc2"])


def test_params_are_immutable_and_with_params_does_not_mutate():
    m = Transformer.initialize(TINY, seed=0)
    before = m.params["head.bias"].copy()
    with pytest.raises(ValueError):
        m.params["head.bias"][0] = 1.0
    new_bias = np.arange(7, dtype=np.float64)
    m2 = m.with_params({"head.bias": new_bias})
    np.testing.assert_array_equal(m.params["head.bias"], before)
    assert m2.params["head.bias"].dtype == np.float32 and m2.params["head.bias"][3] == 3.0
    assert m2.config == m.config
    new_bias[3] = 99.0
    assert m2.params["head.bias"][3] == 3.0
    assert all(v.dtype == np.float32 for v in m.params.values())


def test_parameter_count_follows_the_formula():
    for cfg in (TINY, LMConfig()):
        d, v, c, L = cfg.d_model, cfg.vocab_size, cfg.context, cfg.n_layers
        per_block = 4 * d * d + 4 * d + 2 * d * cfg.d_ff + cfg.d_ff + d + 4 * d
        assert Transformer.initialize(cfg).n_params == (v + c) * d + L * per_block + 2 * d + v * d + v


def test_initialisation_is_deterministic():
    a, b = init_params(TINY, 3), init_params(TINY, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["head.weight"], init_params(TINY, 4)["head.weight"])


def test_bad_input_raises():
    m = Transformer.initialize(TINY)
    with pytest.raises(ValueError, match="at most context"):
        m.forward(np.zeros((1, 7), dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 6\]"):
        m.forward([[0, 7]])
    with pytest.raises(TypeError, match="integer"):
        m.forward([[0.5]])
    with pytest.raises(ValueError, match="shape"):
        m.forward([1, 2])
    with pytest.raises(ValueError, match="missing"):
        Transformer(TINY, {})
    with pytest.raises(ValueError, match="shape"):
        m.with_params({"head.bias": np.zeros(3)})
    with pytest.raises(ValueError, match="does not have"):
        m.with_params({"nope": np.zeros(3)})
    with pytest.raises(ValueError, match="finite"):
        m.with_params({"head.bias": np.full(7, np.nan)})
    with pytest.raises(ValueError, match="multiple"):
        LMConfig(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="positive"):
        LMConfig(n_layers=0)
    with pytest.raises(ValueError, match="positive"):
        m.generate([1], 0)
    with pytest.raises(ValueError, match="not both"):
        m.generate([1], 2, greedy=True, seed=1)
    with pytest.raises(ValueError, match="seed"):
        m.generate([1], 2, greedy=False)
    with pytest.raises(ValueError, match="1-d"):
        m.generate([[1]], 2)
    with pytest.raises(ValueError, match="targets"):
        loss_and_gradients(m.params, TINY, [[1, 2]], [[1]])
