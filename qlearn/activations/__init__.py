"""Activation quantization of the course's transformer: outliers, W8A8, LLM.int8(), SmoothQuant, KV cache.

Everything here wraps :class:`qlearn.lm.Transformer` from outside, through its ``linear`` and
``kv_hook`` hooks and :meth:`~qlearn.lm.Transformer.with_params`; the float model knows nothing of it.

>>> import numpy as np
>>> from qlearn.activations import outlier_ratio
>>> float(outlier_ratio(np.array([1.0, 1.0, 2.0, 10.0])))
6.666666666666667
"""

from qlearn.activations.kv_cache import kv_cache_bytes, kv_quant_hook, kv_ranges, quantize_kv
from qlearn.activations.llm_int8 import LLM_INT8_CONVENTIONS, llm_int8_hook, llm_int8_matmul
from qlearn.activations.ranges import channel_ranges, inject_outliers, outlier_ratio
from qlearn.activations.smoothquant import smooth_model, smoothing_factors
from qlearn.activations.w8a8 import W8A8_MODES, calibrate_activations, w8a8_hook, w8a8_matmul

__all__ = [
    "LLM_INT8_CONVENTIONS",
    "W8A8_MODES",
    "calibrate_activations",
    "channel_ranges",
    "inject_outliers",
    "kv_cache_bytes",
    "kv_quant_hook",
    "kv_ranges",
    "llm_int8_hook",
    "llm_int8_matmul",
    "outlier_ratio",
    "quantize_kv",
    "smooth_model",
    "smoothing_factors",
    "w8a8_hook",
    "w8a8_matmul",
]
