"""Activation-quantization rows for benchmarks/llm_ptq.py: W8A8, SmoothQuant, LLM.int8(), KV cache.

Each row is (scheme, bits, group, fn) with fn(ctx) -> (perplexity, size in bytes), ctx as in
benchmarks/llm_ptq.py (model, calib tokens, evaluate(model, linear=..., kv_hook=...)).

Sizes: W8A8 and LLM.int8() rows give the model's bytes (int8 linear weights, one float32 scale per
output channel, everything else float32; LLM.int8() adds its outlier columns in float16 at the largest
count seen on the calibration tokens). KV rows give the bytes of one full 128-token KV cache of the model
(codes plus a float16 scale and zero point per group), against 2·L·H·d·T·4 in float32.

The rows ending in ``+inj`` run on the documented outlier injection
(:func:`qlearn.activations.inject_outliers`: channels 5, 50 and 100 of every ln1/ln2 times 30, the
next weights' columns divided by 30; the same float function), because the trained model has no
outlier channels (largest max/median channel range 4.6, most below 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from qlearn import choose_qparams
from qlearn.activations import (
    channel_ranges,
    inject_outliers,
    kv_cache_bytes,
    kv_quant_hook,
    llm_int8_hook,
    smooth_model,
    w8a8_hook,
)

Fn = Callable[[Any], tuple[float, int | None]]
INJECT = dict(channels=[5, 50, 100], factor=30.0)


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


def _static_qparams(model: Any, calib: np.ndarray) -> dict[str, Any]:
    return {name: choose_qparams(x) for name, x in model.capture_inputs(calib).items()}


def _model(ctx: Any, inject: bool) -> Any:
    return inject_outliers(ctx.model, **INJECT) if inject else ctx.model


def w8a8(mode: str, smooth: float | None = None, inject: bool = False) -> Fn:
    def run(ctx: Any) -> tuple[float, int | None]:
        model = _model(ctx, inject)
        if smooth is not None:
            model = smooth_model(model, channel_ranges(model, ctx.calib), smooth)
        qps = _static_qparams(model, ctx.calib) if mode == "static" else None
        return ctx.evaluate(model, linear=w8a8_hook(mode, qps)), _w8a8_bytes(model)

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
        codes = kv_cache_bytes(c.n_layers, c.n_heads, c.d_head, c.context, bits / 8)
        scales = kv_cache_bytes(c.n_layers, c.n_heads, c.d_head, c.context, 4 / g)  # fp16 scale + zero
        hook = kv_quant_hook(bits, key_axis=key_axis, group_size=group)
        return ctx.evaluate(ctx.model, kv_hook=hook), int(codes + scales)

    return run


def act_rows() -> list[tuple[str, str, str, Fn]]:
    """The rows, in table order."""
    return [
        ("w8a8-static", "8", "tensor", w8a8("static")),
        ("w8a8-dynamic", "8", "token", w8a8("dynamic")),
        ("w8a8-smoothquant", "8", "tensor", w8a8("static", smooth=0.5)),
        ("llm-int8", "8", "token", llm_int8()),
        ("w8a8-static+inj", "8", "tensor", w8a8("static", inject=True)),
        ("w8a8-dynamic+inj", "8", "token", w8a8("dynamic", inject=True)),
        ("w8a8-smoothquant+inj", "8", "tensor", w8a8("static", smooth=0.5, inject=True)),
        ("llm-int8+inj", "8", "token", llm_int8(inject=True)),
        ("kv-int8", "8", "token", kv(8, "token", None)),
        ("kv-int4", "4", "k:chan v:32", kv(4, "channel", None)),
    ]
