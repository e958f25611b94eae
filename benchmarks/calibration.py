"""Calibration (range-observer) speed and thresholds: qlearn versus its peers.

Usage: python benchmarks/calibration.py [--n 4000000] [--repeats 3]

Times every qlearn observer (observe all batches + compute_range) on n float32 values
drawn from a normal and from |t3| (Student t, 3 degrees of freedom, absolute value), fed
as one batch and as 8 batches. When installed, the peers run on the same data in the
same process, and the table puts their threshold (the upper end of the range) and time
beside qlearn's:
  - PyTorch: MinMaxObserver, MovingAverageMinMaxObserver, HistogramObserver;
  - ONNX Runtime: HistogramCollector (entropy and percentile, 2048 bins);
  - NVIDIA modelopt: HistogramCalibrator (entropy, mse, percentile; 2048 bins).
Install the peers with `pip install torch==2.13.0 onnxruntime onnx nvidia-modelopt`.
Times are medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np

from qlearn import observers as O

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/quantize_speed.py
warnings.simplefilter("ignore")


def timed(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(result, median seconds); prints of the peers are swallowed."""
    times, result = [], float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def qlearn_cases(batches: list[np.ndarray]) -> dict[str, Callable[[], float]]:
    def run(make: Callable[[], O._Observer]) -> Callable[[], float]:
        def go() -> float:
            o = make()
            for b in batches:
                o.observe(b)
            return float(o.compute_range()[1])

        return go

    return {
        "min-max": run(lambda: O.MinMaxObserver()),
        "moving-average min-max": run(lambda: O.MovingAverageMinMaxObserver()),
        "percentile 99.99 (|x|)": run(lambda: O.PercentileObserver(99.99, symmetric=True)),
        "percentile 99.99 (two tails, ONNX Runtime's cut)": run(lambda: O.PercentileObserver(99.99)),
        "MSE (symmetric)": run(lambda: O.MSEObserver(symmetric=True)),
        "entropy (KL, 2048 bins)": run(lambda: O.EntropyObserver(bins=2048)),
    }


def peer_cases(batches: list[np.ndarray]) -> dict[str, dict[str, Callable[[], float]]]:
    peers: dict[str, dict[str, Callable[[], float]]] = {}
    try:
        import torch
        from torch.ao.quantization import HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver

        tb = [torch.from_numpy(b) for b in batches]

        def torch_run(make: Callable[[], object]) -> Callable[[], float]:
            def go() -> float:
                o = make()
                for b in tb:
                    o(b)  # type: ignore[operator]
                return float(o.max_val)  # type: ignore[attr-defined]

            return go

        def torch_hist() -> float:
            o = HistogramObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
            for b in tb:
                o(b)
            scale, _ = o.calculate_qparams()
            return float(scale) * 127.5

        peers["min-max"] = {"torch MinMaxObserver": torch_run(MinMaxObserver)}
        peers["moving-average min-max"] = {"torch MovingAverageMinMaxObserver": torch_run(MovingAverageMinMaxObserver)}
        peers["MSE (symmetric)"] = {"torch HistogramObserver": torch_hist}
    except ImportError:
        pass
    try:
        from onnxruntime.quantization.calibrate import HistogramCollector

        def ort(method: str, symmetric: bool = True) -> Callable[[], float]:
            def go() -> float:
                c = HistogramCollector(method, symmetric, 2048, 128, 99.99, "same")
                for b in batches:
                    c.collect({"x": b})
                return float(c.compute_collection_result()["x"][1])

            return go

        peers.setdefault("entropy (KL, 2048 bins)", {})["onnxruntime HistogramCollector"] = ort("entropy")
        peers.setdefault("percentile 99.99 (|x|)", {})["onnxruntime HistogramCollector"] = ort("percentile")
        peers.setdefault("percentile 99.99 (two tails, ONNX Runtime's cut)", {})["onnxruntime HistogramCollector"] = (
            ort("percentile", symmetric=False)
        )
    except ImportError:
        pass
    try:
        import torch
        from modelopt.torch.quantization.calib.histogram import HistogramCalibrator

        def mo(method: str) -> Callable[[], float]:
            def go() -> float:
                c = HistogramCalibrator(num_bits=8, num_bins=2048)
                for b in batches:
                    c.collect(torch.from_numpy(b))
                return float(c.compute_amax(method))

            return go

        peers.setdefault("entropy (KL, 2048 bins)", {})["modelopt HistogramCalibrator"] = mo("entropy")
        peers.setdefault("MSE (symmetric)", {})["modelopt HistogramCalibrator"] = mo("mse")
        peers.setdefault("percentile 99.99 (|x|)", {})["modelopt HistogramCalibrator"] = mo("percentile")
    except ImportError:
        pass
    return peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = {
        "normal": rng.standard_normal(args.n).astype(np.float32),
        "|t3|": np.abs(rng.standard_t(3, args.n)).astype(np.float32),
    }
    print(f"{args.n:,} float32 values; threshold = upper end of the range; median of {args.repeats} runs")
    try:
        import modelopt  # noqa: F401

        print()
    except ImportError:
        print("NVIDIA modelopt is not installed: its rows were not measured\n")
    print("| data | batches | method | contender | threshold | time (s) | time / qlearn | threshold / qlearn |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for name, x in data.items():
        for n_batches in (1, 8):
            batches = np.array_split(x, n_batches)
            peers = peer_cases(batches)
            for method, fn in qlearn_cases(batches).items():
                ours, t_ours = timed(fn, args.repeats)
                print(f"| {name} | {n_batches} | {method} | qlearn | {ours:.4f} | {t_ours:.3f} | 1.0 | 1.000 |")
                for who, peer in peers.get(method, {}).items():
                    theirs, t = timed(peer, args.repeats)
                    print(
                        f"| {name} | {n_batches} | {method} | {who} | {theirs:.4f} | {t:.3f} "
                        f"| {t / t_ours:.1f} | {theirs / ours:.3f} |"
                    )


if __name__ == "__main__":
    main()
