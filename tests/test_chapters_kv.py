"""Regression pins of book/lm_kv_cache.ipynb: the numbers and orderings its prose quotes.

Same machinery as tests/test_chapters.py: the chapter's code cells run once, in order, headless, and each
pin runs after the cell its ``after`` text appears in (by default after the last cell).
"""

import pytest
from test_chapters import Pin, run_chapter

KV_PINS = [
    # "channel ranges within a factor of about 1.5 of each other"
    Pin(
        """
ratios = [worst_ratio(x) for pair in kv.values() for x in pair]
assert 1.2 < min(ratios) and max(ratios) < 1.7, ratios
""",
        after="def worst_ratio",
    ),
    # "passes the weights of a 7B model at about 26,000 tokens, of our model at about 800";
    # "about a sixth of its weights" at the 128-token context
    Pin(
        """
cross = {k: 2 * n / act.kv_cache_bytes(a, b, c, 1, 2) for k, (n, a, b, c) in sizes.items()}
assert round(cross["7B (LLaMA)"], -3) == 26000 and round(cross["course model"], -2) == 800, cross
assert 0.15 < ratio < 0.18, ratio
""",
        after="def llama_params",
    ),
    # per token better on the trained keys, per channel better on the spiked ones (4 bits)
    Pin(
        """
assert key_sqnr("trained", 4, "token") > key_sqnr("trained", 4, "channel")
assert key_sqnr("spiked x10", 4, "channel") > key_sqnr("spiked x10", 4, "token")
""",
        after="def key_sqnr",
    ),
    # "halving the group buys between 0.7 and 2.4 dB ... about 3 dB on the spiked keys"
    Pin(
        """
import numpy as np
rows = np.array([sqnr_groups[g] for g in (32, 16, 8, 4)])
gain = np.diff(rows, axis=0)
assert round(gain[:, :2].min(), 1) == 0.7 and round(gain[:, :2].max(), 1) == 2.4, gain
assert 2.5 < gain[:, 2].min() and gain[:, 2].max() < 3.5, gain
""",
        after="sqnr_groups = {}",
    ),
    # the perplexity paragraph
    Pin(
        """
rel = {k: p / fp32 - 1 for k, p in ppl.items()}
assert abs(rel["int8, per token"]) < 1e-3
assert 0.008 < rel["int4, per token"] < 0.014
assert 0.55 < rel["int4, groups of 8"] / rel["int4, per token"] < 0.75
assert rel["int4, keys per channel"] > rel["int4, per token"]
assert min(rel["int2, groups of 8"], rel["int2, keys per channel, g 8"]) > 0.2
spk = {k: p / fp32 - 1 for k, p in ppl_spiky.items()}
assert 0.25 < spk["int4, per token"] < 0.334
assert round(ppl_spiky["int4, keys per channel"], 3) == round(ppl["int4, keys per channel"], 3)
""",
        after="ppl_spiky = {}",
    ),
    # "the 8-bit cache changes the text after 65 characters, the 4-bit layouts within the first few
    # dozen; groups of 8 diverge first"
    Pin(
        """
first = {k: int(np.flatnonzero(t != ref)[0]) for k, t in texts.items() if k != "fp32"}
assert first["int8, per token"] == 65  # after the rebuild of the cache at step 28
assert max(v for k, v in first.items() if k.startswith("int4")) <= 40
assert min(first, key=first.get) == "int4, groups of 8"
""",
        after="n_new = 150",
    ),
    # exercise 1: 2 GiB per sequence, seven of them pass 12.6 GiB; 0.53 GiB and 24 at 4 bits
    Pin(
        """
n_par, nl, nh, dh = sizes["7B (LLaMA)"]
one = act.kv_cache_bytes(nl, nh, dh, 4096, 2)
four = act.kv_cache_bytes(nl, nh, dh, 4096, 0.5, group_size=128)
assert one == 2**31 and round(2 * n_par / 2**30, 1) == 12.6 and int(np.ceil(2 * n_par / one)) == 7
assert round(four / 2**30, 2) == 0.53 and int(np.ceil(2 * n_par / four)) == 24
""",
    ),
    # exercise 2: the keys matter more; exercise 3: one window ~1 % clipped, 64 windows the worst
    Pin(
        """
assert ppl_only["keys"] > ppl_only["values"]
assert 0.005 < ppl_calib[1][1] < 0.015
assert ppl_calib[64][0] > max(ppl_calib[1][0], ppl_calib[4][0])
assert ppl_calib[64][1] < ppl_calib[4][1] < ppl_calib[1][1]
""",
    ),
]


@pytest.fixture(scope="module")
def kv_failures() -> dict[int, str]:
    return run_chapter("lm_kv_cache", KV_PINS)


@pytest.mark.parametrize("index", range(len(KV_PINS)), ids=[f"kv-{i:02d}" for i in range(len(KV_PINS))])
def test_kv_cache_pins(kv_failures, index):
    assert index not in kv_failures, f"{KV_PINS[index].code.strip()}\n-> {kv_failures[index]}"
