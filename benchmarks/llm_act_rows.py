"""Activation-quantization rows for benchmarks/llm_ptq.py: W8A8, SmoothQuant, LLM.int8(), KV cache.

Each row is (scheme, bits, group, fn) with fn(ctx) -> (perplexity, size in bytes), ctx as in
benchmarks/llm_ptq.py (model, calib tokens, evaluate(model, linear=..., kv_hook=...)).

Sizes: W8A8 and LLM.int8() rows give the model's bytes (int8 linear weights, one float32 scale per
output channel, everything else float32; LLM.int8() adds its outlier columns in float16 at the largest
count seen on the calibration tokens). KV rows give the bytes of one full 128-token KV cache of the model
(codes plus a float16 scale and zero point per group), against 2·L·H·d·T·4 in float32. ``kv-int4-kchan``
keeps keys per channel with static ranges calibrated once (KVQuant's choice; a per-channel scale computed
over the tokens of a call would be non-causal, and lossless for one token), values per token.

``w8a8-static-channel`` is static W8A8 with one activation scale per *input channel* where that is
possible: on the inputs of ``attn.qkv`` and ``mlp.fc1``, whose channel scales fold into the LayerNorm
before them (SmoothQuant with alpha = 1); the other inputs keep one scale per tensor.
``w8a8-smoothquant`` picks alpha from (0.25, 0.5, 0.75) by perplexity on 4,096 tokens of the
validation split (never the test split the table reports).

The rows ending in ``+inj`` run on the documented outlier injection
(:func:`qlearn.activations.inject_outliers`: channels 5, 50 and 100 of every ln1/ln2 times 30, the
next weights' columns divided by 30; the same float function), because the trained model has no
outlier channels (largest max/median channel range 4.6, most below 2). SmoothQuant and the per-channel fold
undo this injection exactly (their smoothed ranges depend only on max|X_j|·max|W_j|, which it leaves
unchanged), so their +inj rows equal their plain rows by construction and test nothing; the +inj rows test
static per-tensor, dynamic per-token and LLM.int8().
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from qlearn import lm
from qlearn.activations import (
    calibrate_activations,
    channel_ranges,
    inject_outliers,
    kv_cache_bytes,
    kv_quant_hook,
    kv_ranges,
    llm_int8_hook,
    smooth_model,
    w8a8_hook,
)

Fn = Callable[[Any], tuple[float, int | None]]
INJECT = dict(channels=[5, 50, 100], factor=30.0)
ALPHAS = (0.25, 0.5, 0.75)


def _w8a8_bytes(model: Any, float_cols: int = 0) -> int:
    total = 0
    lin = set(model.linear_names())
    for name, a in model.params.items():
        if name.endswith(".weight") and name[: -len(".weight")] in lin:
            n, k = a.shape
            total += n * (k - float_cols) + 4 * n + 2 * n * min(float_cols, k)
        else:
            total += 4 * a.size
    return total


def _model(ctx: Any, inject: bool) -> Any:
    return inject_outliers(ctx.model, **INJECT) if inject else ctx.model


def _static_hook(model: Any, calib: np.ndarray) -> Any:
    return w8a8_hook("static", calibrate_activations(model, calib))


def _pick_alpha(model: Any, calib: np.ndarray) -> float:
    ranges = channel_ranges(model, calib)
    scores = {}
    for a in ALPHAS:
        sm = smooth_model(model, ranges, a)
        scores[a] = lm.perplexity(sm, "valid", max_tokens=4096, linear=_static_hook(sm, calib))
    return min(scores, key=scores.__getitem__)


def w8a8(mode: str, smooth: float | str | None = None, inject: bool = False) -> Fn:
    """``smooth``: None, an alpha, or "search" (alpha from ALPHAS by validation perplexity)."""

    def run(ctx: Any) -> tuple[float, int | None]:
        model = _model(ctx, inject)
        if smooth is not None:
            alpha = _pick_alpha(model, ctx.calib) if smooth == "search" else float(smooth)
            model = smooth_model(model, channel_ranges(model, ctx.calib), alpha)
        hook = _static_hook(model, ctx.calib) if mode == "static" else w8a8_hook(mode)
        return ctx.evaluate(model, linear=hook), _w8a8_bytes(model)

    return run


def llm_int8(inject: bool = False) -> Fn:
    def run(ctx: Any) -> tuple[float, int | None]:
        model = _model(ctx, inject)
        cols = max(int((r > 6.0).sum()) for r in channel_ranges(model, ctx.calib).values())
        return ctx.evaluate(model, linear=llm_int8_hook(6.0)), _w8a8_bytes(model, cols)

    return run


def kv(bits: int, key_axis: str, group: int | None) -> Fn:
    def run(ctx: Any) -> tuple[float, int | None]:
        c = ctx.model.config
        g = c.d_head if group is None else group
        dims = (c.n_layers, c.n_heads, c.d_head, c.context)
        if key_axis == "channel":  # static key ranges, calibrated once (causal); fp16 scale + zero per key channel
            ranges = kv_ranges(ctx.model, ctx.calib)
            size = kv_cache_bytes(*dims, bits / 8) + kv_cache_bytes(*dims, 4 / g) / 2  # value scales only
            size += 4 * c.n_layers * c.n_heads * c.d_head
        else:
            ranges = None
            size = kv_cache_bytes(*dims, bits / 8, group_size=g)  # codes + fp16 scale and zero per group
        hook = kv_quant_hook(bits, key_axis=key_axis, group_size=group, key_ranges=ranges)
        return ctx.evaluate(ctx.model, kv_hook=hook), int(size)

    return run


def act_rows() -> list[tuple[str, str, str, Fn]]:
    """The rows, in table order."""
    return [
        ("w8a8-static", "8", "tensor", w8a8("static")),
        ("w8a8-static-channel", "8", "channel*", w8a8("static", smooth=1.0)),
        ("w8a8-dynamic", "8", "token", w8a8("dynamic")),
        ("w8a8-smoothquant", "8", "tensor", w8a8("static", smooth="search")),
        ("llm-int8", "8", "token", llm_int8()),
        ("w8a8-static+inj", "8", "tensor", w8a8("static", inject=True)),
        ("w8a8-static-channel+inj", "8", "channel*", w8a8("static", smooth=1.0, inject=True)),
        ("w8a8-dynamic+inj", "8", "token", w8a8("dynamic", inject=True)),
        ("w8a8-smoothquant+inj", "8", "tensor", w8a8("static", smooth="search", inject=True)),
        ("llm-int8+inj", "8", "token", llm_int8(inject=True)),
        ("kv-int8", "8", "token", kv(8, "token", None)),
        ("kv-int4", "4", "token", kv(4, "token", None)),
        ("kv-int4-g8", "4", "8", kv(4, "token", 8)),
        ("kv-int4-kchan", "4", "k:chan v:32", kv(4, "channel", None)),
    ]


def act_targets(results: dict[str, float]) -> list[str]:
    """One line per target of the activation rows, from the perplexities of one run."""
    f = results["fp32"]

    def vs(name: str) -> float:
        return 100 * (results[name] / f - 1)

    out = []
    for name, limit in (("w8a8-dynamic", 2.0), ("w8a8-smoothquant", 2.0), ("kv-int8", 1.0)):
        ok = "meets" if vs(name) <= limit else "MISSES"
        out.append(f"{name}: {vs(name):+.2f}% vs fp32 (target <= {limit:g}%): {ok}")
    for suffix in ("", "+inj"):
        sq, st = results[f"w8a8-smoothquant{suffix}"], results[f"w8a8-static{suffix}"]
        ok = "meets" if sq <= st else "MISSES"
        out.append(f"w8a8-smoothquant{suffix} {sq:.3f} vs w8a8-static{suffix} {st:.3f} (target: <=): {ok}")
    return out
