"""MoCo v2: a momentum key encoder and a queue of negatives, on digits (or any image source).

Each image gets two views (`augment.moco_v2`); the query encoder embeds one, a slowly moving copy
(the key encoder) the other, and InfoNCE picks the matching key out of a queue of `queue_size`
keys from earlier batches, so the negatives do not depend on the batch size.

    python examples/moco.py                 # digits, a few minutes on 2 CPU cores
    python examples/moco.py --quick         # seconds (what the tests run)
    python examples/moco.py --data ../shared/data/fashion-mnist --examples 10000 --epochs 20
"""

from __future__ import annotations

import argparse

import keras
import tensorflow as tf

import keras_ssl
from keras_ssl import training

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
parser.add_argument("--data", default="digits", help="a keras_ssl data source")
parser.add_argument("--examples", type=int, default=None, help="training images used")
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--export", default=None, help="export the encoder to this folder")
args = parser.parse_args()
keras.utils.set_random_seed(0)

# Data: the training images are used without labels; the labelled held-out split only scores.
data = keras_ssl.data.load(args.data, max_examples=256 if args.quick else args.examples)
epochs = args.epochs or (1 if args.quick else 60)
batch_size = 64 if args.quick else 256
dataset = data.train_dataset(batch_size)

# Model: queue_size keys (a multiple of the batch is not needed: the queue wraps around),
# momentum 0.99 for short runs (0.999 in the paper's long ImageNet runs), temperature 0.2.
encoder = keras_ssl.encoders.ConvNet(data.input_shape, width=8 if args.quick else 32)
model = keras_ssl.MoCo(encoder, queue_size=256 if args.quick else 4096, momentum=0.99,
                       temperature=0.2, seed=0)
model.compile(optimizer=training.default_optimizer(2e-3, int(dataset.cardinality()) * epochs),
              # XLA pays off on a GPU; on CPU TensorFlow's own (oneDNN) kernels are faster.
              jit_compile=bool(tf.config.list_physical_devices("GPU")))

split = (data.x_train, data.y_train, data.x_test, data.y_test)
before = keras_ssl.evaluate.evaluate_encoder(model, *split)
model.fit(dataset, epochs=epochs, verbose=2)
after = keras_ssl.evaluate.evaluate_encoder(model, *split)

print(f"\n{'encoder':<22}{'kNN':>8}{'linear probe':>14}")
for label, scores in (("random init", before), (f"MoCo {epochs} epochs", after)):
    print(f"{label:<22}{scores['knn_accuracy']:>8.3f}{scores['linear_probe_accuracy']:>14.3f}")
if args.export:
    print("exported to", keras_ssl.export_encoder(model, args.export))
