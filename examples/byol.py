"""BYOL: an online network predicts the projection of a slowly moving target network.

Bootstrap Your Own Latent (Grill et al. 2020) has no negatives: each image gets two views; the
online encoder + projector + predictor of one view regresses the target's projection of the
other (2 - 2 cos, both ways). The target is an exponential moving average of the online weights
whose momentum rises from 0.99 to 1 along a cosine over training (`keras_ssl.BYOL` reads the
number of steps from the `WarmupCosine` learning-rate schedule).

    python examples/byol.py                 # digits, a few minutes on 2 CPU cores
    python examples/byol.py --quick         # seconds (what the tests run)
"""

from __future__ import annotations

import argparse

import keras
import tensorflow as tf

import keras_ssl
from keras_ssl import training
from keras_ssl.collapse import CollapseMonitor

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
parser.add_argument("--data", default="digits", help="a keras_ssl data source")
parser.add_argument("--examples", type=int, default=None, help="training images used")
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--export", default=None, help="export the encoder to this folder")
args = parser.parse_args()
keras.utils.set_random_seed(0)

# ## Data
# The training images are used without labels; the labelled held-out split only scores.
data = keras_ssl.data.load(args.data, max_examples=256 if args.quick else args.examples)
epochs = args.epochs or (1 if args.quick else 60)
batch_size = 64 if args.quick else 256
dataset = data.train_dataset(batch_size)
steps = int(dataset.cardinality()) * epochs

# ## Model
# Projector and predictor MLPs (512 hidden, 128 out); target momentum 0.99 -> 1.
encoder = keras_ssl.encoders.ConvNet(data.input_shape, width=8 if args.quick else 32)
model = keras_ssl.BYOL(encoder, projection_dim=128, hidden_dim=512, momentum=0.99, seed=0)

model.compile(optimizer=training.default_optimizer(2e-3, steps),
              # XLA pays off on a GPU; on CPU TensorFlow's own (oneDNN) kernels are faster.
              jit_compile=bool(tf.config.list_physical_devices("GPU")))

# ## Training
# `CollapseMonitor` writes the std and effective rank of the normalised embeddings of a fixed
# held-out batch into each epoch's logs (and warns if they collapse).
split = (data.x_train, data.y_train, data.x_test, data.y_test)
before = keras_ssl.evaluate.evaluate_encoder(model, *split)
monitor = CollapseMonitor(data.x_test[:256])
model.fit(dataset, epochs=epochs, verbose=2, callbacks=[monitor])
after = keras_ssl.evaluate.evaluate_encoder(model, *split)

# ## Evaluation
# kNN and linear-probe accuracy of the frozen encoder on the held-out split, before and after.
print(f"\n{'encoder':<22}{'kNN':>8}{'linear probe':>14}")
for label, scores in (("random init", before), (f"BYOL {epochs} epochs", after)):
    print(f"{label:<22}{scores['knn_accuracy']:>8.3f}{scores['linear_probe_accuracy']:>14.3f}")
last = monitor.history[-1]
print(f"embedding std {last['embedding_std']:.4f}, effective rank {last['effective_rank']:.1f}")
if args.export:
    print("exported to", keras_ssl.export_encoder(model, args.export))
