"""Rescue methods for when post-training quantization is not enough (Part V of the course)."""

from qlearn.rescue.adaround import AdaRoundResult, adaround, adaround_layer, rectified_sigmoid
from qlearn.rescue.bias_correction import correct_bias
from qlearn.rescue.bn_fold import fold_batch_norm
from qlearn.rescue.cle import cross_layer_equalize, equalization_scales
from qlearn.rescue.export import FixedObserver, prepared_from_qparams
from qlearn.rescue.qat import QATMLP, fake_quantize_lsq, fake_quantize_ste, lsq_grad_scale, qat_fit
from qlearn.rescue.sensitivity import allocate_bits, layer_sensitivity, prepare_mixed, weight_bytes
from qlearn.rescue.weight_range import mse_weight_qparams

__all__ = [
    "QATMLP",
    "AdaRoundResult",
    "FixedObserver",
    "adaround",
    "allocate_bits",
    "adaround_layer",
    "correct_bias",
    "cross_layer_equalize",
    "equalization_scales",
    "fake_quantize_lsq",
    "fake_quantize_ste",
    "fold_batch_norm",
    "layer_sensitivity",
    "lsq_grad_scale",
    "mse_weight_qparams",
    "prepare_mixed",
    "prepared_from_qparams",
    "qat_fit",
    "rectified_sigmoid",
    "weight_bytes",
]
