"""Metric learning with a triplet loss and in-batch mining (batch-all by default; batch-hard, semi-hard).

For each anchor, the positive is another image of its class and the negative one of another
class, both mined from the batch; the loss asks the negative to be `margin` farther away than the
positive. The embeddings can then be searched by distance (nearest neighbours of a new image).

    python examples/triplet.py              # digits, a few minutes on 2 CPU cores
    python examples/triplet.py --quick      # seconds (what the tests run)
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
import tensorflow as tf

import keras_ssl
from keras_ssl import training

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
parser.add_argument("--data", default="digits", help="a labelled keras_ssl data source")
parser.add_argument("--examples", type=int, default=None, help="training images used")
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--mining", default="batch_all", help="batch_all, batch_hard or semi_hard")
parser.add_argument("--export", default=None, help="export the encoder to this folder")
args = parser.parse_args()
keras.utils.set_random_seed(0)

data = keras_ssl.data.load(args.data, max_examples=256 if args.quick else args.examples)
epochs = args.epochs or (1 if args.quick else 40)
batch_size = 64 if args.quick else 256  # large enough for several images of each class
dataset = data.train_dataset(batch_size, labels=True)

encoder = keras_ssl.encoders.ConvNet(data.input_shape, width=8 if args.quick else 32)
model = keras_ssl.Triplet(encoder, margin=0.2, mining=args.mining, seed=0)
model.compile(optimizer=training.default_optimizer(2e-3, int(dataset.cardinality()) * epochs),
              # XLA pays off on a GPU; on CPU TensorFlow's own (oneDNN) kernels are faster.
              jit_compile=bool(tf.config.list_physical_devices("GPU")))

split = (data.x_train, data.y_train, data.x_test, data.y_test)
before = keras_ssl.evaluate.evaluate_encoder(model, *split)
model.fit(dataset, epochs=epochs, verbose=2)
after = keras_ssl.evaluate.evaluate_encoder(model, *split)

print(f"\n{'encoder':<22}{'kNN':>8}{'linear probe':>14}")
for label, scores in (("random init", before), (f"triplet {epochs} epochs", after)):
    print(f"{label:<22}{scores['knn_accuracy']:>8.3f}{scores['linear_probe_accuracy']:>14.3f}")

# Retrieval: the held-out images nearest (cosine) to the first one, with their labels.
embeddings = keras_ssl.evaluate.embed(model, data.x_test)
embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
nearest = np.argsort(-(embeddings @ embeddings[0]))[1:6]
print(f"query label {data.y_test[0]}: nearest neighbours' labels {data.y_test[nearest].tolist()}")
if args.export:
    print("exported to", keras_ssl.export_encoder(model, args.export))
