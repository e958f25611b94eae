"""Number formats beyond integer grids: packing, minifloats, codebooks, block-scaled formats.

Each module holds one idea: :mod:`~qlearn.formats.packing` (codes into bytes and words),
:mod:`~qlearn.formats.minifloat` (ExMy formats: FP8, FP6, FP4, E8M0, FP16, BF16),
:mod:`~qlearn.formats.codebooks` (NF4, FP4 of bitsandbytes, IQ4_NL, k-means),
:mod:`~qlearn.formats.mx` (OCP microscaling), :mod:`~qlearn.formats.nvfp4` and
:mod:`~qlearn.formats.gguf` (llama.cpp's Q8_0, Q4_0, Q4_1).

>>> from qlearn import formats
>>> formats.pack([1, 2], bits=4)
array([33], dtype=uint8)
>>> formats.cast([0.3], formats.E4M3).tolist()
[0.3125]
"""

from qlearn.formats.codebooks import (
    FP4_BNB,
    IQ4_NL,
    NF4,
    NF4_OFFSET,
    codebook_assign,
    codebook_dequantize,
    codebook_quantize,
    double_dequantize,
    double_quantize,
    kmeans_codebook,
    nf4_codebook,
)
from qlearn.formats.gguf import GGUF_BLOCKS, gguf_bits_per_weight, gguf_dequantize, gguf_quantize
from qlearn.formats.minifloat import BF16, E2M1, E2M3, E3M2, E4M3, E5M2, E8M0, FP16, Minifloat, cast, decode, encode
from qlearn.formats.mx import MX_BLOCK, MX_ELEMENTS, emax, mx_bits_per_weight, mx_dequantize, mx_quantize
from qlearn.formats.nvfp4 import (
    NVFP4_BLOCK,
    nvfp4_bits_per_weight,
    nvfp4_dequantize,
    nvfp4_quantize,
    nvfp4_tensor_scale,
)
from qlearn.formats.packing import AWQ_ORDER, pack, pack_int32, unpack, unpack_int32

__all__ = [
    "AWQ_ORDER",
    "BF16",
    "E2M1",
    "E2M3",
    "E3M2",
    "E4M3",
    "E5M2",
    "E8M0",
    "FP16",
    "FP4_BNB",
    "GGUF_BLOCKS",
    "IQ4_NL",
    "MX_BLOCK",
    "MX_ELEMENTS",
    "Minifloat",
    "NF4",
    "NF4_OFFSET",
    "NVFP4_BLOCK",
    "cast",
    "codebook_assign",
    "codebook_dequantize",
    "codebook_quantize",
    "decode",
    "double_dequantize",
    "double_quantize",
    "emax",
    "encode",
    "gguf_bits_per_weight",
    "gguf_dequantize",
    "gguf_quantize",
    "kmeans_codebook",
    "mx_bits_per_weight",
    "mx_dequantize",
    "mx_quantize",
    "nf4_codebook",
    "nvfp4_bits_per_weight",
    "nvfp4_dequantize",
    "nvfp4_quantize",
    "nvfp4_tensor_scale",
    "pack",
    "pack_int32",
    "unpack",
    "unpack_int32",
]
