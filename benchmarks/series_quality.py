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
registry defaults (no augmentation). `--method NAME:KEY=VALUE,...` adds a row with options: for
`simclr` the keywords of `augment.series` set its views (`simclr:time_warp=0,crop_scale=none`),
any other goes to the method. `--seeds 0,1,2` repeats every row with each seed (the encoder's
initial weights, the batches and the corruptions all change with it) and reports the mean and
the standard deviation over the seeds. `ts2vec` trains its own encoder (`dilated_conv1d`, TS2Vec's
dilated convolutions at the paper's width: 64 channels, 320 features), so that encoder gets its own
random-init row.

    python benchmarks/series_quality.py --set GunPoint --set ItalyPowerDemand --set ArrowHead
    python benchmarks/series_quality.py --seeds 0,1,2 --set JapaneseVowels \
        --method simclr --method simclr:time_warp=0,magnitude_warp=0,crop_scale=none
    python benchmarks/series_quality.py --quick          # a smoke run: 2 epochs, one set
"""

from __future__ import annotations

import argparse
import inspect
import json
import time

import keras
import numpy as np
from _common import method_row

import keras_ssl
from keras_ssl import augment, encoders, evaluate
from keras_ssl.data import series, to_dataset

METHODS = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "nnclr", "masked_steps",
           "forecast", "segment_order", "ts2vec")
SETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead")


VIEW_OPTIONS = set(inspect.signature(augment.series).parameters) - {"seed"}


def parse_row(spec: str) -> tuple[str, str, dict]:
    """`--method NAME[:KEY=VALUE,...]` -> (method, row label, options), for argparse."""
    try:
        row = method_row(spec)
    except keras_ssl.KerasSSLError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if row[0] not in METHODS:
        raise argparse.ArgumentTypeError(f"unknown method {row[0]!r}; choose from {METHODS}")
    return row


def build_method(name, encoder, seed, options=None):
    options = dict(options or {})
    if name == "simclr":
        views = {key: options.pop(key) for key in list(options) if key in VIEW_OPTIONS}
        return keras_ssl.SimCLR(encoder, augmenter=augment.series(seed=seed, **views), seed=seed,
                                **options)
    cls, preset = keras_ssl.METHODS[name]
    return cls(encoder, seed=seed, **{**preset, **options})


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
    """Every row on one set with one seed; `methods` are `parse_row` triples."""
    data = series.load(f"ucr:{name}")
    unlabelled = data.x_train
    if pretrain_on == "all":
        unlabelled = np.concatenate([data.x_train, data.x_test])
    batch = min(batch_size, len(data.x_train))
    rows = {"raw series": score(lambda x: x.reshape(len(x), -1), data, k)}
    for name in dict.fromkeys(["resnet1d", *(encoder_name(m) for m, _, _ in methods)]):
        encoder = make_encoder(data, width, seed, name)
        label = "random init" if name == "resnet1d" else f"random init ({name})"
        rows[label] = score(lambda x, e=encoder: e.predict(x, verbose=0), data, k)
    for method, label, options in methods:
        start = time.perf_counter()
        model = build_method(method, make_encoder(data, width, seed, encoder_name(method)), seed,
                             options)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
        model.fit(to_dataset(unlabelled, batch_size=batch, seed=seed), epochs=epochs, verbose=0,
                  shuffle=False)  # the dataset is shuffled; Keras would only warn
        rows[label] = score(lambda x, m=model: m.predict(x, verbose=0), data, k)
        rows[label]["seconds"] = time.perf_counter() - start
    # Supervised: the same encoder and steps, with labels.
    start = time.perf_counter()
    encoder = make_encoder(data, width, seed)
    classifier = keras.Sequential([encoder, keras.layers.Dense(data.num_classes)])
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit,
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    classifier.fit(data.train_dataset(batch, labels=True, seed=seed), epochs=epochs, verbose=0,
                   shuffle=False)
    rows["supervised"] = score(lambda x: encoder.predict(x, verbose=0), data, k)
    rows["supervised"]["classifier"] = float(
        classifier.evaluate(data.x_test, data.y_test, verbose=0)[1])
    rows["supervised"]["seconds"] = time.perf_counter() - start
    return data, rows


def seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2]."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of seeds such as 0,1,2") from None
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"--seeds {text}: each seed once")
    return values


def combine(runs: list[dict]) -> dict:
    """One set's rows of several seeds -> per row, the mean and the standard deviation of each
    score over the seeds (`knn`, `knn_std`, ...), and the seeds' own values (`knn_runs`)."""
    rows = {}
    for label in runs[0]:
        rows[label] = {}
        for key in runs[0][label]:
            values = np.array([run[label][key] for run in runs], dtype=float)
            rows[label].update({key: float(values.mean()), f"{key}_std": float(values.std()),
                                f"{key}_runs": values.tolist()})
    return rows


def table(results) -> str:
    lines = ["| set | encoder | kNN (k=5) | linear probe | seconds |", "| --- | --- | --- | --- | --- |"]

    def value(values, key):
        spread = f" ± {values[key + '_std']:.3f}" if len(values.get(key + "_runs", [])) > 1 else ""
        return f"{values[key]:.3f}{spread}"

    for name, (info, rows) in results.items():
        for row, values in rows.items():
            extra = f" (classifier {value(values, 'classifier')})" if "classifier" in values else ""
            seconds = f"{values['seconds']:.0f}" if "seconds" in values else ""
            lines.append(f"| {name} {info} | {row} | {value(values, 'knn')} | "
                         f"{value(values, 'linear')}{extra} | {seconds} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", dest="sets", help=f"default: {', '.join(SETS)}")
    parser.add_argument("--method", action="append", dest="methods", type=parse_row,
                        metavar="NAME[:KEY=VALUE,...]",
                        help=f"default: all of {', '.join(METHODS)}; options after a colon make "
                             "a row of their own (simclr: augment.series keywords set its views)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seeds", type=seeds, default=[0], metavar="S[,S...]",
                        help="run every row with each seed; report mean ± standard deviation")
    parser.add_argument("--knn-k", type=int, default=5)
    parser.add_argument("--jit", action="store_true", help="compile the steps with XLA")
    parser.add_argument("--quick", action="store_true", help="2 epochs on GunPoint")
    parser.add_argument("--pretrain-on", choices=("train", "all"), default="train",
                        help="the series the methods pretrain on (labels are never used)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    sets = args.sets or (["GunPoint"] if args.quick else list(SETS))
    epochs = 2 if args.quick else args.epochs
    methods = args.methods or [parse_row(name) for name in METHODS]
    results = {}
    for name in sets:
        runs = []
        for seed in args.seeds:
            data, rows = run_set(name, methods, epochs, args.batch_size, args.width, seed,
                                 args.knn_k, args.jit, args.pretrain_on)
            runs.append(rows)
            print(f"# {name}, seed {seed}: " + "; ".join(
                f"{label} {row['knn']:.3f} / {row['linear']:.3f}" for label, row in rows.items()),
                flush=True)
        info = (f"({len(data.x_train)} train / {len(data.x_test)} test, T={data.num_steps}, "
                f"{data.num_classes} classes)")
        results[name] = (info, combine(runs))
    print()
    print(f"epochs={epochs}, batch={args.batch_size}, resnet1d width={args.width}, "
          f"seeds={','.join(map(str, args.seeds))}, pretrained on {args.pretrain_on} series")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({name: rows for name, (_, rows) in results.items()}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
