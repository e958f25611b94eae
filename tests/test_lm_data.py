"""Corpus, tokenizer, perplexity, calibration data, the trainer and the committed weights."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import require

from qlearn import lm
from qlearn.lm import CharTokenizer, LMConfig, Transformer
from qlearn.lm.corpus import _read_text
from qlearn.lm.train import TrainSettings, adamw_step, train

PRINTABLE = st.text(alphabet=st.sampled_from(["\n"] + [chr(c) for c in range(32, 127)]), max_size=200)


def test_tokenizer_golden_values():
    tok = CharTokenizer()
    assert tok.encode("\n ~A").tolist() == [0, 1, 95, 34]
    assert tok.decode(np.array([[0, 1], [95, 34]])) == "\n ~A"
    assert tok.decode([]) == ""


@given(PRINTABLE)
def test_tokenizer_round_trips(text):
    tok = CharTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and len(ids) == len(text)
    assert tok.decode(ids) == text


def test_tokenizer_rejects_bad_input():
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="printable ASCII"):
        tok.encode("caf\u00e9")
    with pytest.raises(ValueError, match="printable ASCII"):
        tok.encode("a\tb")
    with pytest.raises(TypeError, match="str"):
        tok.encode(b"abc")
    with pytest.raises(ValueError, match=r"\[0, 95\]"):
        tok.decode([96])
    with pytest.raises(TypeError, match="integers"):
        tok.decode([1.0])


def test_splits_partition_the_paragraphs():
    c = lm.load_corpus()
    text = _read_text()
    paragraphs = text.split("\n\n")
    assert c.tokenizer.decode(c.valid) == "\n\n".join(paragraphs[18::20])
    assert c.tokenizer.decode(c.test) == "\n\n".join(paragraphs[19::20])
    sizes = len(c.train) + len(c.valid) + len(c.test)
    assert sizes == len(text) - 2 * 2  # two "\n\n" joins between the three splits are not counted
    for name in ("train", "valid", "test"):
        arr = c.split(name)
        assert arr.dtype == np.int32 and not arr.flags.writeable
    assert lm.load_corpus() is c
    with pytest.raises(ValueError, match="split"):
        c.split("dev")


def test_unigram_perplexity_by_hand():
    # train counts 3 zeros and 1 one; add-one smoothing over V=2: p(0) = 4/6, p(1) = 2/6
    targets_all = [0, 0, 1, 1, 0]  # context 2, windows: targets [0, 1] and [1, 0]
    expected = math.exp(-(2 * math.log(4 / 6) + 2 * math.log(2 / 6)) / 4)
    got = lm.unigram_perplexity(targets_all, train=[0, 0, 0, 1], vocab_size=2, context=2)
    assert got == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lm.unigram_perplexity([0, 2, 1], train=[0, 1], vocab_size=2, context=2)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    cfg = LMConfig(vocab_size=96, context=16, d_model=8, n_layers=1, n_heads=2, d_ff=16)
    m = Transformer.initialize(cfg, seed=0)
    flat = m.with_params({"head.weight": np.zeros((96, 8)), "head.bias": np.zeros(96)})
    assert lm.perplexity(flat, "valid", max_tokens=512) == pytest.approx(96.0, rel=1e-6)


def test_perplexity_equals_a_per_window_reference(rng):
    cfg = LMConfig(vocab_size=96, context=16, d_model=8, n_layers=1, n_heads=2, d_ff=16)
    m = Transformer.initialize(cfg, seed=1)
    ids = rng.integers(0, 96, 100)
    nll = []
    for w in range(99 // 10):  # windows of 10, targets shifted by one
        logits = m.forward(ids[None, w * 10 : w * 10 + 10])[0].astype(np.float64)
        for j in range(10):
            z = logits[j]
            nll.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[ids[w * 10 + j + 1]])
    got = lm.perplexity(m, ids, context=10, batch=3, max_tokens=1000)
    assert got == pytest.approx(math.exp(np.mean(nll)), rel=1e-6)
    with pytest.raises(ValueError, match="at most the model's"):
        lm.perplexity(m, ids, context=17)
    with pytest.raises(ValueError, match="more than context"):
        lm.perplexity(m, ids[:10], context=10)
    with pytest.raises(ValueError, match="split name"):
        lm.perplexity(m, "dev")
    with pytest.raises(TypeError, match="Transformer"):
        lm.perplexity("model", ids)


def test_calibration_batches_are_seeded_windows_of_the_training_split():
    a = lm.calibration_batches(8, seed=1)
    assert a.shape == (8, 128) and a.dtype == np.int32
    np.testing.assert_array_equal(a, lm.calibration_batches(8, seed=1))
    assert not np.array_equal(a, lm.calibration_batches(8, seed=2))
    train_text = lm.load_corpus().tokenizer.decode(lm.load_corpus().train)
    tok = lm.load_corpus().tokenizer
    assert all(tok.decode(row) in train_text for row in a)
    with pytest.raises(ValueError, match="positive"):
        lm.calibration_batches(0)


def test_adamw_step_matches_pytorch(rng):
    torch = require("torch")
    p = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    opt_decay = torch.optim.AdamW([tp["w"]], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt_plain = torch.optim.AdamW([tp["b"]], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    state: dict = {}
    for _ in range(3):
        g = {k: rng.normal(size=v.shape) for k, v in p.items()}
        for k in p:
            tp[k].grad = torch.tensor(g[k])
        opt_decay.step()
        opt_plain.step()
        p = adamw_step(p, g, state, lr=0.01, weight_decay=0.1, decay=frozenset({"w"}))
    for k in p:
        np.testing.assert_allclose(p[k], tp[k].detach().numpy(), rtol=1e-12, atol=1e-12)


def test_adamw_step_does_not_mutate_its_arguments():
    p, g = {"w": np.ones(2)}, {"w": np.full(2, 0.5)}
    adamw_step(p, g, {}, lr=0.1, weight_decay=0.5, decay=frozenset({"w"}))
    assert p["w"].tolist() == [1.0, 1.0] and g["w"].tolist() == [0.5, 0.5]


def test_training_is_deterministic_and_lowers_the_loss():
    cfg = LMConfig(vocab_size=96, context=16, d_model=16, n_layers=1, n_heads=2, d_ff=32)
    s = TrainSettings(steps=30, batch=8, eval_every=10, warmup=5, lr=1e-2)
    m1, h1 = train(s, cfg, progress=False)
    m2, h2 = train(s, cfg, progress=False)
    assert all(np.array_equal(m1.params[k], m2.params[k]) for k in m1.params)
    assert h1["valid_loss"] == h2["valid_loss"] and h1["step"] == [10, 20, 30]
    assert h1["valid_loss"][-1] < math.log(96) - 1.0  # well below a uniform guess


def test_committed_model_beats_the_unigram_baseline_by_far():
    m = lm.load_model()
    assert m.config == LMConfig(vocab_size=96, context=128, d_model=128, n_layers=4, n_heads=4, d_ff=512)
    assert all(v.dtype == np.float32 for v in m.params.values())
    ppl = lm.perplexity(m, "valid")
    assert ppl <= 0.5 * lm.unigram_perplexity("valid")
    h = lm.load_history()
    assert h["valid_loss"][-1] < h["valid_loss"][0]
    assert h["step"][-1] == TrainSettings().steps


def test_committed_weights_reproduce_the_reported_perplexities():
    # regression pins of the numbers the book and the benchmark report (make model, seed 0)
    m = lm.load_model()
    assert lm.perplexity(m, "valid") == pytest.approx(5.5800, rel=1e-4)
    assert lm.perplexity(m, "test") == pytest.approx(5.7700, rel=1e-4)
    assert lm.unigram_perplexity("valid") == pytest.approx(26.5376, rel=1e-5)
    assert lm.unigram_perplexity("test") == pytest.approx(27.2082, rel=1e-5)
