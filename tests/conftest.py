import os

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
# make fuzz: randomized (a new seed each run), thousands of examples per property
settings.register_profile(
    "fuzz",
    deadline=None,
    max_examples=3000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=False,
    database=None,
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "qlearn"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)
