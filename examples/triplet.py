"""
# Triplet loss with batch-all mining

Embeddings of the same class are pulled together and other classes pushed at least a margin
away, over every valid (anchor, positive, negative) triplet of the batch (Hermans et al. 2017).
It uses labels; the result is an embedding for retrieval.

    python examples/triplet.py            # digits, a few minutes on 2 CPU cores
    python examples/triplet.py --quick    # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method triplet --data digits`.
"""

import sys

import numpy as np

import keras_ssl

QUICK = "--quick" in sys.argv

# ## Train
# Batches large enough for several images of each class; batch_hard mining collapsed on
# Fashion-MNIST in our runs, batch_all did not.
result = keras_ssl.pretrain(
    "triplet", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 40,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    method_options={"margin": 0.2, "mining": "batch_all"},
    verbose=2,
)
print(result.table())

# ## Retrieval
# The held-out images nearest (cosine) to the first one, with their labels.
data = keras_ssl.data.load("digits")
embeddings = keras_ssl.evaluate.embed(result.model, data.x_test)
embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
nearest = np.argsort(-(embeddings @ embeddings[0]))[1:6]
print(f"query label {data.y_test[0]}: nearest neighbours' labels {data.y_test[nearest].tolist()}")
