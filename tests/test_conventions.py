"""The appendix book/conventions.md, row by row: every row of its table is a test.

The module reads the table from the page. For each row it evaluates the ``qlearn`` call
written in the row, checks the integer range against the row's "codes" column, and checks
scale and zero point against the framework's formula, computed here independently with the
framework's own arithmetic (float32 or float64, ties to even or away from zero). The
"agreement" column says how close the match must be. Where the peer is installed (PyTorch,
ONNX Runtime) the row is also checked against the peer itself.

A row added to the page without an entry in ``SPECS`` fails ``test_every_row_has_a_spec``;
an entry whose row was removed fails it too.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from oracles import require

import qlearn as ql
from qlearn.observers import EntropyObserver, MinMaxObserver, PercentileObserver

PAGE = Path(__file__).resolve().parent.parent / "book" / "conventions.md"
HEADER = ["id", "framework, tensor", "codes with", "agreement", "codes", "scale $s$", "zero point $z$", "`qlearn` call"]
AGREEMENTS = {"exact": "exact", "1 ulp": "ulp", "ties": "ties"}  # phrase in the cell -> kind of check
F32, F64 = np.float32, np.float64
EPS = F32(np.finfo(np.float32).eps)  # PyTorch's observers: the smallest scale

# ---------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class Row:
    id: str
    codes: tuple[int, int]
    call: str
    method: str | None
    agreement: str


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(lines: list[str]) -> list[tuple[list[str], list[dict[str, str]]]]:
    """Every table whose first column is headed ``id``: its header and its rows as dicts."""
    found = []
    for start, line in enumerate(lines):
        if not re.match(r"^\|\s*id\s*\|", line):
            continue
        header, rows = _cells(line), []
        for row_line in lines[start + 2 :]:  # skip the |---| line
            if not row_line.startswith("|"):
                break
            cells = _cells(row_line)
            if len(cells) != len(header):
                raise ValueError(f"row has {len(cells)} cells, the header {len(header)}: {row_line}")
            rows.append(dict(zip(header, cells, strict=True)))
        found.append((header, rows))
    return found


def read_table(text: str) -> tuple[list[str], list[Row]]:
    """The joined header and rows of the tables whose first column is headed ``id``.

    The page splits one wide table into narrower ones that all list the same ids in the
    same order; their columns are joined by id.
    """
    tables = _tables(text.splitlines())
    if not tables:
        raise ValueError(f"{PAGE.name} has no table with an 'id' column")
    ids = [[r["id"] for r in rows] for _, rows in tables]
    if any(i != ids[0] for i in ids):
        raise ValueError(f"the id tables must list the same ids in the same order; got {ids}")
    header = ["id"] + [col for h, _ in tables for col in h[1:]]
    rows = []
    for k, row_id in enumerate(ids[0]):
        cell = {col: val for _, trows in tables for col, val in trows[k].items()}
        line = " | ".join(cell.values())
        codes = re.search(r"\[\s*([−-]?\d+)\s*,\s*([−-]?\d+)\s*\]", cell.get("codes", ""))
        call = re.search(r"`([^`]+)`", cell.get("`qlearn` call", ""))
        method = re.search(r'"(\w+)"', cell.get("codes with", ""))
        kinds = [kind for phrase, kind in AGREEMENTS.items() if phrase in cell.get("agreement", "")]
        if codes is None or call is None or len(kinds) != 1:
            raise ValueError(f"cannot read the codes, call or agreement of: {line}")
        rows.append(
            Row(
                id=row_id.strip("`"),
                codes=(int(codes[1].replace("−", "-")), int(codes[2].replace("−", "-"))),
                call=call[1],
                method=method[1] if method else None,
                agreement=kinds[0],
            )
        )
    return header, rows


TABLE_HEADER, ROWS = read_table(PAGE.read_text(encoding="utf-8"))
ROW_BY_ID = {row.id: row for row in ROWS}


# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Data:
    x: np.ndarray  # activations, float32, (n,)
    w: np.ndarray  # weights, float32, (out=8, ...): channel axis 0
    amax: float  # a calibrated clipping value for x, below max|x|


def make_data(rng: np.random.Generator, n: int, w_shape: tuple[int, ...]) -> Data:
    x = (rng.standard_normal(n) * rng.uniform(0.05, 5.0) + rng.uniform(-1.0, 2.0)).astype(np.float32)
    spread = rng.uniform(0.01, 0.5, size=(w_shape[0],) + (1,) * (len(w_shape) - 1))  # one size per channel
    w = (rng.standard_normal(w_shape) * spread).astype(np.float32)
    return Data(x=x, w=w, amax=float(F32(0.8) * np.abs(x).max()))


def near_ties(rng: np.random.Generator, s: float, lo: float, hi: float, n: int = 200) -> np.ndarray:
    """Float32 values at and next to (m + 1/2) s, strictly inside (lo, hi): where the methods disagree."""
    first, last = int(np.ceil(lo / s)), int(np.floor(hi / s)) - 1
    m = rng.integers(first, max(last, first + 1), size=n)
    t = ((m + 0.5) * s).astype(F32)  # (n,)
    up, down = np.nextafter(t, F32(np.inf)), np.nextafter(t, F32(-np.inf))
    near = np.concatenate([t, up, down, np.nextafter(up, F32(np.inf)), np.nextafter(down, F32(-np.inf))])
    return np.clip(near, np.nextafter(F32(lo), F32(np.inf)), np.nextafter(F32(hi), F32(-np.inf)))


def with_near_ties(rng: np.random.Generator, d: Data) -> Data:
    """``d`` plus values next to half-integer multiples of every row's scale, ranges unchanged.

    Random data hold such values for only about one in 10^5 (and fewer still where "fma" and
    "mul_add" differ), so without them a wrong method in the "codes with" column could pass.
    """
    rows = [row for row in ROWS if row.method is not None and row.id in SPECS]
    x_rows = [r for r in rows if SPECS[r.id].tensor == "x"]
    x_lo, x_hi = float(d.x.min()), float(d.x.max())
    x = np.concatenate([d.x, *[near_ties(rng, float(run_call(r, d).scale), x_lo, x_hi) for r in x_rows]])
    w_rows = [r for r in rows if SPECS[r.id].tensor == "w"]
    lo, hi = channel_range(d.w)
    w_ties = []  # per channel c: ties for every w row's scale of channel c (or of the tensor)
    for c in range(d.w.shape[0]):
        scales = [np.broadcast_to(run_call(r, d).scale, lo.shape)[c] for r in w_rows]
        w_ties.append(np.concatenate([near_ties(rng, float(sc), float(lo[c]), float(hi[c])) for sc in scales]))
    w = np.concatenate([np.stack(w_ties), d.w.reshape(d.w.shape[0], -1)], axis=1)  # (C, ties + rest)
    return Data(x=x, w=w, amax=d.amax)


@pytest.fixture
def datasets(rng: np.random.Generator) -> list[Data]:
    # many small tensors for the parameters, and a large one that also holds near-ties for the codes
    small = [make_data(rng, 2048, (8, 3, 3, 3)) for _ in range(24)]
    return [*small, with_near_ties(rng, make_data(rng, 100_000, (8, 5_000)))]


def run_call(row: Row, d: Data) -> ql.QParams:
    if not row.call.startswith("ql."):
        raise ValueError(f"the qlearn call of row {row.id} must start with 'ql.'; got {row.call!r}")
    return eval(row.call, {"__builtins__": {}}, {"ql": ql, "x": d.x, "w": d.w, "amax": d.amax})


# ---------------------------------------------------------------------------- the frameworks' formulas


@dataclass(frozen=True)
class Ref:
    """Scale, zero point and range as the framework computes them."""

    scale: np.ndarray  # float32, () or (C,)
    zero_point: np.ndarray  # int, same shape
    qmin: int
    qmax: int
    tie: np.ndarray | None = None  # where the zero point's rounding met an exact half (ties rows)


def tensor_range(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(x.min(), dtype=F32), np.asarray(x.max(), dtype=F32)


def channel_range(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = w.reshape(w.shape[0], -1)  # (C, rest): channel axis 0
    return flat.min(axis=1).astype(F32), flat.max(axis=1).astype(F32)


def widen(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.minimum(lo, F32(0)), np.maximum(hi, F32(0))


def torch_affine(lo, hi, qmin: int, qmax: int) -> Ref:
    # observer._calculate_qparams, affine branch: float32 throughout, torch.round = ties to even
    lo, hi = widen(lo, hi)
    s = np.maximum((hi - lo) / F32(qmax - qmin), EPS)
    z = np.clip(qmin - np.rint(lo / s), qmin, qmax)
    return Ref(s, z.astype(np.int64), qmin, qmax)


def torch_symmetric(lo, hi, qmin: int, qmax: int, zp: int) -> Ref:
    # symmetric branch: max(-min', max') / ((qmax - qmin) / 2), float32
    lo, hi = widen(lo, hi)
    s = np.maximum(np.maximum(-lo, hi) / F32((qmax - qmin) / 2), EPS)
    return Ref(s, np.full(s.shape, zp, dtype=np.int64), qmin, qmax)


def ort_minmax(lo, hi, qmin: int, qmax: int, symmetric: bool) -> Ref:
    # quant_utils.compute_scale_zp (onnxruntime 1.32): range widened in float32, then float64 arithmetic
    lo, hi = widen(lo, hi)
    if symmetric:
        a = np.maximum(np.abs(lo), np.abs(hi))
        lo, hi = -a, a
    s64 = (hi.astype(F64) - lo.astype(F64)) / (F64(qmax) - F64(qmin))
    if symmetric:
        z = np.full(s64.shape, np.round((qmin + qmax) / 2.0))
    else:
        z = np.round(qmin - lo.astype(F64) / s64)  # numpy round: ties to even, with the float64 scale
    tiny = s64 < np.finfo(F32).tiny
    s = np.where(tiny, F32(1), s64.astype(F32)).astype(F32)
    return Ref(s, np.where(tiny, 0, z).astype(np.int64), qmin, qmax)


def ort_dynamic(lo, hi) -> Ref:
    # core/util/qmath.h GetQuantizationParameter (DynamicQuantizeLinear): float32, clamp then ties to even
    lo, hi = widen(lo, hi)
    s = np.where(hi == lo, F32(1), (hi - lo) / F32(255)).astype(F32)
    z = np.rint(np.clip(F32(0) - lo / s, F32(0), F32(255)))
    return Ref(s, z.astype(np.int64), 0, 255)


def round_away(u: np.ndarray) -> np.ndarray:
    """C's std::round: nearest integer, halves away from zero."""
    return np.sign(u) * np.floor(np.abs(u) + 0.5)


def tflite_asymmetric(lo, hi) -> Ref:
    # tools/optimize GetAsymmetricQuantizationParams with [-128, 127]: float32, clamp, std::round
    lo, hi = widen(lo, hi)
    qmin_f, qmax_f = F32(-128), F32(127)
    s = (hi - lo) / (qmax_f - qmin_f)
    z_f = np.where(s != 0, qmin_f - lo / np.where(s != 0, s, F32(1)), qmin_f).astype(F32)
    z = np.where(z_f < qmin_f, -128, np.where(z_f > qmax_f, 127, round_away(z_f)))
    return Ref(s, z.astype(np.int64), -128, 127, tie=(z_f - np.floor(z_f)) == F32(0.5))


def symmetric_127(lo, hi, qmin: int) -> Ref:
    # TFLite (GetSymmetricScalesFromMaxMin) and TensorRT (weights): max(|min|, |max|) / 127 in float32
    s = np.maximum(np.abs(lo), np.abs(hi)) / F32(127)
    return Ref(s.astype(F32), np.zeros(s.shape, dtype=np.int64), qmin, 127)


# ---------------------------------------------------------------------------- codes, as each framework computes them


def clamp(q: np.ndarray, qp: ql.QParams) -> np.ndarray:
    return np.clip(q, qp.qmin, qp.qmax).astype(np.int64)


def codes_fma(x: np.ndarray, qp: ql.QParams) -> np.ndarray:
    # FBGEMM's per-tensor quantize: fmadd(x, 1/s, z) in float32 (one rounding), then ties to even.
    # A float32 product is exact in float64, so one float64 sum rounded to float32 is the fused op.
    inv = F32(1) / qp.scale
    return clamp(np.rint((x.astype(F64) * F64(inv) + F64(qp.zero_point)).astype(F32)), qp)


def codes_mul_add(x: np.ndarray, qp: ql.QParams) -> np.ndarray:
    # PyTorch's per-channel quantize: product rounded to float32, sum rounded to float32, ties to even
    shape = (-1,) + (1,) * (x.ndim - 1)  # (C,) -> (C, 1, ..., 1) for channel axis 0
    inv = (F32(1) / qp.scale).reshape(shape)
    zp = qp.zero_point.astype(F32).reshape(shape)
    return clamp(np.rint((x * inv).astype(F32) + zp), qp)


def codes_divide(x: np.ndarray, qp: ql.QParams) -> np.ndarray:
    # ONNX QuantizeLinear and ORT's quantize_nparray: round(x / s) + z, float32 division, ties to even;
    # TensorRT's documented round(clip(x / s, -128, 127)) is the same for z = 0
    shape = (-1,) + (1,) * (x.ndim - 1) if qp.scale.ndim else ()
    s, zp = qp.scale.reshape(shape), qp.zero_point.reshape(shape)
    return clamp(np.rint(x.astype(F32) / s) + zp, qp)


# ---------------------------------------------------------------------------- one spec per row id


@dataclass(frozen=True)
class Spec:
    ref: Callable[[Data], Ref]
    tensor: str  # "x" or "w": what the row's codes are computed from
    codes: Callable[[np.ndarray, ql.QParams], np.ndarray] | None = None


def _x(d: Data):
    return tensor_range(d.x)


def _w(d: Data):
    return tensor_range(d.w)


def _wc(d: Data):
    return channel_range(d.w)


SPECS: dict[str, Spec] = {
    "pt-tensor-quint8-affine": Spec(lambda d: torch_affine(*_x(d), 0, 255), "x", codes_fma),
    "pt-tensor-qint8-affine": Spec(lambda d: torch_affine(*_x(d), -128, 127), "x", codes_fma),
    "pt-tensor-qint8-symmetric": Spec(lambda d: torch_symmetric(*_x(d), -128, 127, 0), "x", codes_fma),
    "pt-tensor-quint8-symmetric": Spec(lambda d: torch_symmetric(*_x(d), 0, 255, 128), "x", codes_fma),
    "pt-tensor-qint8-narrow": Spec(lambda d: torch_symmetric(*_x(d), -127, 127, 0), "x", codes_fma),
    "pt-tensor-quint8-reduce-range": Spec(lambda d: torch_affine(*_x(d), 0, 127), "x", codes_fma),
    "pt-channel-qint8-symmetric": Spec(lambda d: torch_symmetric(*_wc(d), -128, 127, 0), "w", codes_mul_add),
    "pt-channel-quint8-affine": Spec(lambda d: torch_affine(*_wc(d), 0, 255), "w", codes_mul_add),
    "ort-static-quint8": Spec(lambda d: ort_minmax(*_x(d), 0, 255, symmetric=False), "x", codes_divide),
    "ort-static-qint8": Spec(lambda d: ort_minmax(*_x(d), -128, 127, symmetric=False), "x", codes_divide),
    "ort-weight-qint8": Spec(lambda d: ort_minmax(*_w(d), -127, 127, symmetric=True), "w", codes_divide),
    "ort-weight-qint8-channel": Spec(lambda d: ort_minmax(*_wc(d), -127, 127, symmetric=True), "w", codes_divide),
    "ort-dynamic-uint8": Spec(lambda d: ort_dynamic(*_x(d)), "x", codes_divide),
    "trt-weight-int8": Spec(lambda d: symmetric_127(*_w(d), -128), "w", codes_divide),
    "trt-activation-int8": Spec(
        lambda d: symmetric_127(np.asarray(-d.amax, dtype=F32), np.asarray(d.amax, dtype=F32), -128), "x", codes_divide
    ),
    "tfl-activation-int8": Spec(lambda d: tflite_asymmetric(*_x(d)), "x"),
    "tfl-weight-int8-tensor": Spec(lambda d: symmetric_127(*_w(d), -127), "w"),
    "tfl-weight-int8-channel": Spec(lambda d: symmetric_127(*_wc(d), -127), "w"),
}


# ---------------------------------------------------------------------------- the page's structure


def test_table_header_is_the_one_the_tests_read():
    assert TABLE_HEADER == HEADER


def test_every_row_has_a_spec():
    ids = [row.id for row in ROWS]
    assert len(ids) == len(set(ids)), f"duplicate row ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert not set(ids) - SPECS.keys(), f"rows with no test (add them to SPECS): {sorted(set(ids) - SPECS.keys())}"
    assert not SPECS.keys() - set(ids), f"tests whose row is gone from the page: {sorted(SPECS.keys() - set(ids))}"


def test_a_method_is_given_exactly_where_the_codes_are_checked():
    for row in ROWS:
        spec = SPECS.get(row.id)
        if spec is not None:
            assert (row.method is None) == (spec.codes is None), row.id


def test_read_table_rejects_what_it_cannot_read():
    good = "| id | codes | `qlearn` call | codes with | agreement |\n|---|---|---|---|---|\n"
    _, rows = read_table(good + '| `r` | $[−127, 127]$ | `ql.qrange(8, True)` | `"divide"` | exact |\n')
    assert rows == [Row("r", (-127, 127), "ql.qrange(8, True)", "divide", "exact")]
    with pytest.raises(ValueError, match="cannot read"):
        read_table(good + "| `r` | $[0, 255]$ | no call here | — | exact |\n")
    with pytest.raises(ValueError, match="cells"):
        read_table(good + "| `r` | $[0, 255]$ |\n")
    with pytest.raises(ValueError, match="no table"):
        read_table("no table here")
    # split tables are joined by id, and must list the same ids
    split = (
        "| id | codes | agreement |\n|---|---|---|\n| `r` | $[0, 255]$ | exact |\n\ntext\n\n"
        '| id | `qlearn` call | codes with |\n|---|---|---|\n| `r` | `ql.qrange(8)` | `"fma"` |\n'
    )
    assert read_table(split)[1] == [Row("r", (0, 255), "ql.qrange(8)", "fma", "exact")]
    with pytest.raises(ValueError, match="same ids"):
        read_table(split.replace("| `r` | `ql", "| `s` | `ql"))


# ---------------------------------------------------------------------------- each row against its formula


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between positive float32 values."""
    return np.abs(a.astype(F32).view(np.int32).astype(np.int64) - b.astype(F32).view(np.int32).astype(np.int64))


def check_agreement(kind: str, qp: ql.QParams, ref: Ref, label: str) -> None:
    scale, zp = np.asarray(ref.scale, dtype=F32), np.asarray(ref.zero_point, dtype=np.int64)
    got_zp = qp.zero_point.astype(np.int64)
    assert qp.scale.shape == scale.shape, label
    if kind == "ulp":  # float64 arithmetic in the framework: the last bit of the scale may differ
        assert ulps(qp.scale, scale).max() <= 1, label
        assert np.abs(got_zp - zp).max() <= 1, label
        return
    np.testing.assert_array_equal(qp.scale, scale, err_msg=label)
    if kind == "ties" and ref.tie is not None:  # halves rounded away from zero: one code apart at a tie
        assert np.abs(got_zp - zp)[ref.tie].max(initial=0) <= 1, label
        np.testing.assert_array_equal(got_zp[~ref.tie], zp[~ref.tie], err_msg=label)
        return
    np.testing.assert_array_equal(got_zp, zp, err_msg=label)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_row_matches_its_formula(row: Row, datasets: list[Data]):
    spec = SPECS[row.id]
    for i, d in enumerate(datasets):
        qp = run_call(row, d)
        ref = spec.ref(d)
        assert (qp.qmin, qp.qmax) == row.codes == (ref.qmin, ref.qmax), row.id
        check_agreement(row.agreement, qp, ref, f"{row.id}, data set {i}")
        if row.method is not None:
            arr = getattr(d, spec.tensor)
            np.testing.assert_array_equal(ql.quantize(arr, qp, method=row.method), spec.codes(arr, qp), err_msg=row.id)


def test_the_near_ties_keep_every_range(rng: np.random.Generator):
    base = make_data(rng, 10_000, (8, 500))
    tied = with_near_ties(rng, base)
    assert tied.x.size > base.x.size and tied.w.shape[1] > 500
    for row in ROWS:
        assert run_call(row, tied) == run_call(row, base), row.id


def test_the_data_tell_the_methods_apart(datasets: list[Data]):
    # for every row with a method, each other method gives other codes somewhere in the data;
    # the exception is "fma" versus "mul_add" with all zero points 0, which are the same arithmetic
    d = datasets[-1]
    for row in ROWS:
        if row.method is None:
            continue
        qp, arr = run_call(row, d), getattr(d, SPECS[row.id].tensor)
        mine = ql.quantize(arr, qp, method=row.method)
        for other in {"divide", "fma", "mul_add"} - {row.method}:
            if not qp.zero_point.any() and {row.method, other} == {"fma", "mul_add"}:
                continue
            assert not np.array_equal(mine, ql.quantize(arr, qp, method=other)), (row.id, other)


def test_inputs_are_not_modified_by_the_calls(datasets: list[Data]):
    d = datasets[0]
    before = (d.x.copy(), d.w.copy())
    for row in ROWS:
        run_call(row, d)
    np.testing.assert_array_equal(d.x, before[0])
    np.testing.assert_array_equal(d.w, before[1])


# ---------------------------------------------------------------------------- PyTorch itself


def _torch():
    # torch.ao.quantization is deprecated (torch 2.13 warns it will be removed): in CI its
    # disappearance fails these tests instead of skipping them
    torch = require("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ao = require("torch.ao.quantization", "the PyTorch rows of the appendix are tested against it")
    return torch, ao


# row id -> (observer keyword arguments, per channel)
TORCH_OBSERVERS: dict[str, tuple[dict[str, Any], bool]] = {
    "pt-tensor-quint8-affine": ({}, False),
    "pt-tensor-qint8-affine": ({"dtype": "qint8"}, False),
    "pt-tensor-qint8-symmetric": ({"dtype": "qint8", "qscheme": "per_tensor_symmetric"}, False),
    "pt-tensor-quint8-symmetric": ({"qscheme": "per_tensor_symmetric"}, False),
    "pt-tensor-qint8-narrow": (
        {"dtype": "qint8", "qscheme": "per_tensor_symmetric", "quant_min": -127, "quant_max": 127},
        False,
    ),
    "pt-tensor-quint8-reduce-range": ({"reduce_range": True}, False),
    "pt-channel-qint8-symmetric": ({"dtype": "qint8", "qscheme": "per_channel_symmetric"}, True),
    "pt-channel-quint8-affine": ({}, True),
}


def test_every_pytorch_row_has_an_observer():
    assert {row.id for row in ROWS if row.id.startswith("pt-")} == TORCH_OBSERVERS.keys()


@pytest.mark.parametrize("row_id", sorted(TORCH_OBSERVERS))
def test_pytorch_rows_against_pytorch(row_id: str, datasets: list[Data]):
    torch, ao = _torch()
    row, spec = ROW_BY_ID[row_id], SPECS[row_id]
    kwargs, per_channel = TORCH_OBSERVERS[row_id]
    kwargs = {k: getattr(torch, v) if k in ("dtype", "qscheme") else v for k, v in kwargs.items()}
    dtype = kwargs.get("dtype", torch.quint8)
    for d in datasets:
        arr = getattr(d, spec.tensor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notices for quantized tensors
            obs = ao.PerChannelMinMaxObserver(ch_axis=0, **kwargs) if per_channel else ao.MinMaxObserver(**kwargs)
            obs(torch.from_numpy(arr))
            scale, zp = obs.calculate_qparams()
            if per_channel:
                tq = torch.quantize_per_channel(torch.from_numpy(arr), scale, zp, 0, dtype)
            else:
                tq = torch.quantize_per_tensor(torch.from_numpy(arr), scale.item(), int(zp.item()), dtype)
        qp = run_call(row, d)
        assert (qp.qmin, qp.qmax) == (obs.quant_min, obs.quant_max)
        np.testing.assert_array_equal(qp.scale, scale.numpy().astype(F32).reshape(qp.scale.shape))
        np.testing.assert_array_equal(qp.zero_point, zp.numpy().reshape(qp.zero_point.shape))
        np.testing.assert_array_equal(ql.quantize(arr, qp, method=row.method), tq.int_repr().numpy())


# ---------------------------------------------------------------------------- ONNX Runtime itself


def _ort_quant_utils():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return require("onnxruntime.quantization.quant_utils")


def _ort_static(qu, lo, hi, qtype: str, symmetric: bool):
    tp = getattr(qu.onnx_proto.TensorProto, qtype)
    qmin, qmax = qu.get_qmin_qmax_for_qType(tp, symmetric=symmetric)
    zs, ss = [], []
    for lo_c, hi_c in zip(np.atleast_1d(lo), np.atleast_1d(hi), strict=True):
        z, s = qu.compute_scale_zp(np.array(lo_c, dtype=F32), np.array(hi_c, dtype=F32), qmin, qmax, symmetric)
        zs.append(int(z))
        ss.append(F32(s))
    shape = np.shape(lo)
    return Ref(np.array(ss, dtype=F32).reshape(shape), np.array(zs).reshape(shape), int(qmin), int(qmax))


def _ort_session(op: str, inputs: list[tuple[str, str, list]], outputs: list[tuple[str, str, list]]):
    """An inference session running one ONNX operator; inputs and outputs as (name, type, shape)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ort = require("onnxruntime")
        onnx = require("onnx")
    h, tp = onnx.helper, onnx.TensorProto
    graph = h.make_graph(
        [h.make_node(op, [n for n, _, _ in inputs], [n for n, _, _ in outputs])],
        op,
        [h.make_tensor_value_info(n, getattr(tp, t), shape) for n, t, shape in inputs],
        [h.make_tensor_value_info(n, getattr(tp, t), shape) for n, t, shape in outputs],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


ORT_PEERS: dict[str, Callable[[Any, Data], Ref]] = {
    "ort-static-quint8": lambda qu, d: _ort_static(qu, *_x(d), "UINT8", symmetric=False),
    "ort-static-qint8": lambda qu, d: _ort_static(qu, *_x(d), "INT8", symmetric=False),
    "ort-weight-qint8": lambda qu, d: _ort_static(qu, *_w(d), "INT8", symmetric=True),
    "ort-weight-qint8-channel": lambda qu, d: _ort_static(qu, *_wc(d), "INT8", symmetric=True),
}


def test_every_onnx_runtime_row_has_a_peer_check():
    assert {row.id for row in ROWS if row.id.startswith("ort-")} == ORT_PEERS.keys() | {"ort-dynamic-uint8"}


@pytest.mark.parametrize("row_id", sorted(ORT_PEERS))
def test_onnx_runtime_rows_against_quant_utils(row_id: str, datasets: list[Data]):
    qu = _ort_quant_utils()
    row, spec = ROW_BY_ID[row_id], SPECS[row_id]
    for i, d in enumerate(datasets):
        qp = run_call(row, d)
        peer = ORT_PEERS[row_id](qu, d)
        assert (qp.qmin, qp.qmax) == (peer.qmin, peer.qmax)
        check_agreement(row.agreement, qp, peer, f"{row_id}, data set {i}")
        # the quantizer's own codes for initializers, given qlearn's parameters
        arr = getattr(d, spec.tensor)
        tp = qu.onnx_proto.TensorProto.INT8 if qp.signed else qu.onnx_proto.TensorProto.UINT8
        if qp.scale.ndim == 0:
            theirs = qu.quantize_nparray(tp, arr, qp.scale, qp.zero_point.astype(qp.dtype))
        else:
            per_channel = zip(arr, qp.scale, qp.zero_point, strict=True)  # channel axis 0
            theirs = np.stack([qu.quantize_nparray(tp, a, s, z.astype(qp.dtype)) for a, s, z in per_channel])
        np.testing.assert_array_equal(ql.quantize(arr, qp, method=row.method), theirs)


def test_onnx_runtime_dynamic_quantize_linear(datasets: list[Data]):
    outputs = [("y", "UINT8", [None]), ("s", "FLOAT", []), ("z", "UINT8", [])]
    sess = _ort_session("DynamicQuantizeLinear", [("x", "FLOAT", [None])], outputs)
    row = ROW_BY_ID["ort-dynamic-uint8"]
    for d in datasets:
        y, s, z = sess.run(None, {"x": d.x})
        qp = run_call(row, d)
        assert qp.scale == s and int(qp.zero_point) == int(z)
        np.testing.assert_array_equal(ql.quantize(d.x, qp, method=row.method), y)


@pytest.mark.parametrize("row_id", ["ort-static-quint8", "ort-static-qint8"])
def test_onnx_runtime_quantize_linear_at_run_time(row_id: str, datasets: list[Data]):
    # activations are quantized at run time by the QuantizeLinear operator, given the stored s and z
    row = ROW_BY_ID[row_id]
    zp_type = "INT8" if row.codes[0] < 0 else "UINT8"
    sess = _ort_session(
        "QuantizeLinear", [("x", "FLOAT", [None]), ("s", "FLOAT", []), ("z", zp_type, [])], [("y", zp_type, [None])]
    )
    for d in datasets:
        qp = run_call(row, d)
        (y,) = sess.run(None, {"x": d.x, "s": qp.scale, "z": qp.zero_point.astype(qp.dtype)})
        np.testing.assert_array_equal(ql.quantize(d.x, qp, method=row.method), y)


# ---------------------------------------------------------------------------- the disagreements the page states

# A range where alpha'/s is exactly -109.5 in float32 (but not in float64): see the page.
TIE_LO, TIE_HI = F32(-2.9844272), F32(3.9656088)


def test_tie_example_qlearn_and_formulas():
    qp_u8 = ql.qparams_from_range(TIE_LO, TIE_HI)
    qp_i8 = ql.qparams_from_range(TIE_LO, TIE_HI, signed=True)
    assert TIE_LO / qp_u8.scale == F32(-109.5)
    assert int(qp_u8.zero_point) == 110 and int(qp_i8.zero_point) == -18  # ties to even
    assert int(torch_affine(TIE_LO, TIE_HI, 0, 255).zero_point) == 110
    assert int(ort_minmax(TIE_LO, TIE_HI, 0, 255, symmetric=False).zero_point) == 109  # float64 quotient
    assert int(tflite_asymmetric(TIE_LO, TIE_HI).zero_point) == -19  # half away from zero
    assert ort_minmax(TIE_LO, TIE_HI, 0, 255, symmetric=False).scale == qp_u8.scale


def test_tie_example_against_pytorch():
    torch, ao = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = ao.MinMaxObserver()
        obs(torch.tensor([TIE_LO, TIE_HI]))
        _, zp = obs.calculate_qparams()
    assert int(zp.item()) == 110


def test_tie_example_against_onnx_runtime():
    qu = _ort_quant_utils()
    ref = _ort_static(qu, np.asarray(TIE_LO), np.asarray(TIE_HI), "UINT8", symmetric=False)
    assert int(ref.zero_point) == 109


def test_onnx_runtime_scale_differs_in_the_last_bit_for_many_ranges():
    # the page says: about one random range in four (float64 width versus qlearn's float32 width)
    rng = np.random.default_rng(0)
    lo = (-rng.random(4000) * 10).astype(F32)
    hi = (rng.random(4000) * 10).astype(F32)
    ref = ort_minmax(lo, hi, 0, 255, symmetric=False)
    qp = ql.qparams_from_range(lo, hi, granularity=ql.PerAxis(0))
    d = ulps(qp.scale, ref.scale)
    assert d.max() == 1
    assert 0.15 < np.mean(d == 1) < 0.35


def test_constant_channel_rule_differs_from_pytorch():
    w = np.full((1, 4), 0.7, dtype=F32)
    qp = ql.choose_qparams(w, symmetric=True, half_range=True, axis=0)
    assert qp.scale[0] == F32(0.7) / F32(64)  # qlearn: |c| / 2^k, so c round-trips exactly
    assert ql.fake_quantize(w, qp)[0, 0] == F32(0.7)
    ref = torch_symmetric(*channel_range(w), -128, 127, 0)
    assert ref.scale[0] == F32(0.7) / F32(127.5)  # PyTorch's formula


def test_constant_channel_against_pytorch():
    torch, ao = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = ao.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        obs(torch.full((1, 4), 0.7))
        scale, _ = obs.calculate_qparams()
    assert F32(scale[0].item()) == F32(0.7) / F32(127.5)


# ---------------------------------------------------------------------------- ONNX Runtime's calibrators


def _ort_calibrate():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return require("onnxruntime.quantization.calibrate", "its HistogramCollector is the oracle")


def test_onnx_runtime_default_entropy_is_min_max(rng: np.random.Generator):
    # with num_bins = num_quantized_bins = 128 (its defaults) the search has one candidate,
    # the whole histogram: ONNX Runtime's default "entropy" range is the min-max range
    cal = _ort_calibrate()
    x = np.concatenate([rng.standard_normal(20_000), [9.0, -7.5]]).astype(F32)
    collector = cal.HistogramCollector(
        method="entropy", symmetric=False, num_bins=128, num_quantized_bins=128, percentile=99.999, scenario="same"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collector.collect({"x": [x]})
        lo, hi = (float(v) for v in collector.compute_collection_result()["x"][:2])
    assert (lo, hi) == (float(x.min()), float(x.max()))
    assert MinMaxObserver().observe(x).compute_range() == (lo, hi)
    # while TensorRT's search (ours) clips the outliers
    assert EntropyObserver().observe(x).compute_range()[1] < 0.8 * float(np.abs(x).max())


def test_onnx_runtime_percentile_cuts_half_on_each_side(rng: np.random.Generator):
    cal = _ort_calibrate()
    x = rng.standard_normal(50_000).astype(F32) * 2 + 0.5
    for p in (98.0, 99.0, 99.9, 99.99):
        collector = cal.HistogramCollector(
            method="percentile", symmetric=False, num_bins=2048, num_quantized_bins=128, percentile=p, scenario="same"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            collector.collect({"x": [x]})
            result = collector.compute_collection_result()["x"]
        ort_lo, ort_hi = (float(v) for v in result[:2])
        lo, hi = PercentileObserver(percentile=p, bins=2048).observe(x).compute_range()
        width = float(np.ptp(x)) / 2048
        assert abs(lo - ort_lo) <= 2 * width and abs(hi - ort_hi) <= 2 * width, (p, (lo, hi), (ort_lo, ort_hi))
        if p == 98.0:  # the other reading (2 % off each side) is far from ONNX Runtime's
            lo2, hi2 = PercentileObserver(percentile=p, bins=2048, convention="each_tail").observe(x).compute_range()
            assert abs(hi2 - ort_hi) > 20 * width and abs(lo2 - ort_lo) > 20 * width
