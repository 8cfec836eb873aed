import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def textured_images():
    """A small batch of random-texture uint8 images (no two alike)."""

    def make(n=8, size=32, channels=1, seed=0):
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)

    return make
