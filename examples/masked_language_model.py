"""A masked language model (BERT-style) on Python's own help text: fill in hidden words.

About 15% of the words of each example are chosen (80% replaced by [mask], 10% by a random word,
10% kept) and a small Transformer encoder learns to predict them from their context. The pooled
features are sentence embeddings; the exported SavedModel takes raw strings.

    python examples/masked_language_model.py            # pydoc text, a few minutes on 2 CPU cores
    python examples/masked_language_model.py --quick    # seconds (what the tests run)
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
parser.add_argument("--data", default="pydoc", help="a keras_ssl.data.text source (.txt, folder, ...)")
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--export", default=None, help="export the encoder to this folder")
args = parser.parse_args()
keras.utils.set_random_seed(0)

# Text -> token ids in the input pipeline (string ops do not compile with XLA).
sequence_length = 32 if args.quick else 64
data = keras_ssl.data.text.load(args.data, vocab_size=2000 if args.quick else 5000,
                           sequence_length=sequence_length,
                           max_examples=128 if args.quick else None)
print(data)
epochs = args.epochs or (1 if args.quick else 20)
batch_size = 16 if args.quick else 64
dataset = data.train_dataset(batch_size)

encoder = keras_ssl.encoders.TransformerEncoder(
    data.vocab_size, sequence_length, embed_dim=32 if args.quick else 128,
    num_heads=2 if args.quick else 4, num_layers=1 if args.quick else 2,
    ff_dim=64 if args.quick else 256)
model = keras_ssl.MaskedLanguageModel(encoder, data.vocab_size, mask_rate=0.15,
                                      vectorizer=data.vectorizer, seed=0)
model.compile(optimizer=training.default_optimizer(1e-3, int(dataset.cardinality()) * epochs),
              # XLA pays off on a GPU; on CPU TensorFlow's own (oneDNN) kernels are faster.
              jit_compile=bool(tf.config.list_physical_devices("GPU")))
history = model.fit(dataset, epochs=epochs, verbose=2)
held_out = model.evaluate(data.test_dataset(), verbose=0, return_dict=True)
print(f"masked-token accuracy: train {history.history['masked_token_accuracy'][-1]:.3f}, "
      f"held-out {held_out['masked_token_accuracy']:.3f}")

# Sentence embeddings: the held-out example closest (cosine) to the first one.
embeddings = keras_ssl.evaluate.embed(model, data.x_test)
embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
nearest = int(np.argsort(-(embeddings @ embeddings[0]))[1])
print(f"query:   {data.texts_test[0][:100]!r}\nnearest: {data.texts_test[nearest][:100]!r}")
if args.export:
    print("exported to", keras_ssl.export_encoder(model, args.export))
