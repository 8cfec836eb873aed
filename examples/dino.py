"""DINO: a student network matches a momentum teacher across global and local crops.

Caron et al. (2021): each image gets 2 global crops and several small local crops
(`augment.MultiCrop`); the teacher (a moving average of the student) sees the global crops, the
student all of them, and the student's softmax is trained towards the teacher's centred and
sharpened one. The teacher temperature warms up from 0.04 to 0.07. As in the paper, the teacher's
encoder is the one evaluated and exported (`model.embedding_encoder`).

    python examples/dino.py                 # digits, a few minutes on 2 CPU cores
    python examples/dino.py --quick         # seconds (what the tests run)
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
# A small head (1024 prototypes; 65536 in the paper); 4 local crops of 14 px per image.
encoder = keras_ssl.encoders.ConvNet(data.input_shape, width=8 if args.quick else 32)
model = keras_ssl.DINO(encoder, output_dim=256 if args.quick else 1024,
                       num_local_views=2 if args.quick else 4, seed=0)

model.compile(optimizer=training.default_optimizer(1e-3, steps),
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
for label, scores in (("random init", before), (f"DINO {epochs} epochs", after)):
    print(f"{label:<22}{scores['knn_accuracy']:>8.3f}{scores['linear_probe_accuracy']:>14.3f}")
last = monitor.history[-1]
print(f"embedding std {last['embedding_std']:.4f}, effective rank {last['effective_rank']:.1f}")
if args.export:
    print("exported to", keras_ssl.export_encoder(model, args.export))
