"""VICReg: variance, invariance and covariance terms keep two views' embeddings informative.

Bardes, Ponce & LeCun (2022): the views' expander outputs should match (invariance, weight 25),
every dimension should keep a standard deviation of at least 1 over the batch (variance, 25),
and the dimensions should be decorrelated (covariance, 1). The three terms are logged.

    python examples/vicreg.py               # digits, a few minutes on 2 CPU cores
    python examples/vicreg.py --quick       # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method vicreg --data digits`.
"""

import sys

import keras_ssl

QUICK = "--quick" in sys.argv

# ## Train
# `keras_ssl.pretrain` builds the default encoder for 32 px digits, scores it, trains, scores it
# again; `method_options` reach the method. Every run logs the standard deviation and effective
# rank of the normalised held-out embeddings (keras_ssl.collapse.CollapseMonitor), which fall
# towards 0 and 1 when a method without negatives collapses.
result = keras_ssl.pretrain(
    "vicreg", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 60,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    method_options={"projection_dim": 512, "hidden_dim": 512},
    verbose=2,
)

# ## Evaluate
# kNN and linear-probe accuracy of the frozen encoder on held-out digits, before and after.
print(result.table())
logs = result.history.history
print(f"embedding std {logs['embedding_std'][-1]:.4f}, "
      f"effective rank {logs['effective_rank'][-1]:.1f}")
