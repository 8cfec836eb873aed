"""NNCLR: the nearest neighbour from a queue of past embeddings is the positive.

Dwibedi et al. (2021): instead of contrasting a view with the other view of the same image,
NNCLR looks up the view's nearest neighbour in a support queue of earlier projections and uses
it as the anchor for the other view, so positives differ in more than augmentation.

    python examples/nnclr.py                # digits, a few minutes on 2 CPU cores
    python examples/nnclr.py --quick        # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method nnclr --data digits`.
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
    "nnclr", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 60,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    method_options={"queue_size": 256 if QUICK else 4096, "temperature": 0.1},
    verbose=2,
)

# ## Evaluate
# kNN and linear-probe accuracy of the frozen encoder on held-out digits, before and after.
print(result.table())
logs = result.history.history
print(f"embedding std {logs['embedding_std'][-1]:.4f}, "
      f"effective rank {logs['effective_rank'][-1]:.1f}")
