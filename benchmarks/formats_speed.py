"""qlearn.formats against the libraries that define the formats: speed of the two hot paths.

Usage: python benchmarks/formats_speed.py [--repeats 11]

* cast of 16M float32 to FP8 E4M3 (``ql.formats.cast`` / ``encode``) versus ``ml_dtypes``' C++
  ``astype(float8_e4m3fn)``; qlearn runs with ``overflow="nonfinite"`` so both compute the same bits
  (checked before timing);
* GGUF Q4_0 quantization of 4M float32 (``ql.formats.gguf_quantize``) versus the ``gguf``
  package's numpy quantizer (``gguf.quants.quantize``), byte-identical (checked).

Each repeat runs qlearn and the peer in turn (alternating, so drifting machine load hits both);
the table shows the median of each and the ratio qlearn time / peer time.
Targets: cast within 2x of ml_dtypes, Q4_0 no slower than gguf.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gguf
import ml_dtypes
import numpy as np

import qlearn as ql


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def alternate(ours: Callable[[], object], peer: Callable[[], object], repeats: int) -> tuple[float, float]:
    a, b = [], []
    ours(), peer()  # warm up
    for _ in range(repeats):
        a.append(_time(ours))
        b.append(_time(peer))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    x = (rng.standard_normal(16_000_000) * 100).astype(np.float32)
    fmt = ql.formats.E4M3
    if not np.array_equal(
        ql.formats.encode(x, fmt, overflow="nonfinite"), x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    ):
        raise SystemExit("qlearn and ml_dtypes disagree on E4M3: not timing")
    rows = [
        (
            "cast to E4M3, 16M float32",
            "ml_dtypes astype",
            *alternate(
                lambda: ql.formats.cast(x, fmt, overflow="nonfinite"),
                lambda: x.astype(ml_dtypes.float8_e4m3fn),
                args.repeats,
            ),
        ),
        (
            "encode to E4M3 codes, 16M float32",
            "ml_dtypes astype",
            *alternate(
                lambda: ql.formats.encode(x, fmt, overflow="nonfinite"),
                lambda: x.astype(ml_dtypes.float8_e4m3fn),
                args.repeats,
            ),
        ),
    ]
    w = rng.standard_normal((1024, 4096)).astype(np.float32)
    qt = gguf.GGMLQuantizationType.Q4_0
    if not np.array_equal(ql.formats.gguf_quantize(w, "Q4_0"), gguf.quants.quantize(w, qt)):
        raise SystemExit("qlearn and gguf disagree on Q4_0: not timing")
    rows.append(
        (
            "GGUF Q4_0 quantize, 4M float32",
            "gguf.quants.quantize",
            *alternate(lambda: ql.formats.gguf_quantize(w, "Q4_0"), lambda: gguf.quants.quantize(w, qt), args.repeats),
        )
    )

    print("| operation | peer | qlearn (ms) | peer (ms) | ratio |")
    print("|---|---|---|---|---|")
    for name, peer, ours_t, peer_t in rows:
        print(f"| {name} | {peer} | {ours_t * 1e3:.1f} | {peer_t * 1e3:.1f} | {ours_t / peer_t:.2f} |")


if __name__ == "__main__":
    main()
