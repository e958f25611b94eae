"""Post-training quantization of the digits MLP: accuracy and size by scheme.

Usage: python benchmarks/ptq_accuracy.py [--seed 0]

Trains the float model (seeded), calibrates on the calibration split, converts to an
integer-only model and evaluates on the test split. Prints a markdown table. Targets:
W8A8 within 0.5 points of FP32, W4A8 per-channel within 3 points.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

import qlearn as ql
from qlearn import nn, ptq
from qlearn.observers import EntropyObserver, MinMaxObserver, MSEObserver, PercentileObserver

ACTIVATION_OBSERVERS = {
    "min-max": MinMaxObserver,
    "percentile 99.99": PercentileObserver,
    "MSE": MSEObserver,
    "entropy": EntropyObserver,
}

# (name, weight bits, per-channel, activation bits)
SCHEMES = [
    ("w8a8", 8, False, 8),
    ("w8a8-per-channel", 8, True, 8),
    ("w4a8-per-channel", 4, True, 8),
    ("w4a4", 4, False, 4),
    ("w4a4-per-channel", 4, True, 4),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    d = ql.datasets.load_digits_splits(seed=args.seed)
    model = nn.fit(nn.MLP([64, 64, 10], seed=args.seed), d.X_train, d.y_train, seed=args.seed)
    fp32 = model.accuracy(d.X_test, d.y_test)
    batches = np.array_split(d.X_calibration, 4)

    print(f"digits: {len(d.y_train)} train / {len(d.y_calibration)} calibration / {len(d.y_test)} test; MLP 64-64-10\n")
    print(
        "| scheme | activations calibrated by | accuracy (%) | vs fp32 (points) | int = simulated (%) | size (bytes) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    print(f"| fp32 | - | {100 * fp32:.1f} | 0.0 | - | {ptq.float_size_bytes(model):,} |")
    for name, w_bits, per_channel, a_bits in SCHEMES:
        for method, observer in ACTIVATION_OBSERVERS.items():
            w_obs = partial(MinMaxObserver, bits=w_bits, symmetric=True, axis=1 if per_channel else None)
            prepared = ptq.prepare(model, w_obs, partial(observer, bits=a_bits))
            q = ptq.convert(ptq.calibrate(prepared, batches))
            acc = q.accuracy(d.X_test, d.y_test)
            codes = q.forward_codes(d.X_test)
            simulated = ql.quantize(q.simulate(d.X_test), q.activation_qparams[-1])
            same = np.mean(np.all(codes == simulated, axis=1))
            print(
                f"| {name} | {method} | {100 * acc:.1f} | {100 * (acc - fp32):+.1f} | {100 * same:.1f} "
                f"| {q.size_bytes():,} |"
            )
    print(
        "\nEntropy calibration is symmetric (TensorRT's procedure on |x|). At 4 bits it fails here: the input"
        "\npixels take only 17 distinct values, and on so spiky a histogram the KL search clips the input"
        "\nlayer at 0.063 (of 1.0). See the chapter on post-training quantization."
    )
    print(f"\n(total {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
