"""BYOL: an online network predicts the projection of a slowly moving target network.

Bootstrap Your Own Latent (Grill et al. 2020) has no negatives: each image gets two views; the
online encoder + projector + predictor of one view regresses the target's projection of the
other (2 - 2 cos, both ways). The target is an exponential moving average of the online weights
whose momentum rises from 0.99 to 1 along a cosine over training (`keras_ssl.BYOL` reads the
number of steps from the `WarmupCosine` learning-rate schedule).

    python examples/byol.py                 # digits, a few minutes on 2 CPU cores
    python examples/byol.py --quick         # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method byol --data digits`.
"""

import sys

import keras_ssl

QUICK = "--quick" in sys.argv

# ## Train
# `keras_ssl.pretrain` builds the default encoder for 32 px digits, scores it, trains, scores it
# again; `method_options` reach the method. Every run logs the standard deviation and effective
# rank of the normalised held-out embeddings (keras_ssl.collapse.CollapseMonitor), which fall
# towards 0 and 1 when a method without negatives collapses, and the share of their variance
# along one direction, which grows towards 1 when one feature outgrows the others (it warns).
result = keras_ssl.pretrain(
    "byol", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 60,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    method_options={"projection_dim": 128, "hidden_dim": 512, "momentum": 0.99},
    verbose=2,
)

# ## Evaluate
# kNN and linear-probe accuracy of the frozen encoder on held-out digits, before and after.
print(result.table())
logs = result.history.history
print(f"embedding std {logs['embedding_std'][-1]:.4f}, "
      f"effective rank {logs['effective_rank'][-1]:.1f}, "
      f"top direction's share {logs['top_direction_share'][-1]:.2f}")
