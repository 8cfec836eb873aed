"""Data sources -> NumPy arrays -> batched, shuffled, prefetched `tf.data` pipelines.

`load(source)` is the one entry point. It turns any accepted source into an `SSLData`: uint8 images
`[N, H, W, C]` (C in {1, 3}) or float32 vectors `[N, F]`, optional int64 labels, and a labelled
held-out split for evaluation. `SSLData.train_dataset(batch_size)` is what `Method.fit` consumes.

Accepted sources:

- `"digits"`: scikit-learn's bundled 8x8 digits (offline), upsampled to 32x32x1.
- `"digits_vectors"`: the same digits as 64-dim float32 feature vectors in [0, 1] (offline).
- a `.npz` file with `x` (and optional `y`, `x_test`, `y_test`), or a `.npy` file holding `x`.
- NumPy arrays: `load(x)`, `load((x, y))` or `load({"x": x, "y": y, "x_test": ..., "y_test": ...})`.
- a folder of class sub-folders of png/jpg/jpeg/bmp/gif images (`root/<class>/<file>`), or a flat
  folder of images (no labels).
- a folder of MNIST-style idx files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
  and optionally the `t10k-*` pair, used as the held-out split).
- a tensorflow-datasets name (`"cifar10"`, `"stl10"`, `"fashion_mnist"`, ...) already prepared in
  `data_dir`; nothing is downloaded unless `download=True`.
- a list of image files, a glob (`"photos/**/*.jpg"`), TFRecord shards of encoded images (a file,
  a glob, or a folder such as `keras_ssl.data.prepare` writes).

Image folders, files, TFRecords and tfds sets too large for memory stream instead (`stream=None`,
the default, decides from their decoded size; `stream=True` / `False` force it): `load` returns a
`StreamData` (`keras_ssl.data.stream`) with the same interface, which decodes each batch from
storage in `tf.data`.

>>> from keras_ssl import data
>>> d = data.load("digits")
>>> d.x_train.shape, d.x_train.dtype, d.x_test.shape
((1437, 32, 32, 1), dtype('uint8'), (360, 32, 32, 1))
>>> images = next(iter(d.train_dataset(256)))
>>> tuple(images.shape)
(256, 32, 32, 1)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from keras_ssl.data import text
from keras_ssl.data.arrays import (
    as_array_dict,
    load_arrays,
    load_digits,
    load_digits_vectors,
    read_npz,
)
from keras_ssl.data.base import (
    IMAGE_EXTENSIONS,
    SOURCES_HELP,
    Position,
    SSLData,
    resumable_dataset,
    steps_per_epoch,
    to_dataset,
)
from keras_ssl.data.convert import check_image_size
from keras_ssl.data.folder import load_image_folder, load_image_source
from keras_ssl.data.idx import find_idx_files, load_idx_folder
from keras_ssl.data.stream import StreamData
from keras_ssl.data.text import TextData
from keras_ssl.data.tfds import TFDS_NAME, is_tfds_builder, load_tfds, tfds_base
from keras_ssl.data.tfrecord import load_tfds_source
from keras_ssl.errors import KerasSSLError

__all__ = ["IMAGE_EXTENSIONS", "Position", "SSLData", "StreamData", "resumable_dataset", "TextData", "load", "load_text", "steps_per_epoch", "text",
           "to_dataset"]

load_text = text.load


def load(
    source="digits",
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    max_examples: int | None = None,
    download: bool = False,
    stream: bool | None = None,
    cache: bool | str | os.PathLike = False,
    on_bad_file: str = "skip",
    workers=None,
) -> SSLData | StreamData:
    """Load a data source into an `SSLData` (see the module docstring for the accepted sources).

    Args:
        source: `"digits"`, a path (`.npz`/`.npy` file, image folder, idx folder), a
            tensorflow-datasets name, or NumPy arrays (`x`, `(x, y)` or a dict like a `.npz`).
        test_fraction: share of the labelled examples held out for evaluation when the source
            has no held-out split of its own (stratified by label). 0 holds out nothing. Unlabelled
            sources keep every example for training (`x_test` is None). A source's own split (a
            .npz's `x_test`, idx `t10k-*`, tfds "test" or else "validation") is used as is.
        seed: seeds the held-out split, the order of folder sources and `max_examples` subsets.
        data_dir: tensorflow-datasets data directory (default: tfds' own, `~/tensorflow_datasets`
            or `$TFDS_DATA_DIR`).
        image_size: `S` or `(H, W)`: resize every image (bilinear). Needed for folders of mixed
            sizes. The digits default is 32.
        max_examples: keep at most this many training examples (a class-stratified random subset;
            the first ones for tfds), for quick runs. A held-out split taken from the same source
            shrinks in proportion.
        download: for tfds names only: download and prepare the data set when it is not prepared
            yet (needs internet). Off by default, because offline tfds retries for minutes.
        stream: for image folders, files, globs, TFRecords and tfds sets: True reads them batch by
            batch from storage (a `StreamData`); False decodes them into memory (an `SSLData`);
            None (the default) streams when the decoded images would take more than
            `stream.STREAM_THRESHOLD_BYTES` (1 GiB; TFRecords always stream).
        cache: with a stream: True decodes it once into memory (an `SSLData`, decoded in parallel
            by tf.data); a file path decodes the training images once into tf.data's file cache
            there, and later epochs read them back instead of decoding again.
        on_bad_file: a stream skips a file it cannot read or decode ("skip": counted, the first
            few named in the log) or stops with its name ("raise").
        workers: `(index, count)` of this worker in a multi-worker run, for streams (each worker
            reads its own files); None reads the cluster from `TF_CONFIG`.

    Images come back as uint8 `[N, H, W, C]` with C in {1, 3}; vectors as float32 `[N, F]`;
    labels as int64 class indices.
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not (0 <= test_fraction < 1)
    ):
        raise KerasSSLError(
            f"test_fraction must be a number in [0, 1) (e.g. 0.2), got {test_fraction!r}."
        )
    if max_examples is not None and (
        isinstance(max_examples, bool)
        or not isinstance(max_examples, (int, np.integer))
        or max_examples < 1
    ):
        raise KerasSSLError(
            f"max_examples must be a positive integer or None, got {max_examples!r}."
        )
    size = check_image_size(image_size)
    opts = dict(
        test_fraction=float(test_fraction),
        seed=int(seed),
        image_size=size,
        max_examples=max_examples,
    )

    # Time series: "ucr:<Name>", .csv / .ts files, a .npz or dict holding a "series" key.
    from keras_ssl.data import series as series_source

    if series_source.is_series_source(source):
        return series_source.load(source, test_fraction=float(test_fraction), seed=int(seed),
                                  max_examples=max_examples)

    stream_opts = dict(stream=stream, cache=cache, on_bad_file=on_bad_file, workers=workers)
    if isinstance(source, (tuple, list)) and source and all(
        isinstance(s, (str, os.PathLike)) for s in source
    ):
        return load_image_source(source, **stream_opts, **opts)
    if isinstance(source, (np.ndarray, tuple, list, Mapping)):
        return load_arrays(as_array_dict(source), name="arrays", **opts)
    if not isinstance(source, (str, os.PathLike)):
        raise KerasSSLError(
            f"Cannot load a data source of type {type(source).__name__}. {SOURCES_HELP}"
        )
    text = os.fspath(source)
    if not text.strip():
        raise KerasSSLError(f"The data source is an empty string. {SOURCES_HELP}")
    if text == "digits":
        return load_digits(**opts)
    if text == "digits_vectors":
        return load_digits_vectors(**opts)
    path = Path(text).expanduser()
    if path.is_dir() and find_idx_files(path)["x_train"] is not None:
        return load_idx_folder(path, **opts)
    images = load_image_source(text, **stream_opts, **opts)  # folders, files, globs, TFRecords
    if images is not None:
        return images
    if path.is_dir():
        return load_image_folder(path, **opts)
    if path.exists():
        suffix = path.suffix.lower()
        if suffix in (".npz", ".npy"):
            return load_arrays(read_npz(path), name=path.name, **opts)
        raise KerasSSLError(
            f"Don't know how to read {text!r} (a {suffix or 'suffix-less'} file). {SOURCES_HELP}"
        )
    if TFDS_NAME.fullmatch(text) and ("/" not in text or is_tfds_builder(tfds_base(text))):
        streamed = load_tfds_source(text, data_dir=data_dir, download=download,
                                    image_size=size, max_examples=max_examples, **stream_opts)
        if streamed is not None:
            return streamed
        return load_tfds(text, data_dir=data_dir, download=download, **opts)
    raise KerasSSLError(f"No such file or folder: {text!r}. {SOURCES_HELP}")
