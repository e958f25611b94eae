"""qlearn: the numpy companion package of the qlearn quantization course.

>>> import numpy as np
>>> import qlearn as ql
>>> x = np.array([-1.0, 0.0, 0.5, 3.0], dtype=np.float32)
>>> qp = ql.choose_qparams(x, bits=8)
>>> ql.quantize(x, qp)
array([  0,  64,  96, 255], dtype=uint8)
"""

from qlearn import activations, datasets, formats, integer, lm, nn, observers, ptq, rescue, stats, weightonly
from qlearn.metrics import error_split, max_abs_error, mse, sqnr_db
from qlearn.primitives import dequantize, fake_quantize, quantize
from qlearn.qparams import (
    FLOAT32_EPS,
    Granularity,
    PerAxis,
    PerGroup,
    PerTensor,
    QParams,
    choose_qparams,
    qparams_from_range,
    qrange,
)

__version__ = "0.2.0"


def __getattr__(name: str) -> object:
    # qlearn.plot needs matplotlib and seaborn: load it on first use, not with the numpy core
    if name == "plot":
        import importlib

        return importlib.import_module("qlearn.plot")
    raise AttributeError(f"module 'qlearn' has no attribute {name!r}")


__all__ = [
    "FLOAT32_EPS",
    "Granularity",
    "PerAxis",
    "PerGroup",
    "PerTensor",
    "QParams",
    "__version__",
    "activations",
    "choose_qparams",
    "datasets",
    "dequantize",
    "error_split",
    "fake_quantize",
    "formats",
    "integer",
    "lm",
    "max_abs_error",
    "mse",
    "nn",
    "observers",
    "ptq",
    "qparams_from_range",
    "qrange",
    "quantize",
    "rescue",
    "sqnr_db",
    "stats",
    "weightonly",
]
