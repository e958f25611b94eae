"""book/format_conventions.md, row by row: each id in its table has a check here, run against the libraries."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from oracles import require

from qlearn.formats import E2M1, E4M3, E5M2, E8M0, FP16, cast, encode, gguf_quantize, mx_quantize

PAGE = Path(__file__).resolve().parent.parent / "book" / "format_conventions.md"


def page_ids() -> list[str]:
    return re.findall(r"^\| `([a-z0-9_-]+)` \|", PAGE.read_text(), flags=re.M)


def _torch_codes(x, dtype):
    torch = require("torch")
    return torch.from_numpy(np.asarray(x, np.float32)).to(getattr(torch, dtype)).view(torch.uint8).numpy()


def _md_codes(x, name):
    md = require("ml_dtypes")
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x, np.float32).astype(getattr(md, name)).view(np.uint8)


def e4m3_overflow():
    x = [470.0, 1e9, -np.inf]
    assert np.isnan(require("ml_dtypes").float8_e4m3fn(470.0))
    assert _md_codes(x, "float8_e4m3fn").tolist() == [0x7F, 0x7F, 0xFF]
    assert _torch_codes(x, "float8_e4m3fn").tolist() == [0x7E, 0x7E, 0xFE]
    assert encode(x, E4M3).tolist() == [0x7E, 0x7E, 0xFE]
    assert encode(x, E4M3, overflow="nonfinite").tolist() == [0x7F, 0x7F, 0xFF]


def e5m2_overflow():
    x = [1e6, -1e6]
    assert _md_codes(x, "float8_e5m2").tolist() == [0x7C, 0xFC] == _torch_codes(x, "float8_e5m2").tolist()
    assert cast(x, E5M2).tolist() == [57344.0, -57344.0]
    assert encode(x, E5M2, overflow="nonfinite").tolist() == [0x7C, 0xFC]


def e5m2_nan_code():
    assert _md_codes([np.nan], "float8_e5m2").tolist() == [0x7E]
    assert _torch_codes([np.nan], "float8_e5m2").tolist() == [0x7F]
    assert encode([np.nan], E5M2).tolist() == [0x7E]


def e8m0_zero():
    torch = require("torch")
    mx = require("torchao.prototype.mx_formats.mx_tensor")
    assert _md_codes([0.0], "float8_e8m0fnu").tolist() == [0xFF]
    assert _torch_codes([0.0], "float8_e8m0fnu").tolist() == [0x00]
    scale, _ = mx.to_mx(torch.zeros(1, 32), torch.float8_e4m3fn, 32)
    assert scale.view(torch.uint8).tolist() == [[0]]
    assert encode([0.0], E8M0).tolist() == [0xFF]
    assert mx_quantize(np.zeros(32), "MXFP8_E4M3")[0].tolist() == [0]


def e8m0_negative():
    assert _md_codes([-1.0], "float8_e8m0fnu").tolist() == [0xFF]
    assert _torch_codes([-1.0], "float8_e8m0fnu").tolist() == [0x7F]
    assert encode([-1.0], E8M0).tolist() == [0xFF]


def e8m0_ties():
    assert _md_codes([3.0], "float8_e8m0fnu").tolist() == [129] == _torch_codes([3.0], "float8_e8m0fnu").tolist()
    assert cast([3.0], E8M0).tolist() == [4.0]
    torch = require("torch")
    mx = require("torchao.prototype.mx_formats.mx_tensor")
    x = np.full((1, 32), 3.0 * 2.0**8, np.float32)  # amax 768: floor(log2) = 9, minus emax 8 -> 2^1
    scale, _ = mx.to_mx(torch.from_numpy(x), torch.float8_e4m3fn, 32)
    assert scale.view(torch.uint8).tolist() == [[128]] == mx_quantize(x, "MXFP8_E4M3")[0].tolist()


def fp4_nan():
    assert _md_codes([np.nan], "float4_e2m1fn").tolist() == [0x8]
    with pytest.raises(ValueError, match="no NaN"):
        encode([np.nan], E2M1)


def nan_payload():
    x = np.array([0x7FC12345], np.uint32).view(np.float32)
    assert x.astype(np.float16).view(np.uint16)[0] != FP16.nan_code
    assert encode(x, FP16).tolist() == [FP16.nan_code]


def mxfp4_ties():
    torch = require("torch")
    gguf = require("gguf")
    mx = require("torchao.prototype.mx_formats.mx_tensor")
    x = np.zeros((1, 32), np.float32)
    x[0, 0], x[0, 1] = 6.0, 0.75  # scale 2^0: 0.75 is halfway between 0.5 and 1.0
    _, data = mx.to_mx(torch.from_numpy(x), torch.float4_e2m1fn_x2, 32)
    assert data.view(torch.uint8).numpy()[0, 0] >> 4 == 0x2  # element 1 (high nibble): code 2 = 1.0
    g = gguf.quants.quantize(x, gguf.GGMLQuantizationType.MXFP4)
    assert g[0, 1 + 1] & 0x0F == 0x1  # gguf: element 1, low nibble of byte 1 of the codes: code 1 = 0.5
    assert mx_quantize(x, "MXFP4")[1][0, 1] == 0x2


def q8_0_rounding():
    import qlearn as ql

    gguf = require("gguf")
    x = np.zeros((1, 32), np.float32)
    x[0, 0], x[0, 1] = 127.0, 2.5
    ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
    assert ref[0, 3].view(np.int8) == 3 and gguf_quantize(x, "Q8_0")[0, 3] == ref[0, 3]
    qp = ql.QParams(scale=np.float32(1.0), zero_point=np.int32(0), qmin=-128, qmax=127)
    assert int(ql.quantize(np.float32(2.5), qp)) == 2


def mx_tiny_scale():
    torch = require("torch")
    mx = require("torchao.prototype.mx_formats.mx_tensor")
    x = np.full((1, 32), 1e-37, np.float32)
    scale, data = mx.to_mx(torch.from_numpy(x), torch.float8_e4m3fn, 32)
    s, q = mx_quantize(x, "MXFP8_E4M3")
    assert s.tolist() == scale.view(torch.uint8).tolist() == [[0]]
    np.testing.assert_array_equal(q, data.view(torch.uint8).numpy())
    assert q[0, 0] == encode([1e-37 / 2.0**-126], E4M3)[0]  # divided by 2^-126, not 2^-127


CHECKS = {
    "e4m3-overflow": e4m3_overflow,
    "e5m2-overflow": e5m2_overflow,
    "e5m2-nan-code": e5m2_nan_code,
    "e8m0-zero": e8m0_zero,
    "e8m0-negative": e8m0_negative,
    "e8m0-ties": e8m0_ties,
    "fp4-nan": fp4_nan,
    "nan-payload": nan_payload,
    "mxfp4-ties": mxfp4_ties,
    "q8_0-rounding": q8_0_rounding,
    "mx-tiny-scale": mx_tiny_scale,
}


def test_every_row_has_a_check():
    assert sorted(page_ids()) == sorted(CHECKS)


@pytest.mark.parametrize("row", sorted(CHECKS))
def test_row(row):
    CHECKS[row]()
