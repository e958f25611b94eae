"""Weight-only post-training quantization of the course's language model: perplexity and size by scheme.

Usage: python benchmarks/llm_ptq.py [--group 64] [--calib 64] [--repeats 3] [--skip-timing]

Loads the committed transformer (qlearn.lm.load_model), calibrates GPTQ and AWQ on sequences of
the training split, evaluates perplexity on the held-out split and prints a markdown table.
Targets: fp32 perplexity at most half the unigram's; at 3 bits GPTQ and AWQ each recover at least
half of RTN's perplexity gap to fp32; at 4 bits both at least as good as RTN.

Then times GPTQ on one 4096 x 4096 layer with 2,048 calibration rows against the dense linear
algebra it cannot avoid (one Cholesky factorisation of H and one W·H product), alternating the two
measurements and reporting medians. Target: at most 3x.

Other schemes add rows: append (name, bits, group, fn) to ROWS, where fn(ctx) returns
(perplexity, size in bytes) and ctx holds the model, the calibration and the evaluation tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from llm_act_rows import act_rows, act_targets  # the activation rows (this script's folder is on sys.path)

from qlearn import lm
from qlearn.weightonly import gptq, hessian, quantize_model


@dataclass
class Context:
    """What every row's function may use."""

    model: Any
    calib: np.ndarray  # (batch, T) token ids from the training split
    evaluate: Callable[..., float]  # evaluate(model) -> held-out perplexity
    unigram: float
    group: int


Row = tuple[str, str, str, Callable[[Context], tuple[float, int | None]]]


def weight_only(method: str, bits: int, **options: Any) -> Callable[[Context], tuple[float, int | None]]:
    def run(ctx: Context) -> tuple[float, int | None]:
        group = ctx.group if bits < 8 else None  # 8 bits: one scale per output channel
        tokens = None if method == "rtn" else ctx.calib
        qm = quantize_model(ctx.model, method, bits, group, tokens=tokens, **options)
        return ctx.evaluate(qm.model), qm.nbytes

    return run


def fp32(ctx: Context) -> tuple[float, int | None]:
    return ctx.evaluate(ctx.model), 4 * ctx.model.n_params


def unigram(ctx: Context) -> tuple[float, int | None]:
    return ctx.unigram, None


def rows(group: int) -> list[Row]:
    g = str(group)
    return [
        ("unigram", "-", "-", unigram),
        ("fp32", "32", "-", fp32),
        ("rtn-w8", "8", "channel", weight_only("rtn", 8)),
        ("rtn-w4", "4", g, weight_only("rtn", 4)),
        ("gptq-w4", "4", g, weight_only("gptq", 4, act_order=True)),
        ("awq-w4", "4", g, weight_only("awq", 4)),
        ("rtn-w3", "3", g, weight_only("rtn", 3)),
        ("gptq-w3", "3", g, weight_only("gptq", 3, act_order=True)),
        ("awq-w3", "3", g, weight_only("awq", 3)),
    ] + act_rows()


def time_gptq(repeats: int, seed: int = 0) -> tuple[float, float, float]:
    """Median seconds of GPTQ and of Cholesky(H) + W·H on a 4096 x 4096 layer, and their ratio."""
    rng = np.random.default_rng(seed)
    n, rows_ = 4096, 2048
    mix = (np.eye(n) + 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    x = rng.standard_normal((rows_, n), dtype=np.float32) @ mix  # correlated inputs
    w = (0.02 * rng.standard_normal((n, n))).astype(np.float32)
    h = hessian(x)  # (n, n) float32
    h_damped = h + np.float32(0.01 * np.mean(np.diag(h))) * np.eye(n, dtype=np.float32)
    t_gptq, t_dense = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.linalg.cholesky(h_damped)
        _ = w @ h
        t_dense.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gptq(w, h, 4, 128)
        t_gptq.append(time.perf_counter() - t0)
    a, b = statistics.median(t_gptq), statistics.median(t_dense)
    return a, b, a / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=64, help="group size of the 4- and 3-bit rows")
    parser.add_argument("--calib", type=int, default=64, help="calibration sequences (of 128 tokens)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (medians)")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()

    model = lm.load_model()
    calib = lm.calibration_batches(args.calib)
    ctx = Context(model, calib, lm.perplexity, lm.unigram_perplexity(), args.group)

    start = time.perf_counter()
    print(f"model: {model.n_params:,} parameters; calibration {calib.shape[0]} x {calib.shape[1]} tokens\n")
    print("| scheme | bits | group | perplexity | vs fp32 (%) | size (bytes) |")
    print("|---|---:|---:|---:|---:|---:|")
    results: dict[str, float] = {}
    base = None
    for name, bits, group, fn in rows(args.group):
        ppl, size = fn(ctx)
        results[name] = ppl
        base = ppl if name == "fp32" else base
        vs = "-" if base is None else f"{100 * (ppl / base - 1):+.1f}"
        print(f"| {name} | {bits} | {group} | {ppl:.3f} | {vs} | {'-' if size is None else f'{size:,}'} |", flush=True)
    print(f"\n(quality rows in {time.perf_counter() - start:.0f} s)")

    f = results["fp32"]
    print(f"\nfp32 / unigram perplexity: {f / results['unigram']:.3f} (target <= 0.5)")
    for bits in ("4", "3"):
        gap = results[f"rtn-w{bits}"] - f
        for m in ("gptq", "awq"):
            rec = (results[f"rtn-w{bits}"] - results[f"{m}-w{bits}"]) / gap if gap > 0 else float("nan")
            print(f"{m}-w{bits}: recovers {100 * rec:.0f}% of RTN's gap to fp32")
    for line in act_targets(results):
        print(line)
    if not args.skip_timing:
        t_g, t_d, ratio = time_gptq(args.repeats)
        print(
            f"\nGPTQ on a 4096 x 4096 layer (2,048 calibration rows, group 128, float32): {t_g:.2f} s; "
            f"Cholesky of H + W·H: {t_d:.2f} s; ratio {ratio:.2f}x (target <= 3x; medians of {args.repeats})"
        )


if __name__ == "__main__":
    main()
