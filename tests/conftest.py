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


# The files that take longest in the default suite (`pytest --durations=0`, summed per file),
# longest first. xdist hands out whole files (`--dist loadfile`) in collection order
# (`--no-loadscope-reorder` keeps it), so starting with these lets the two workers finish together
# instead of one running a long file alone at the end.
LONGEST_FIRST = (
    "test_learning.py", "test_docstrings.py", "test_pipeline.py", "test_methods_new.py",
    "test_vectors.py", "test_pretext_methods.py", "test_ts2vec.py",
    "test_series_quality_benchmark.py", "test_distribute.py", "test_series.py",
    "test_checkpoint.py", "test_supcon_triplet.py", "test_export.py", "test_cli.py",
    "test_evaluate.py", "test_stream.py", "test_examples.py", "test_training.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
