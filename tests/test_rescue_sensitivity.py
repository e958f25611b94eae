"""qlearn.rescue.sensitivity: per-layer sensitivity, sizes, and the greedy allocation under a budget."""

import itertools

import numpy as np
import pytest

from qlearn import ptq
from qlearn.datasets import load_digits_splits
from qlearn.nn import MLP, fit
from qlearn.rescue import allocate_bits, layer_sensitivity, prepare_mixed, weight_bytes


@pytest.fixture(scope="module")
def trained():
    d = load_digits_splits(seed=0)
    return d, fit(MLP([64, 64, 64, 10], seed=0), d.X_train, d.y_train, epochs=10)


def test_sensitivity_shrinks_with_bits(trained):
    d, model = trained
    s = layer_sensitivity(model, d.X_calibration, d.y_calibration, [2, 4, 8])
    assert s.shape == (3, 3)
    assert np.all(s[:, 0] > s[:, 1]) and np.all(np.abs(s[:, 2]) < 0.01)


def test_weight_bytes_matches_quantized_model_size(trained):
    d, model = trained
    bits = [4, 2, 8]
    q = ptq.convert(prepare_mixed(model, bits, calibration=[d.X_calibration]))
    shapes = [(64, 64), (64, 64), (64, 10)]
    weights = sum(weight_bytes(i * o, o, b) for (i, o), b in zip(shapes, bits, strict=True))
    biases_and_activations = 4 * (64 + 64 + 10) + 8 * 4
    assert q.size_bytes() == weights + biases_and_activations
    assert [qp.bits for qp in q.weight_qparams] == bits


def brute_force(sens, bits, shapes, budget):
    """The best allocation by exhaustive search (an upper bound on the greedy result's quality)."""
    best = None
    for combo in itertools.product(range(len(bits)), repeat=len(shapes)):
        size = sum(weight_bytes(i * o, o, bits[c]) for (i, o), c in zip(shapes, combo, strict=True))
        if size <= budget:
            cost = sum(sens[k][c] for k, c in enumerate(combo))
            best = cost if best is None or cost < best else best
    return best


def test_allocation_fits_budget_and_is_near_optimal(rng):
    bits, shapes = [2, 3, 4, 8], [(64, 64), (64, 64), (64, 10)]
    optimal = total = 0
    for _ in range(20):
        sens = np.sort(rng.random((3, 4)), axis=1)[:, ::-1]  # fewer bits, more loss
        for budget in (1500, 2500, 4000, 9000):
            try:
                alloc = allocate_bits(sens, bits, shapes, budget)
            except ValueError:
                assert budget < sum(weight_bytes(i * o, o, 2) for i, o in shapes)
                continue
            size = sum(weight_bytes(i * o, o, b) for (i, o), b in zip(shapes, alloc, strict=True))
            assert size <= budget
            cost = sum(sens[k][bits.index(b)] for k, b in enumerate(alloc))
            best = brute_force(sens, bits, shapes, budget)
            assert cost >= best - 1e-12
            optimal += cost <= best + 1e-12
            total += 1
    assert optimal >= 0.75 * total  # greedy is a heuristic: usually, not always, the optimum


def test_allocation_golden_and_errors():
    assert allocate_bits([[0.5, 0.01], [0.02, 0.0]], [2, 8], [(64, 64), (64, 64)], 10**6) == [8, 8]
    assert allocate_bits([[0.5, 0.01], [0.02, 0.0]], [2, 8], [(64, 64), (64, 64)], 6000) == [8, 2]
    with pytest.raises(ValueError, match="below the smallest possible size"):
        allocate_bits([[0.5, 0.01]], [2, 8], [(64, 64)], 10)
    with pytest.raises(ValueError, match="sensitivity must have shape"):
        allocate_bits([[0.5, 0.01]], [2, 4, 8], [(64, 64)], 10**6)
    with pytest.raises(ValueError, match="one width per Linear"):
        prepare_mixed(MLP([4, 3, 2]), [8])
    with pytest.raises(ValueError, match="fold_batch_norm"):
        layer_sensitivity(MLP([4, 3, 2], batch_norm=True), np.ones((2, 4)), [0, 1], [8])
