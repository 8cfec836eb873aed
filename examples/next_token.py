"""A causal language model (GPT-style) on Python's own help text: predict the next word.

Each position of a small Transformer sees only the words before it (a causal attention mask) and
learns to predict the word that comes next; the loss counts every next position but padding. We
compare held-out next-token accuracy and perplexity with a unigram baseline, which predicts the
most frequent word everywhere, before and after training. The exported SavedModel takes raw
strings and returns the mean of the causal features over the words: sentence embeddings.

    python examples/next_token.py            # all of pydoc, about 2 minutes on 2 CPU cores
    python examples/next_token.py --quick    # seconds
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
import tensorflow as tf

import keras_ssl
from keras_ssl.methods.next_token import next_token_metrics

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
parser.add_argument("--data", default="pydoc", help="a keras_ssl.data.text source (.txt, folder, ...)")
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--export", default=None, help="export the encoder to this folder")
args = parser.parse_args()
keras.utils.set_random_seed(0)

"""
## The text, as token ids

The same sources and tokeniser as the masked language model: documents cut into examples of at
most 32 words, a vocabulary adapted on the training split, ids 0 (padding), 1 (unknown word),
2 (`[mask]`, unused here), then words, most frequent first.
"""

data = keras_ssl.data.text.load(args.data, vocab_size=2000, sequence_length=32,
                                max_examples=256 if args.quick else None)
print(data)

"""
## A causal Transformer

`TransformerEncoder(..., causal=True)`: position t attends to positions 0..t only.
`NextTokenModel` checks that on construction (a bidirectional encoder would just copy the answer).
"""

width = 32 if args.quick else 64
encoder = keras_ssl.encoders.TransformerEncoder(
    data.vocab_size, data.sequence_length, embed_dim=width, num_heads=2, num_layers=2,
    ff_dim=2 * width, dropout=0.0, causal=True)
model = keras_ssl.NextTokenModel(encoder, data.vocab_size, vectorizer=data.vectorizer)
model.compile(optimizer=keras.optimizers.Adam(2e-3),
              # XLA pays off on a GPU; on CPU TensorFlow's own kernels are as fast to start.
              jit_compile=bool(tf.config.list_physical_devices("GPU")))

"""
## Train, and compare with the unigram baseline
"""

before = next_token_metrics(model, data)
epochs = args.epochs or (1 if args.quick else 8)
model.fit(data.train_dataset(32), epochs=epochs, verbose=2)
after = next_token_metrics(model, data)
print(f"{'held-out':<16}{'accuracy':>10}{'perplexity':>12}")
print(f"{'unigram':<16}{after['unigram_accuracy']:>10.3f}{after['unigram_perplexity']:>12.1f}")
print(f"{'random init':<16}{before['next_token_accuracy']:>10.3f}{before['perplexity']:>12.1f}")
print(f"{'next_token':<16}{after['next_token_accuracy']:>10.3f}{after['perplexity']:>12.1f}")

"""
## Sentence embeddings

The held-out example closest (cosine) to the first one.
"""

embeddings = keras_ssl.evaluate.embed(model, data.x_test)
embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
nearest = int(np.argsort(-(embeddings @ embeddings[0]))[1])
print(f"query:   {data.texts_test[0][:100]!r}\nnearest: {data.texts_test[nearest][:100]!r}")
if args.export:
    print("exported to", keras_ssl.export_encoder(model, args.export))
