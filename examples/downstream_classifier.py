"""A classifier on a pretrained encoder, with few labels: the reason to pretrain at all.

Loads an encoder exported by keras-ssl (`keras_ssl.load_encoder`) and trains the same Keras
classifier (encoder -> Dense(classes)) four ways, with 1% and with 10% of the training labels:

- linear probe: the pretrained encoder frozen, only the Dense layer learns (on standardised
  features);
- fine-tune: the pretrained encoder trained too, at a lower learning rate;
- and both again from a random-init copy of the same encoder (`keras.models.clone_model`).

Accuracy is measured on the whole held-out split.

    keras-ssl pretrain --method simclr --data digits --export saved_models/simclr
    python examples/downstream_classifier.py --encoder saved_models/simclr --data digits
    python examples/downstream_classifier.py --quick     # pretrains a tiny encoder first; seconds
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_ssl


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="saved_models/simclr",
                        help="an exported encoder (model folder or version folder)")
    parser.add_argument("--data", default="digits", help="a labelled keras_ssl data source")
    parser.add_argument("--fractions", default="0.01,0.1", help="shares of the training labels")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per classifier")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: pretrain a small encoder for one epoch, few steps")
    return parser.parse_args(argv)


def few_labels(y, fraction, seed=0):
    """Indices of a class-balanced subset: `fraction` of each class, at least one example each."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        count = max(1, int(round(fraction * len(members))))
        chosen.append(rng.choice(members, count, replace=False))
    return np.sort(np.concatenate(chosen))


def build_classifier(encoder, num_classes, trainable, x):
    """uint8 images -> encoder -> Dense logits; a frozen encoder's features standardised first."""
    encoder.trainable = trainable
    inputs = keras.Input(encoder.input_shape[1:], dtype=encoder.inputs[0].dtype)
    # training=False keeps a frozen encoder's batch-norm in inference mode; a fine-tuned one
    # follows the classifier's own training flag.
    features = encoder(inputs, training=None if trainable else False)
    if not trainable:
        # Fixed features, standardised with the mean and variance of the labelled images'
        # features (a StandardScaler, as the offline linear probe uses). A random encoder's
        # features vary by ~1e-3 around a common offset: without this a Dense layer barely learns
        # from them and the random-init baseline would look worse than it is. (A fine-tuned
        # encoder's features change as it trains; its own batch norm keeps them in range.)
        standardize = keras.layers.Normalization(axis=-1, name="standardize")
        standardize.adapt(encoder.predict(x, batch_size=256, verbose=0))
        features = standardize(features)
    outputs = keras.layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, outputs)


def train_and_score(encoder, trainable, x, y, x_test, y_test, num_classes, steps):
    keras.utils.set_random_seed(0)
    classifier = build_classifier(encoder, num_classes, trainable, x)
    # Fine-tuning moves pretrained weights gently; a lone linear layer can take bigger steps.
    learning_rate = 3e-4 if trainable else 3e-3
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    batch_size = min(32, len(x))
    epochs = max(1, steps * batch_size // len(x))
    classifier.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return classifier.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]


def pretrain_tiny_encoder(data, folder):
    """A one-epoch SimCLR encoder, so that --quick runs without a prior export."""
    model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet(data.input_shape, width=8),
                             projection_dim=16, seed=0)
    model.compile(optimizer="adam", jit_compile=False)
    model.fit(data.train_dataset(64), epochs=1, verbose=0)
    return keras_ssl.export_encoder(model, folder)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    data = keras_ssl.data.load(args.data, max_examples=512 if args.quick else None)
    if not data.has_labels or data.y_test is None:
        raise SystemExit(f"{args.data!r} needs labels and a held-out split.")
    steps = 10 if args.quick else args.steps
    path = Path(args.encoder)
    if args.quick:
        path = pretrain_tiny_encoder(data, Path(tempfile.mkdtemp()) / "encoder")
    elif not path.exists():
        raise SystemExit(f"No exported encoder at {path}. Make one with: keras-ssl pretrain "
                         f"--method simclr --data {args.data} --export {path}")
    num_classes = data.num_classes
    print(f"encoder {path}, {data.name}: {len(data.x_train)} training images "
          f"({num_classes} classes), {len(data.x_test)} held out")

    rows = []
    for fraction in (float(f) for f in args.fractions.split(",")):
        chosen = few_labels(data.y_train, fraction)
        x, y = data.x_train[chosen], data.y_train[chosen]
        scores = {}
        for mode, trainable in (("linear probe", False), ("fine-tune", True)):
            pretrained = keras_ssl.load_encoder(path, trainable=trainable)
            # The same architecture with fresh weights: the baseline every number is held against.
            random_init = keras.models.clone_model(keras_ssl.load_encoder(path, trainable=True))
            for init, encoder in (("pretrained", pretrained), ("random init", random_init)):
                scores[(mode, init)] = train_and_score(
                    encoder, trainable, x, y, data.x_test, data.y_test, num_classes, steps)
        rows.append((fraction, len(chosen), scores))

    print(f"\n{'labels':<16}{'mode':<14}{'pretrained':>12}{'random init':>13}")
    for fraction, count, scores in rows:
        for mode in ("linear probe", "fine-tune"):
            print(f"{f'{fraction:.0%} ({count})':<16}{mode:<14}"
                  f"{scores[(mode, 'pretrained')]:>12.3f}{scores[(mode, 'random init')]:>13.3f}")
    return rows


if __name__ == "__main__":
    main()
