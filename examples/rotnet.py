"""RotNet: learn features by predicting how much an image was rotated (0, 90, 180 or 270 degrees).

Recognising the rotation needs knowing what is up in a picture: where the objects are and how
they stand (Gidaris et al. 2018). Each step rotates every image four ways in the graph and trains
a classifier on the encoder's features to name the rotation.

    python examples/rotnet.py               # digits, a few minutes on 2 CPU cores
    python examples/rotnet.py --quick       # seconds (what the tests run)
"""

from __future__ import annotations

import argparse

import keras
import tensorflow as tf

import keras_ssl
from keras_ssl import training

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
parser.add_argument("--data", default="digits", help="a keras_ssl data source of images")
parser.add_argument("--examples", type=int, default=None, help="training images used")
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--export", default=None, help="export the encoder to this folder")
args = parser.parse_args()
keras.utils.set_random_seed(0)

data = keras_ssl.data.load(args.data, max_examples=256 if args.quick else args.examples)
epochs = args.epochs or (1 if args.quick else 30)
batch_size = 32 if args.quick else 128  # each image becomes 4 rotated copies
dataset = data.train_dataset(batch_size)

encoder = keras_ssl.encoders.ConvNet(data.input_shape, width=8 if args.quick else 32)
model = keras_ssl.RotNet(encoder, seed=0)
model.compile(optimizer=training.default_optimizer(2e-3, int(dataset.cardinality()) * epochs),
              # XLA pays off on a GPU; on CPU TensorFlow's own (oneDNN) kernels are faster.
              jit_compile=bool(tf.config.list_physical_devices("GPU")))

split = (data.x_train, data.y_train, data.x_test, data.y_test)
before = keras_ssl.evaluate.evaluate_encoder(model, *split)
history = model.fit(dataset, epochs=epochs, verbose=2)
after = keras_ssl.evaluate.evaluate_encoder(model, *split)

print(f"\n{'encoder':<22}{'kNN':>8}{'linear probe':>14}")
for label, scores in (("random init", before), (f"RotNet {epochs} epochs", after)):
    print(f"{label:<22}{scores['knn_accuracy']:>8.3f}{scores['linear_probe_accuracy']:>14.3f}")
metric = next(k for k in history.history if "accuracy" in k)
print(f"{metric} (pretext, last epoch): {history.history[metric][-1]:.3f}")
if args.export:
    print("exported to", keras_ssl.export_encoder(model, args.export))
