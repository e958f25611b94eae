"""The committed GPTQ and AWQ quantizations of the course's model, so chapters load instead of computing.

Quantizing the whole model sequentially takes about a minute per method on two cores; the chapter
"GPTQ and AWQ from first principles" loads the result from ``data/lm_w3_g64.npz``. Rebuild it with
``python -m qlearn.weightonly.demo`` (deterministic: the calibration windows are seeded).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from qlearn import lm
from qlearn.formats.packing import pack, unpack
from qlearn.weightonly.apply import QuantizedModel, quantize_model
from qlearn.weightonly.awq import AWQQuant
from qlearn.weightonly.rtn import GroupQuant

DEMO_PATH = Path(__file__).parent / "data" / "lm_w3_g64.npz"
DEMO_BITS, DEMO_GROUP, DEMO_SEQUENCES = 3, 64, 64
DEMO_METHODS = ("gptq", "awq")


def compute_demo(path: Path = DEMO_PATH) -> None:
    """Quantize the committed model with each of ``DEMO_METHODS`` and save codes and parameters.

    Parameters
    ----------
    path : Path, default ``DEMO_PATH``
        Where to write the ``.npz`` (:func:`load_demo` reads ``DEMO_PATH``).

    Returns
    -------
    None

    Notes
    -----
    Calibration: :func:`qlearn.lm.calibration_batches` with 64 windows (seed 0); 3 bits, groups of 64,
    integer zero points; GPTQ with activation order, AWQ with its clipping search. About a minute per
    method on two cores.

    Examples
    --------
    >>> from qlearn.weightonly.demo import DEMO_PATH
    >>> DEMO_PATH.name
    'lm_w3_g64.npz'
    """
    model = lm.load_model()
    calib = lm.calibration_batches(DEMO_SEQUENCES)
    arrays: dict[str, Any] = {}
    for method in DEMO_METHODS:
        options: dict[str, Any] = {"act_order": True} if method == "gptq" else {}
        qm = quantize_model(model, method, DEMO_BITS, DEMO_GROUP, tokens=calib, **options)
        for name, q in qm.quants.items():
            key = f"{method}/{name}/"
            gq = q.quant if isinstance(q, AWQQuant) else q
            arrays[key + "codes"] = pack(gq.codes, 4)  # (out, in / 2), two 3-bit codes per byte
            arrays[key + "scale"] = gq.scale
            arrays[key + "zero"] = gq.zero.astype(np.uint8)
            if isinstance(q, AWQQuant):
                arrays[key + "input_scale"] = q.input_scale
                arrays[key + "clip"] = q.clip.astype(np.float32)
                arrays[key + "alpha"] = np.array(q.alpha)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_demo(method: str) -> QuantizedModel:
    """The committed 3-bit (groups of 64) quantization of :func:`qlearn.lm.load_model` by ``method``.

    Parameters
    ----------
    method : {"gptq", "awq"}
        GPTQ (with activation order) or AWQ (with the clipping search), calibrated sequentially on 64
        windows of 128 characters of the training split.

    Returns
    -------
    QuantizedModel

    Raises
    ------
    ValueError
        On another method.

    Notes
    -----
    Stored: codes packed two per byte, float32 scales, integer zero points, and AWQ's input scales;
    the model is :math:`\\hat W` of every linear layer in place of :math:`W`.

    Examples
    --------
    >>> qm = load_demo("gptq")
    >>> qm.method, qm.quants["head"].bits
    ('gptq', 3)
    """
    if method not in DEMO_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, DEMO_METHODS))}; got {method!r}")
    model = lm.load_model()
    replaced: dict[str, np.ndarray] = {}
    quants: dict[str, GroupQuant | AWQQuant] = {}
    with np.load(DEMO_PATH) as data:
        for name in model.linear_names():
            key = f"{method}/{name}/"
            n_in = model.params[name + ".weight"].shape[1]
            codes = unpack(data[key + "codes"], 4, n_in)
            gq = GroupQuant(codes, data[key + "scale"], data[key + "zero"].astype(np.float32),
                            DEMO_BITS, DEMO_GROUP, "int")  # fmt: skip
            q: GroupQuant | AWQQuant = gq
            if method == "awq":
                q = AWQQuant(gq, data[key + "input_scale"], float(data[key + "alpha"]), data[key + "clip"])
            quants[name] = q
            replaced[name + ".weight"] = q.dequantize(np.float32)
    return QuantizedModel(model.with_params(replaced), quants, method)


__all__ = ["DEMO_METHODS", "compute_demo", "load_demo"]

if __name__ == "__main__":  # pragma: no cover
    compute_demo(Path(sys.argv[1]) if len(sys.argv) > 1 else DEMO_PATH)
