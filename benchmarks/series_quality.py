"""Self-supervised learning on UCR/UEA time series: kNN and linear-probe accuracy against baselines.

For each `--set` (a UCR/UEA set shipped inside aeon or sktime, read offline by
`keras_ssl.data.series.load("ucr:<Name>")`, with the archive's own train/test split), each
`--method` pretrains the same `resnet1d` encoder (seeded: every method starts from the same
weights) on the training series without labels, for `--epochs` epochs of batches of `--batch-size`,
and its frozen embeddings are scored with `keras_ssl.evaluate`: kNN (k=5, cosine, t=0.1) and a
logistic-regression probe, fitted on the labelled training split and tested on the test split.
Beside them:

- `raw series`: the flattened series, no encoder at all;
- `random init`: the untrained encoder the methods start from;
- `supervised`: that encoder under a softmax layer, trained with the labels and cross-entropy for
  the same epochs (the same number of steps), then scored the same way on its frozen features
  (and, in the last column, its own classifier's test accuracy).

With `--pretrain-on all` the methods pretrain on the training and the test series together (still
without labels: a transductive protocol, for sets whose training split holds a few dozen series);
the probes and the supervised baseline use the labelled training split only, as before.

`simclr` uses `augment.series()` views; `masked_steps`, `forecast` and `segment_order` their
registry defaults (no augmentation). `ts2vec` trains its own encoder (`dilated_conv1d`, TS2Vec's
dilated convolutions at the paper's width: 64 channels, 320 features), so that encoder gets its own
random-init row.

    python benchmarks/series_quality.py --set GunPoint --set ItalyPowerDemand --set ArrowHead
    python benchmarks/series_quality.py --quick          # a smoke run: 2 epochs, one set
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np

import keras_ssl
from keras_ssl import augment, encoders, evaluate
from keras_ssl.data import series, to_dataset

METHODS = ("simclr", "masked_steps", "forecast", "segment_order", "ts2vec")
SETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead")


def build_method(name, encoder, seed):
    if name == "simclr":
        return keras_ssl.SimCLR(encoder, augmenter=augment.series(seed=seed), seed=seed)
    cls, preset = keras_ssl.METHODS[name]
    return cls(encoder, seed=seed, **preset)


def encoder_name(method):
    """The encoder a method trains: its own (TS2Vec's dilated convolutions) or `resnet1d`."""
    return keras_ssl.METHODS[method][0].default_encoder or "resnet1d"


def make_encoder(data, width, seed, name="resnet1d"):
    keras.utils.set_random_seed(seed)
    return encoders.build(name, data.input_shape, width=width if name == "resnet1d" else None)


def score(embed, data, k):
    train, test = embed(data.x_train), embed(data.x_test)
    return {
        "knn": evaluate.knn_accuracy(train, data.y_train, test, data.y_test, k=k),
        "linear": evaluate.linear_probe(train, data.y_train, test, data.y_test),
    }


def run_set(name, methods, epochs, batch_size, width, seed, k, jit, pretrain_on="train"):
    data = series.load(f"ucr:{name}")
    unlabelled = data.x_train
    if pretrain_on == "all":
        unlabelled = np.concatenate([data.x_train, data.x_test])
    batch = min(batch_size, len(data.x_train))
    rows = {"raw series": score(lambda x: x.reshape(len(x), -1), data, k)}
    for name in dict.fromkeys(["resnet1d", *map(encoder_name, methods)]):
        encoder = make_encoder(data, width, seed, name)
        label = "random init" if name == "resnet1d" else f"random init ({name})"
        rows[label] = score(lambda x, e=encoder: e.predict(x, verbose=0), data, k)
    for method in methods:
        start = time.perf_counter()
        model = build_method(method, make_encoder(data, width, seed, encoder_name(method)), seed)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
        model.fit(to_dataset(unlabelled, batch_size=batch, seed=seed), epochs=epochs, verbose=0)
        rows[method] = score(lambda x, m=model: m.predict(x, verbose=0), data, k)
        rows[method]["seconds"] = time.perf_counter() - start
    # Supervised: the same encoder and steps, with labels.
    start = time.perf_counter()
    encoder = make_encoder(data, width, seed)
    classifier = keras.Sequential([encoder, keras.layers.Dense(data.num_classes)])
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit,
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    classifier.fit(data.train_dataset(batch, labels=True, seed=seed), epochs=epochs, verbose=0)
    rows["supervised"] = score(lambda x: encoder.predict(x, verbose=0), data, k)
    rows["supervised"]["classifier"] = float(
        classifier.evaluate(data.x_test, data.y_test, verbose=0)[1])
    rows["supervised"]["seconds"] = time.perf_counter() - start
    return data, rows


def table(results) -> str:
    lines = ["| set | encoder | kNN (k=5) | linear probe | seconds |", "| --- | --- | --- | --- | --- |"]
    for name, (info, rows) in results.items():
        for row, values in rows.items():
            extra = (f" (classifier {values['classifier']:.3f})" if "classifier" in values else "")
            seconds = f"{values['seconds']:.0f}" if "seconds" in values else ""
            lines.append(f"| {name} {info} | {row} | {values['knn']:.3f} | "
                         f"{values['linear']:.3f}{extra} | {seconds} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", dest="sets", help=f"default: {', '.join(SETS)}")
    parser.add_argument("--method", action="append", dest="methods", choices=METHODS,
                        help="default: all")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--knn-k", type=int, default=5)
    parser.add_argument("--jit", action="store_true", help="compile the steps with XLA")
    parser.add_argument("--quick", action="store_true", help="2 epochs on GunPoint")
    parser.add_argument("--pretrain-on", choices=("train", "all"), default="train",
                        help="the series the methods pretrain on (labels are never used)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    sets = args.sets or (["GunPoint"] if args.quick else list(SETS))
    epochs = 2 if args.quick else args.epochs
    results = {}
    for name in sets:
        data, rows = run_set(name, args.methods or METHODS, epochs, args.batch_size, args.width,
                             args.seed, args.knn_k, args.jit, args.pretrain_on)
        info = (f"({len(data.x_train)} train / {len(data.x_test)} test, T={data.num_steps}, "
                f"{data.num_classes} classes)")
        results[name] = (info, rows)
        print(table({name: (info, rows)}).split("\n", 2)[2], flush=True)
    print()
    print(f"epochs={epochs}, batch={args.batch_size}, resnet1d width={args.width}, "
          f"seed={args.seed}, pretrained on {args.pretrain_on} series")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({name: rows for name, (_, rows) in results.items()}, f, indent=2)


if __name__ == "__main__":
    main()
