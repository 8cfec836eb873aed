"""Self-supervised learning on time series: SimCLR, three pretext tasks and TS2Vec on a UCR set.

A UCR/UEA set shipped inside aeon or sktime (offline; `pip install 'keras-ssl[series]'`) is
loaded as float32 series `[N, T, F]`. A 1D ResNet encoder is pretrained without labels by
SimCLR on two random views per series (`augment.series()`: window crop, time and magnitude warps,
scaling, jitter), by masked-step reconstruction, by next-step forecasting and by segment-order
prediction; TS2Vec trains its own dilated-convolution encoder. Each is scored with a kNN
classifier and a linear probe on its frozen embeddings, beside the raw series and the untrained
encoders. The exported SavedModel maps
`series` (float32 `[None, T, F]`) to `embeddings`.

    python examples/time_series.py                  # GunPoint, about 5 minutes on 2 CPU cores
    python examples/time_series.py --set ArrowHead
    python examples/time_series.py --quick          # seconds
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import keras_ssl
from keras_ssl import augment, encoders, evaluate

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
parser.add_argument("--set", default="GunPoint", help="a UCR/UEA set name, or a series file")
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--export", default=None, help="export the SimCLR encoder to this folder")
args = parser.parse_args()

"""
## The series

`data.load("ucr:GunPoint")` reads the archive's own train and test split. Variable-length sets
(JapaneseVowels) come zero-padded at the end, their lengths in `lengths_train`.
"""

source = args.set if ("." in args.set or ":" in args.set) else f"ucr:{args.set}"
data = keras_ssl.data.load(source)
print(data)
epochs = args.epochs or (1 if args.quick else 100)
batch_size = min(16, len(data.x_train))


def encoder():
    keras.utils.set_random_seed(0)  # every method starts from the same weights
    return encoders.ResNet1D(data.input_shape, width=8 if args.quick else 32)


def scores(embed):
    train, test = embed(data.x_train), embed(data.x_test)
    return (evaluate.knn_accuracy(train, data.y_train, test, data.y_test, k=5),
            evaluate.linear_probe(train, data.y_train, test, data.y_test))


"""
## Baselines: the raw series and the untrained encoder
"""

rows = {"raw series": scores(lambda x: x.reshape(len(x), -1))}
untrained = encoder()
rows["random init"] = scores(lambda x: untrained.predict(x, verbose=0))

"""
## Four ways to pretrain it

SimCLR needs views made for series: pass `augmenter=augment.series()`. The pretext methods
corrupt the series themselves (hidden spans, a hidden future, shuffled segments).
"""

methods = {
    "simclr": lambda e: keras_ssl.SimCLR(e, augmenter=augment.series(seed=0), seed=0),
    "masked_steps": lambda e: keras_ssl.MaskedSteps(e, seed=0),
    "forecast": lambda e: keras_ssl.Forecast(e, seed=0),
    "segment_order": lambda e: keras_ssl.SegmentOrder(e, seed=0),
}
trained = {}
for name, build in methods.items():
    model = build(encoder())
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(data.train_dataset(batch_size), epochs=epochs, verbose=0)
    print(f"{name}: loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}")
    rows[name] = scores(lambda x, m=model: m.predict(x, verbose=0))
    trained[name] = model

"""
## TS2Vec, on its own encoder

TS2Vec contrasts the features of every step (two crops that share some steps, half the steps of
each hidden), so it trains the dilated-convolution encoder it was designed with; that encoder
untrained is the row it has to beat.
"""


def dilated_encoder():
    keras.utils.set_random_seed(0)
    return encoders.DilatedConv1D(data.input_shape, width=8 if args.quick else 64,
                                  depth=2 if args.quick else 10)


untrained_dilated = dilated_encoder()
rows["random init (dilated)"] = scores(lambda x: untrained_dilated.predict(x, verbose=0))
ts2vec = keras_ssl.TS2Vec(dilated_encoder(), seed=0)
ts2vec.compile(optimizer=keras.optimizers.Adam(1e-3))
history = ts2vec.fit(data.train_dataset(batch_size), epochs=epochs, verbose=0)
print(f"ts2vec: loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}")
rows["ts2vec"] = scores(lambda x: ts2vec.predict(x, verbose=0))
trained["ts2vec"] = ts2vec

print(f"\n{'encoder':<22}{'kNN':>8}{'linear':>8}")
for name, (knn, linear) in rows.items():
    print(f"{name:<22}{knn:>8.3f}{linear:>8.3f}")

"""
## Export

The SavedModel takes `series` (float32 `[None, T, F]`) and returns `embeddings`.
"""

if args.export:
    version = keras_ssl.export_encoder(trained["simclr"], args.export)
    print("exported to", version)
    embeddings = keras_ssl.load_encoder(version)(data.x_test[:2])
    print("embeddings of two held-out series:", np.asarray(embeddings).shape)
