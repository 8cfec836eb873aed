"""Barlow Twins: the cross-correlation of two views' embeddings is pushed to the identity.

Zbontar et al. (2021): each dimension of the projections is standardised over the batch; the
diagonal of the views' cross-correlation matrix goes to 1 (the views agree) and its
off-diagonal to 0 (the dimensions carry different information), weighted by lambda = 5e-3.
Under `tf.distribute` the matrix is computed over the global batch.

    python examples/barlow_twins.py         # digits, a few minutes on 2 CPU cores
    python examples/barlow_twins.py --quick # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method barlow_twins --data digits`.
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
    "barlow_twins", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 60,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    method_options={"projection_dim": 512, "hidden_dim": 512, "lambda_": 5e-3},
    verbose=2,
)

# ## Evaluate
# kNN and linear-probe accuracy of the frozen encoder on held-out digits, before and after.
print(result.table())
logs = result.history.history
print(f"embedding std {logs['embedding_std'][-1]:.4f}, "
      f"effective rank {logs['effective_rank'][-1]:.1f}")
