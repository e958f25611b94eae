import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "qlearn",
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
settings.load_profile("qlearn")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)
