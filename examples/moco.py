"""
# MoCo v2 on digits

MoCo keeps a *queue* of keys from earlier batches as negatives, so the number of negatives does
not depend on the batch size, and embeds the keys with a *momentum encoder*: a slowly moving copy
of the query encoder (He et al. 2020; Chen et al. 2020 for v2's MLP head and stronger views).

    python examples/moco.py            # digits, a few minutes on 2 CPU cores
    python examples/moco.py --quick    # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method moco --data digits`.
"""

import sys

import keras_ssl

QUICK = "--quick" in sys.argv

# ## Train
# `keras_ssl.pretrain` loads the data, builds the default encoder for 32 px images (a small
# ConvNet), scores it, trains, and scores it again. `method_options` reach `keras_ssl.MoCo`:
# momentum 0.99 suits short runs (0.999 in the paper's long ImageNet runs); a queue of 4,096 keys
# takes 16 batches of 256 to fill with real keys.
result = keras_ssl.pretrain(
    "moco", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 60,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    method_options={"queue_size": 256 if QUICK else 4096, "momentum": 0.99, "temperature": 0.2},
    verbose=2,
)

# ## Evaluate
# kNN (k=200) and a linear probe on the frozen encoder, before and after, on held-out digits.
print(result.table())
