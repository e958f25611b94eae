import numpy as np
import pytest

from qlearn.formats.packing import unpack, unpack_int32
from qlearn.weightonly import PackedWeight, rtn, w4a16_matmul


@pytest.mark.parametrize("layout", ["byte", "gptq", "awq"])
@pytest.mark.parametrize("zero", ["symmetric", "int", "float"])
@pytest.mark.parametrize("bits", [4, 3])
def test_round_trip(rng, layout, zero, bits):
    w = rng.standard_normal((8, 128)).astype(np.float32)
    gq = rtn(w, bits, 32, zero=zero)
    if layout == "awq" and bits == 3:  # AutoAWQ's order is defined for 4-bit codes only
        with pytest.raises(ValueError, match="awq"):
            PackedWeight.from_quant(gq, layout)
        return
    pw = PackedWeight.from_quant(gq, layout)
    assert np.array_equal(pw.codes(), gq.codes)
    np.testing.assert_array_equal(
        pw.zeros(), gq.zero.astype(np.float16).astype(np.float32) if zero == "float" else gq.zero
    )
    s16 = np.repeat(gq.scale.astype(np.float16).astype(np.float32), 32, axis=1)
    z = np.repeat(pw.zeros(), 32, axis=1)
    np.testing.assert_array_equal(pw.dequantize(), (gq.codes.astype(np.float32) - z) * s16)


@pytest.mark.parametrize("bits", [8, 7, 6, 5, 2])
def test_round_trip_other_widths(rng, bits):
    gq = rtn(rng.standard_normal((4, 64)), bits, 16)
    pw = PackedWeight.from_quant(gq)
    assert np.array_equal(pw.codes(), gq.codes)
    assert pw.data.nbytes == 4 * 64 * bits // 8  # a dense bit stream, no slots
    if bits in (2, 8):
        assert np.array_equal(PackedWeight.from_quant(gq, "gptq").codes(), gq.codes)


def test_layouts_are_the_packing_modules(rng):
    gq = rtn(rng.standard_normal((4, 64)), 4, 32)
    assert np.array_equal(unpack(PackedWeight.from_quant(gq, "byte").data, 4, 64), gq.codes)
    assert np.array_equal(unpack_int32(PackedWeight.from_quant(gq, "awq").data, 4, 64, order="awq"), gq.codes)
    # two codes per byte, low nibble first, by hand
    data = PackedWeight.from_quant(gq, "byte").data
    assert data[0, 0] == gq.codes[0, 0] | (gq.codes[0, 1] << 4)


def test_sizes_are_real_bytes(rng):
    w = rng.standard_normal((16, 256))
    # codes 16*256/2, scales 16*(256/64)*2, zeros 4 groups per row in nibbles: 2 bytes per row
    assert PackedWeight.from_quant(rtn(w, 4, 64)).nbytes == 2048 + 128 + 32
    assert PackedWeight.from_quant(rtn(w, 4, 64, zero="symmetric")).nbytes == 2048 + 128
    assert PackedWeight.from_quant(rtn(w, 4, 64, zero="float")).nbytes == 2048 + 128 + 128
    # int32 words: zeros of 4 groups take one word per row
    assert PackedWeight.from_quant(rtn(w, 4, 64), "gptq").nbytes == 2048 + 128 + 64
    assert PackedWeight.from_quant(rtn(w, 8, 64)).nbytes == 4096 + 128 + 64
    # 3 bits: 8 codes in 3 bytes; zeros of 4 groups in 12 bits, 2 bytes per row
    assert PackedWeight.from_quant(rtn(w, 3, 64)).nbytes == 1536 + 128 + 32
    # GPTQ words: 32 three-bit codes in 3 words; the 4 zeros of a row padded to one triple (12 bytes)
    assert PackedWeight.from_quant(rtn(w, 3, 64), "gptq").nbytes == 1536 + 128 + 192


@pytest.mark.parametrize("zero", ["symmetric", "int", "float"])
def test_w4a16_matmul_equals_dequantize_then_matmul(rng, zero):
    w = rng.standard_normal((24, 128)).astype(np.float32)
    x = rng.standard_normal((2, 5, 128)).astype(np.float32)
    pw = PackedWeight.from_quant(rtn(w, 4, 32, zero=zero), "gptq")
    np.testing.assert_allclose(w4a16_matmul(x, pw), x @ pw.dequantize().T, rtol=1e-5, atol=1e-5)


def test_bad_input(rng):
    gq = rtn(rng.standard_normal((4, 64)), 4, 32)
    with pytest.raises(ValueError):
        PackedWeight.from_quant(gq, "nibble")
    with pytest.raises(ValueError, match="gptq"):
        PackedWeight.from_quant(rtn(rng.standard_normal((4, 64)), 5, 32), "gptq")
    with pytest.raises(ValueError, match="at most 8 bits"):  # 10-bit codes would wrap in uint8
        PackedWeight.from_quant(rtn(rng.standard_normal((4, 64)), 10, 32))
    with pytest.raises(TypeError):
        PackedWeight.from_quant(np.zeros((4, 64)))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        w4a16_matmul(np.ones((3, 63)), PackedWeight.from_quant(gq))
    with pytest.raises(TypeError):
        w4a16_matmul(np.ones((3, 64)), gq)  # type: ignore[arg-type]
