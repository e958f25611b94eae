"""When PTQ is not enough: PTQ, AdaRound and QAT (STE, LSQ) on the digits MLP at 2-3 bits.

Usage: python benchmarks/qat.py [--seed 0] [--epochs 15]

Trains the float model with batch norm (seeded), folds the batch norm, and quantizes it
four ways per scheme, every one converted to an integer-only model by ``ptq.convert``:
``ptq`` (per-channel min-max weights, MSE-calibrated activations), ``ptq-mse`` (MSE-optimal
per-channel weight ranges, rounded to nearest), ``adaround`` (the same ranges, learned
rounding), ``qat-ste`` (clipped STE, observers
frozen after 2 epochs) and ``qat-lsq`` (learned steps), both initialised from ``ptq``.
Accuracy on the test split; each method against ptq by an exact McNemar test on the same
test images. Targets: at w2a4 QAT within 3 points of fp32, AdaRound above PTQ.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

import qlearn as ql
from qlearn import nn, ptq, rescue
from qlearn.observers import MinMaxObserver, MSEObserver

SCHEMES = [("w2a4", 2, 4), ("w3a3", 3, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    start = time.perf_counter()

    d = ql.datasets.load_digits_splits(seed=args.seed)
    model = nn.fit(nn.MLP([64, 64, 64, 10], seed=args.seed, batch_norm=True), d.X_train, d.y_train, seed=args.seed)
    folded = rescue.fold_batch_norm(model)
    fp32_correct = folded.predict(d.X_test) == d.y_test
    fp32 = fp32_correct.mean()
    batches = np.array_split(d.X_calibration, 4)

    print(f"digits: {len(d.y_train)} train / {len(d.y_calibration)} calibration / {len(d.y_test)} test; "
          "MLP 64-64-64-10 with batch norm (folded)\n")  # fmt: skip
    print("| scheme | method | accuracy (%) | vs fp32 (points) |")
    print("|---|---|---:|---:|")
    print(f"| fp32 | - | {100 * fp32:.1f} | 0.0 |")
    paired = []
    for name, w_bits, a_bits in SCHEMES:
        w_obs = partial(MinMaxObserver, bits=w_bits, symmetric=True, axis=1)
        a_obs = partial(MSEObserver, bits=a_bits)
        prepared = ptq.calibrate(ptq.prepare(folded, w_obs, a_obs), batches)
        a_qps = [o.compute_qparams() for o in prepared.activation_observers]
        results = {"ptq": ptq.convert(prepared)}

        w_qps = [rescue.mse_weight_qparams(layer.W, w_bits) for layer in folded.layers if isinstance(layer, nn.Linear)]
        results["ptq-mse"] = ptq.convert(rescue.prepared_from_qparams(folded, w_qps, a_qps))  # AdaRound's own share
        rounded = rescue.adaround(folded, w_qps, d.X_calibration)
        results["adaround"] = ptq.convert(rescue.prepared_from_qparams(rounded, w_qps, a_qps))

        for method, kind in (("qat-ste", "ste"), ("qat-lsq", "lsq")):
            qat = rescue.QATMLP(prepared, method=kind)
            trained = rescue.qat_fit(qat, d.X_train, d.y_train, epochs=args.epochs, lr=0.01, seed=args.seed)
            results[method] = trained.convert()

        ptq_correct = results["ptq"].predict(d.X_test) == d.y_test
        for method, q in results.items():
            correct = q.predict(d.X_test) == d.y_test
            acc = correct.mean()
            print(f"| {name} | {method} | {100 * acc:.1f} | {100 * (acc - fp32):+.1f} |")
            if method != "ptq":
                for ref, ref_correct in (("ptq", ptq_correct), ("fp32", fp32_correct)):
                    mc = ql.stats.mcnemar(ref_correct, correct)
                    paired.append(f"| {name} | {method} vs {ref} | {mc.n01} | {mc.n10} | {mc.p_value:.2g} |")
    print("\nPaired exact McNemar tests on the same test images (n01: the reference wrong and the method right;")
    print("n10: the reverse):\n")
    print("| scheme | comparison | n01 | n10 | p-value |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(paired))
    print(f"\n(total {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
