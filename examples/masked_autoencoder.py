"""A masked autoencoder: hide most patches of each image and reconstruct them from the rest.

Masked-image modelling as in MAE (He et al. 2022), with a convolutional encoder: 75% of the square
patches of every image are replaced by mid-grey (a different mask per image), and the decoder must
rebuild the hidden pixels from the encoder's feature vector; only masked pixels count in the loss.

    python examples/masked_autoencoder.py                     # digits, a few minutes on 2 CPU cores
    python examples/masked_autoencoder.py --quick --plots /tmp/mae   # seconds (the tests run this)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import tensorflow as tf

import keras_ssl
from keras_ssl import plot, training

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
parser.add_argument("--data", default="digits", help="a keras_ssl data source of images")
parser.add_argument("--examples", type=int, default=None, help="training images used")
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--plots", default=None, help="folder for the reconstruction grid")
parser.add_argument("--export", default=None, help="export the encoder to this folder")
args = parser.parse_args()
keras.utils.set_random_seed(0)

data = keras_ssl.data.load(args.data, max_examples=256 if args.quick else args.examples)
epochs = args.epochs or (1 if args.quick else 40)
batch_size = 64 if args.quick else 256
dataset = data.train_dataset(batch_size)

encoder = keras_ssl.encoders.ConvNet(data.input_shape, width=8 if args.quick else 32)
model = keras_ssl.AutoEncoder(encoder, corruption="mask", mask_ratio=0.75, seed=0)
model.compile(optimizer=training.default_optimizer(2e-3, int(dataset.cardinality()) * epochs),
              # XLA pays off on a GPU; on CPU TensorFlow's own (oneDNN) kernels are faster.
              jit_compile=bool(tf.config.list_physical_devices("GPU")))

split = (data.x_train, data.y_train, data.x_test, data.y_test)
before = keras_ssl.evaluate.evaluate_encoder(model, *split)
history = model.fit(dataset, epochs=epochs, verbose=2)
after = keras_ssl.evaluate.evaluate_encoder(model, *split)

print(f"\n{'encoder':<22}{'kNN':>8}{'linear probe':>14}")
for label, scores in (("random init", before), (f"masked AE {epochs} epochs", after)):
    print(f"{label:<22}{scores['knn_accuracy']:>8.3f}{scores['linear_probe_accuracy']:>14.3f}")
print(f"reconstruction error (last epoch): {history.history['reconstruction_error'][-1]:.4f}")
if args.plots:
    path = plot.save_reconstructions(model, data.x_test, Path(args.plots) / "reconstructions.png")
    print("wrote", path)
if args.export:
    print("exported to", keras_ssl.export_encoder(model, args.export))
