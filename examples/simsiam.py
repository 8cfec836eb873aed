"""SimSiam: two views, a predictor and a stop-gradient; no negatives and no momentum encoder.

Chen & He (2021) showed that a Siamese network does not collapse when one branch's projection is
treated as a constant (stop-gradient) and the other branch predicts it through a small MLP. The
loss is the negative cosine, symmetrised over the two views.

    python examples/simsiam.py              # digits, a few minutes on 2 CPU cores
    python examples/simsiam.py --quick      # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method simsiam --data digits`.
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
    "simsiam", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 60,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    method_options={"projection_dim": 128, "hidden_dim": 512},
    verbose=2,
)

# ## Evaluate
# kNN and linear-probe accuracy of the frozen encoder on held-out digits, before and after.
print(result.table())
logs = result.history.history
print(f"embedding std {logs['embedding_std'][-1]:.4f}, "
      f"effective rank {logs['effective_rank'][-1]:.1f}, "
      f"top direction's share {logs['top_direction_share'][-1]:.2f}")
