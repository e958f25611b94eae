"""Streaming range observers: watch batches of data, then choose the clipping range.

Every observer follows the same pattern (settings in the constructor, what is learned
from data in attributes ending in ``_``)::

    o = EntropyObserver(bits=8)
    for batch in batches:
        o.observe(batch)          # returns the observer
    lo, hi = o.compute_range()    # the clipping range
    qp = o.compute_qparams()      # QParams, through qparams_from_range

Min-max observers keep running extremes; the others keep a :class:`Histogram` and
search it. The scale and zero point are always computed by
:func:`qlearn.qparams_from_range`, never here.
"""

from qlearn.observers._base import _Observer as _Observer  # the base class ptq and rescue build on
from qlearn.observers.cross_entropy import CrossEntropyObserver
from qlearn.observers.histogram import Histogram
from qlearn.observers.minmax import MinMaxObserver, MovingAverageMinMaxObserver
from qlearn.observers.search import EntropyObserver, MSEObserver, PercentileObserver

__all__ = [
    "CrossEntropyObserver",
    "EntropyObserver",
    "Histogram",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PercentileObserver",
]
