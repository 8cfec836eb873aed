"""tensorflow-datasets sets already prepared in a data directory (nothing is downloaded unless
asked for)."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_ssl.data.base import SOURCES_HELP, SSLData
from keras_ssl.data.convert import canonical_labels, canonical_x, finish
from keras_ssl.errors import KerasSSLError

TFDS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?")


def tfds_base(name: str) -> str:
    return name.split("/")[0].split(":")[0]


def is_tfds_builder(base: str) -> bool:
    import tensorflow_datasets as tfds

    return base in tfds.list_builders()


def prepared_builder(name, *, data_dir, download, sources_help: str = SOURCES_HELP):
    """The tfds builder of `name`, prepared; fails fast (no implicit download) when it is not.

    Shared with `keras_ssl.data.text`, which reads text data sets through the same checks.
    """
    import tensorflow_datasets as tfds

    base = tfds_base(name)
    builders = tfds.list_builders()
    if base not in builders:
        close = difflib.get_close_matches(base.lower(), builders, n=5, cutoff=0.6)
        suggestion = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KerasSSLError(
            f"Unknown data source {name!r}: no file or folder of that name exists, and it is not "
            f"a tensorflow-datasets name.{suggestion} {sources_help}"
        )
    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    except Exception as e:  # unknown config or version, ...
        raise KerasSSLError(f"tensorflow-datasets cannot build {name!r}: {e}") from e
    if not builder.is_prepared():
        if download:
            try:
                builder.download_and_prepare()
            except Exception as e:
                raise KerasSSLError(
                    f"Downloading and preparing {name!r} into {builder.data_dir_root} failed "
                    f"({type(e).__name__}: {e}). Check the internet connection, or prepare it on "
                    f"another machine with `tfds build {base} --data_dir DIR` and copy DIR here."
                ) from e
        else:
            root = Path(os.fspath(builder.data_dir_root))
            prepared = (
                sorted(
                    str(p.parent.relative_to(root / base))
                    for p in (root / base).rglob("dataset_info.json")
                )
                if (root / base).is_dir()
                else []
            )
            found = f" Other variants are there: {', '.join(prepared)}." if prepared else ""
            raise KerasSSLError(
                f"The tensorflow-datasets data set {name!r} is not prepared in {root} (looked for "
                f"{builder.data_dir}).{found} keras-ssl does not download implicitly (offline, tfds "
                f"retries for minutes before failing). Prepare it on a machine with internet: "
                f"`tfds build {base} --data_dir DIR`, copy DIR here and pass data_dir=DIR "
                f"(--data-dir DIR); or pass download=True when this machine is online."
            )
    return builder


def describe_builder(builder, name):
    """(has_label, class_names, splits, held-out split) of a tfds builder with an 'image'
    feature and a 'train' split; a clear error otherwise. The held-out split is "test", else
    "validation", else None."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    feature_names = list(features.keys()) if hasattr(features, "keys") else []
    if "image" not in feature_names:
        text_hint = (
            " It holds text: load it with keras_ssl.data.text.load and train a masked language model "
            "(--method mlm)."
            if "text" in feature_names
            else " Export the data to a .npz instead."
        )
        raise KerasSSLError(
            f"{name!r} has no 'image' feature (features: {feature_names}); keras-ssl reads images "
            f"from 'image' and labels from 'label'.{text_hint}"
        )
    has_label = "label" in feature_names
    class_names = None
    if has_label and isinstance(features["label"], tfds.features.ClassLabel):
        class_names = list(features["label"].names)
    splits = dict(builder.info.splits)
    if splits and "train" not in splits:
        raise KerasSSLError(f"{name!r} has no 'train' split (splits: {sorted(splits)}).")
    # tfds' mock (tfds.testing.mock_data) knows no split names: any split is accepted there.
    held_out = ("test" if not splits or "test" in splits
                else ("validation" if "validation" in splits else None))
    return has_label, class_names, splits, held_out


def load_tfds(
    name, *, data_dir, download, test_fraction, seed, image_size, max_examples
) -> SSLData:
    builder = prepared_builder(name, data_dir=data_dir, download=download)
    has_label, class_names, splits, held_out = describe_builder(builder, name)

    def read(split, limit):
        try:
            ds = builder.as_dataset(split=split, shuffle_files=False)
        except Exception as e:
            raise KerasSSLError(f"Could not read split {split!r} of {name!r}: {e}") from e
        if limit is not None:
            ds = ds.take(limit)
        return _tfds_to_numpy(ds, has_label, image_size, f"{name}[{split}]")

    if held_out is not None:
        x, y = read("train", max_examples)
        x_test, y_test = read(held_out, None)
        opts = dict(test_fraction=test_fraction, seed=seed, image_size=None, max_examples=None)
    else:
        x, y = read("train", None)
        x_test = y_test = None
        opts = dict(
            test_fraction=test_fraction, seed=seed, image_size=None, max_examples=max_examples
        )
    x, kind = canonical_x(x, "images", name)
    if x_test is not None:
        x_test, _ = canonical_x(x_test, "test images", name)
    y, y_test, names_from_strings = canonical_labels(
        y, y_test, len(x), None if x_test is None else len(x_test), name
    )
    return finish(
        x,
        y,
        x_test,
        y_test,
        kind=kind,
        name=name,
        class_names=class_names or names_from_strings,
        **opts,
    )


def _tfds_to_numpy(ds, has_label, image_size, what):
    def pick(example):
        image = example["image"]
        if image_size is not None:
            image = tf.cast(
                tf.clip_by_value(
                    tf.round(
                        tf.image.resize(tf.cast(image, tf.float32), image_size, antialias=True)
                    ),
                    0,
                    255,
                ),
                tf.uint8,
            )
        return (image, example["label"]) if has_label else (image,)

    ds = ds.map(pick, num_parallel_calls=tf.data.AUTOTUNE)
    images, labels = [], []
    if ds.element_spec[0].shape.is_fully_defined():
        for batch in ds.batch(2048).as_numpy_iterator():
            images.append(batch[0])
            if has_label:
                labels.append(batch[1])
        if not images:
            raise KerasSSLError(f"{what} is empty.")
        x = np.concatenate(images)
    else:
        for example in ds.as_numpy_iterator():
            images.append(example[0])
            if has_label:
                labels.append(example[1])
        if not images:
            raise KerasSSLError(f"{what} is empty.")
        shapes = {a.shape for a in images}
        if len(shapes) > 1:
            a, b = sorted(shapes)[:2]
            raise KerasSSLError(
                f"{what} holds images of different sizes (e.g. {a} and {b}). Pass image_size=(H, W) "
                "(--image-size) to resize them all to one size."
            )
        x = np.stack(images)
    y = (
        (np.concatenate(labels) if labels and np.ndim(labels[0]) else np.asarray(labels))
        if has_label
        else None
    )
    return x, y
