"""
# Supervised contrastive learning (SupCon) on digits

SupCon (Khosla et al. 2020) is SimCLR with labels: every other view of the same class in the batch
is a positive, not only the other view of the same image. It learns from labels, so it is the
upper bound the self-supervised methods are compared against.

    python examples/supcon.py            # digits, a few minutes on 2 CPU cores
    python examples/supcon.py --quick    # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method supcon --data digits`.
"""

import sys

import keras_ssl

QUICK = "--quick" in sys.argv

# ## Train
# The batches carry labels (SupCon needs them); the views are SimCLR's.
result = keras_ssl.pretrain(
    "supcon", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 40,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    method_options={"temperature": 0.1},
    verbose=2,
)

# ## Evaluate
print(result.table())
