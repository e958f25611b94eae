"""Weight-only quantization of linear layers: RTN, packed int4 storage, GPTQ and AWQ.

Every function works on a weight matrix ``w`` of shape ``(out, in)`` (the layer computes
``x @ w.T``) and returns a :class:`GroupQuant`: integer codes with one scale and zero point per
group of input columns. :mod:`qlearn.weightonly.model` applies a method to every linear layer of
a :class:`qlearn.lm` transformer.

>>> import numpy as np
>>> from qlearn.weightonly import rtn
>>> rtn(np.array([[0.0, 1.0, 2.0, 3.0]]), bits=2, group_size=None).codes
array([[0, 1, 2, 3]], dtype=uint8)
"""

from qlearn.weightonly.apply import METHODS, QuantizedModel, layer_inputs, quantize_model
from qlearn.weightonly.awq import AWQQuant, activation_scales, awq, scale_layer
from qlearn.weightonly.demo import DEMO_METHODS, compute_demo, load_demo
from qlearn.weightonly.gptq import gptq, hessian, inverse_cholesky_upper
from qlearn.weightonly.packed import LAYOUTS, PackedWeight, w4a16_matmul
from qlearn.weightonly.rtn import ZERO_KINDS, GroupQuant, group_params, rtn

__all__ = [
    "AWQQuant",
    "DEMO_METHODS",
    "GroupQuant",
    "LAYOUTS",
    "METHODS",
    "PackedWeight",
    "QuantizedModel",
    "ZERO_KINDS",
    "activation_scales",
    "awq",
    "compute_demo",
    "gptq",
    "group_params",
    "hessian",
    "inverse_cholesky_upper",
    "layer_inputs",
    "load_demo",
    "quantize_model",
    "rtn",
    "scale_layer",
    "w4a16_matmul",
]
