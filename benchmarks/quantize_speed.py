"""Per-tensor int8 quantize / dequantize of 16M float32 values: qlearn versus PyTorch and plain numpy.

Usage: python benchmarks/quantize_speed.py [--n 16000000] [--repeats 15]

qlearn and PyTorch run in turn inside each repeat (alternating, so drifting machine load
hits both alike); the table shows the median time of each and its ratio to PyTorch.
Plain numpy, the baseline, is timed in a separate phase: its 64 MB temporaries evict the
caches and fragment the allocator for whatever runs after it (measured: qlearn 11 ms
alone, 17 ms when interleaved with it).
PyTorch (torch.quantize_per_tensor / Tensor.dequantize, using all cores) is optional:
`pip install torch==2.13.0`.

OMP_WAIT_POLICY=PASSIVE is set before torch is imported: by default PyTorch's OpenMP
threads keep spinning on every core after each call, which slows whatever runs next in
the process (qlearn's threads measured 60 % slower). Passive waiting does not slow torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import warnings
from collections.abc import Callable

import numpy as np

import qlearn as ql
from qlearn import primitives


def pass_breakdown(x: np.ndarray, qp: ql.QParams, repeats: int) -> None:
    """Time each pass of quantize's "divide" kernel on its own, over all of ``x``.

    Every pass goes through the kernel's own blocking (``primitives._map_blocks``: blocks of
    ``_BLOCK`` values, the same thread count, one cache-resident float32 work buffer per thread),
    so the sum of the rows is what the kernel spends, pass by pass. The floor is one read of
    ``x`` and one write of the uint8 codes (``np.copyto`` with a cast) under the same blocking.
    """
    n, scale_c, zp_c = x.size, qp.scale.astype(np.float32)[()], qp.zero_point.astype(np.float32)[()]
    y = np.clip(np.rint(x[: primitives._BLOCK] / scale_c) + zp_c, qp.qmin, qp.qmax).astype(np.float32)
    out8, local = np.empty(n, np.uint8), threading.local()

    def work() -> np.ndarray:  # a per-thread buffer of valid (in-range) values, as the kernel has
        if not hasattr(local, "w"):
            local.w = y.copy()
        w: np.ndarray = local.w
        return w

    def sized(sl: slice) -> np.ndarray:
        return work()[: sl.stop - sl.start]

    passes: dict[str, Callable[[slice, object], object]] = {
        "divide (read x)": lambda sl, _: np.divide(x[sl], scale_c, out=sized(sl)),
        "rint": lambda sl, _: np.rint(sized(sl), out=sized(sl)),
        "+ z": lambda sl, _: np.add(sized(sl), zp_c, out=sized(sl)),
        "min": lambda sl, _: sized(sl).min(),
        "max": lambda sl, _: sized(sl).max(),
        "cast (write q)": lambda sl, _: out8.__setitem__(sl, sized(sl)),
    }
    floor = {"floor: read x + write q": lambda sl, _: np.copyto(out8[sl], x[sl], casting="unsafe")}
    every = {**passes, **floor, "quantize (whole kernel)": None}
    times: dict[str, list[float]] = {k: [] for k in every}
    for _ in range(repeats):  # alternating: one run of every row per repeat
        for name, kern in every.items():
            t0 = time.perf_counter()
            if kern is None:
                ql.quantize(x, qp)
            else:
                primitives._map_blocks(kern, n, True, np.float32)  # type: ignore[arg-type]
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    total = sum(med[k] for k in passes)
    floor_t = med["floor: read x + write q"]
    print(
        f"\nPer-pass breakdown of quantize (method 'divide'), blocks of {primitives._BLOCK:,} values, "
        f"{primitives._THREADS} threads, median of {repeats} alternating runs\n"
    )
    print("| pass                    | median (ms) | ratio to floor |")
    print("|-------------------------|-------------|----------------|")
    for k in [*passes, "sum of passes", *floor, "quantize (whole kernel)"]:
        t = total if k == "sum of passes" else med[k]
        print(f"| {k:<23} | {t * 1e3:11.2f} | {t / floor_t:13.2f}x |")


def naive_quantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)


def naive_dequantize(q: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return ((q.astype(np.float32) - zp) * np.float32(scale)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    x = (np.random.default_rng(0).standard_normal(args.n) * 2).astype(np.float32)
    qp = ql.choose_qparams(x, bits=8)  # quint8 affine
    scale, zp = qp.scale.item(), int(qp.zero_point)
    q = ql.quantize(x, qp)

    out8, out32 = np.empty(args.n, np.uint8), np.empty(args.n, np.float32)
    cases: dict[str, dict[str, Callable[[], object]]] = {
        "quantize": {
            "qlearn": lambda: ql.quantize(x, qp),
            "numpy (naive)": lambda: naive_quantize(x, scale, zp),
            # the memory-bandwidth floor of quantize: read 4 B and write 1 B per value, nothing else
            "floor: cast": lambda: np.copyto(out8, x, casting="unsafe"),
        },
        "dequantize": {
            "qlearn": lambda: ql.dequantize(q, qp),
            "numpy (naive)": lambda: naive_dequantize(q, scale, zp),
            # the floor of dequantize: read 1 B and write 4 B per value
            "floor: cast": lambda: np.copyto(out32, q, casting="unsafe"),
        },
    }
    try:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        warnings.simplefilter("ignore")  # torch's deprecation notice for quantized tensors
        xt = torch.from_numpy(x)
        qt = torch.quantize_per_tensor(xt, scale, zp, torch.quint8)
        assert np.array_equal(qt.int_repr().numpy(), ql.quantize(x, qp, method="fma")), "codes differ from torch"
        cases["quantize"]["torch"] = lambda: torch.quantize_per_tensor(xt, scale, zp, torch.quint8)
        cases["dequantize"]["torch"] = lambda: qt.dequantize()
        peer = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        peer = None

    times: dict[tuple[str, str], list[float]] = {(op, who): [] for op, d in cases.items() for who in d}
    phases = [[w for w in cases["quantize"] if w != "numpy (naive)"], ["numpy (naive)"]]  # floor alternates too
    for phase in phases:
        for _ in range(args.repeats):
            for op, contenders in cases.items():
                for who in phase:
                    t0 = time.perf_counter()
                    contenders[who]()
                    times[(op, who)].append(time.perf_counter() - t0)

    print(f"{args.n:,} float32 values, per-tensor uint8, median of {args.repeats} alternating runs")
    print(f"numpy {np.__version__}; peer: {peer or 'torch not installed'}\n")
    for who in cases["quantize"]:  # the round trip: quantize then dequantize, run by run
        times[("round trip", who)] = [
            a + b for a, b in zip(times[("quantize", who)], times[("dequantize", who)], strict=True)
        ]
    print("floor: cast = np.copyto with a dtype cast, single-threaded: one read and one write of the data")
    print("(the traffic any quantize / dequantize must do); ratio = median / torch's median\n")
    print(f"| operation  | {'contender':<14} | median (ms) | ratio to torch |")
    print("|------------|----------------|-------------|----------------|")
    for op in ("quantize", "dequantize", "round trip"):
        ref = statistics.median(times[(op, "torch")]) if peer else None
        for who in cases["quantize"]:
            med = statistics.median(times[(op, who)])
            ratio = f"{med / ref:.2f}x" if ref else "n/a"
            print(f"| {op:<10} | {who:<14} | {med * 1e3:11.1f} | {ratio:>14} |")
    pass_breakdown(x, qp, args.repeats)


if __name__ == "__main__":
    main()
