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

>>> from keras_ssl import data
>>> d = data.load("digits")
>>> d.x_train.shape, d.x_train.dtype, d.x_test.shape
((1437, 32, 32, 1), dtype('uint8'), (360, 32, 32, 1))
>>> images = next(iter(d.train_dataset(256)))
>>> tuple(images.shape)
(256, 32, 32, 1)
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import math
import os
import re
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_ssl.errors import KerasSSLError

__all__ = ["IMAGE_EXTENSIONS", "SSLData", "load", "to_dataset"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

SOURCES_HELP = (
    "Accepted sources: 'digits' (scikit-learn, offline) or 'digits_vectors' (the same as 64-dim "
    "vectors); a .npz file with x (and optional y, "
    "x_test, y_test); a folder of class sub-folders of png/jpg/jpeg/bmp/gif images (or a flat "
    "folder of images); a folder of MNIST-style idx files (train-images-idx3-ubyte.gz, ...); a "
    "tensorflow-datasets name such as 'cifar10' already prepared in data_dir; NumPy arrays x or "
    "(x, y) from Python."
)

# idx type codes (http://yann.lecun.com/exdb/mnist/): big-endian payloads.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = {
    "x_train": ("train-images", "idx3"),
    "y_train": ("train-labels", "idx1"),
    "x_test": ("t10k-images", "idx3"),
    "y_test": ("t10k-labels", "idx1"),
}
_TFDS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?")
# Above this many pixels per image, folder decoding uses threads (PIL releases the GIL while it
# decodes); below it, the per-image Python overhead dominates and threads only add contention.
_THREADED_DECODE_PIXELS = 128 * 128
_RESIZE_CHUNK = 1024


# --------------------------------------------------------------------------------------------
# The data container
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(repr=False)
class SSLData:
    """A training split (optionally labelled) and a labelled held-out split, as NumPy arrays.

    Attributes:
        x_train: uint8 images `[N, H, W, C]` (C in {1, 3}) or float32 vectors `[N, F]`.
        y_train: int64 class indices `[N]`, or None when the source has no labels.
        x_test: held-out examples for evaluation (kNN / linear probe), or None.
        y_test: int64 labels of `x_test`, or None.
        kind: `"images"` or `"vectors"`.
        name: where the data came from (`"digits"`, `"cifar10"`, a file or folder name, ...).
        class_names: names of the classes (index i names label i), or None when unknown.
    """

    x_train: np.ndarray
    y_train: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    kind: str = "images"
    name: str = "arrays"
    class_names: list[str] | None = None

    def __post_init__(self):
        if self.kind not in ("images", "vectors"):
            raise KerasSSLError(f"SSLData.kind must be 'images' or 'vectors', got {self.kind!r}.")
        rank = 4 if self.kind == "images" else 2
        for field in ("x_train", "x_test"):
            x = getattr(self, field)
            if x is None:
                continue
            if not isinstance(x, np.ndarray) or x.ndim != rank:
                raise KerasSSLError(
                    f"SSLData.{field} must be a rank-{rank} NumPy array for kind={self.kind!r}; "
                    f"got {getattr(x, 'shape', type(x).__name__)}. Build SSLData with load()."
                )
        if len(self.x_train) == 0:
            raise KerasSSLError(f"{self.name}: the training split is empty.")
        if self.x_test is not None and self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise KerasSSLError(
                f"{self.name}: held-out examples have shape {self.x_test.shape[1:]} but training "
                f"examples {self.x_train.shape[1:]}; they must match."
            )
        for x_field, y_field in (("x_train", "y_train"), ("x_test", "y_test")):
            x, y = getattr(self, x_field), getattr(self, y_field)
            if y is None:
                continue
            if x is None:
                raise KerasSSLError(f"{self.name}: {y_field} is given without {x_field}.")
            if len(y) != len(x):
                raise KerasSSLError(
                    f"{self.name}: {len(y)} labels in {y_field} for {len(x)} examples in "
                    f"{x_field}; give one label per example."
                )

    @property
    def has_labels(self) -> bool:
        """Whether the training split has labels."""
        return self.y_train is not None

    @property
    def num_classes(self) -> int | None:
        """Number of classes (from `class_names`, else the largest label + 1); None without labels."""
        if self.class_names is not None:
            return len(self.class_names)
        labels = [y for y in (self.y_train, self.y_test) if y is not None and len(y)]
        if not labels:
            return None
        return int(max(int(y.max()) for y in labels)) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example: `(H, W, C)` for images, `(F,)` for vectors."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def train_dataset(
        self,
        batch_size: int,
        *,
        labels: bool = False,
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = True,
        repeat: bool = False,
    ) -> tf.data.Dataset:
        """The training split as a batched, shuffled (each epoch), prefetched `tf.data.Dataset`.

        Yields uint8 image batches (float32 for vectors), or `(images, labels)` pairs when
        `labels=True`. With `drop_remainder=True` (the default) every batch has the static shape
        `[batch_size, ...]` that XLA wants.
        """
        if labels and self.y_train is None:
            raise KerasSSLError(
                f"{self.name!r} has no labels, but labels=True was asked for. Use a labelled "
                "source (class sub-folders, a .npz with y, a tfds data set with labels) or "
                "labels=False."
            )
        return to_dataset(
            self.x_train,
            self.y_train if labels else None,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_remainder=drop_remainder,
            repeat=repeat,
        )

    def __repr__(self) -> str:
        def describe(x):
            return "None" if x is None else f"{x.dtype}{list(x.shape)}"

        return (
            f"SSLData(name={self.name!r}, kind={self.kind!r}, x_train={describe(self.x_train)}, "
            f"x_test={describe(self.x_test)}, has_labels={self.has_labels}, "
            f"num_classes={self.num_classes})"
        )


def to_dataset(
    x,
    y=None,
    batch_size: int = 256,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = True,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Arrays -> a batched, optionally shuffled (each epoch), prefetched `tf.data.Dataset`.

    Yields batches of `x` (as stored: uint8 images stay uint8), or `(x, y)` pairs when `y` is
    given. Shuffling permutes indices and gathers whole batches, so no shuffle buffer holds copies
    of the examples. With `repeat=True` the dataset is infinite (pass `steps_per_epoch` to `fit`).
    """
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise KerasSSLError("to_dataset got no examples: x is empty.")
    n = len(x)
    if y is not None:
        y = np.asarray(y)
        if len(y) != n:
            raise KerasSSLError(
                f"to_dataset got {len(y)} labels for {n} examples; give one per example."
            )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise KerasSSLError(f"batch_size must be a positive integer, got {batch_size!r}.")
    batch_size = int(batch_size)
    if drop_remainder and batch_size > n:
        raise KerasSSLError(
            f"batch_size={batch_size} is larger than the {n} examples there are, so dropping the "
            f"last partial batch would leave no batch at all. Use batch_size <= {n}, more data, "
            "or drop_remainder=False."
        )
    # Keep the arrays on the host: tf.data runs on the CPU, and on a GPU machine an eager
    # tensor would otherwise be placed on the device and copied back for every batch.
    with tf.device("/CPU:0"):
        xs = tf.convert_to_tensor(x)
        ys = None if y is None else tf.convert_to_tensor(y)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if ys is None:
        ds = ds.map(lambda i: tf.gather(xs, i), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(
            lambda i: (tf.gather(xs, i), tf.gather(ys, i)), num_parallel_calls=tf.data.AUTOTUNE
        )
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------------
# load()
# --------------------------------------------------------------------------------------------


def load(
    source="digits",
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    max_examples: int | None = None,
    download: bool = False,
) -> SSLData:
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
    size = _check_image_size(image_size)
    opts = dict(
        test_fraction=float(test_fraction),
        seed=int(seed),
        image_size=size,
        max_examples=max_examples,
    )

    if isinstance(source, (np.ndarray, tuple, list, Mapping)):
        return _load_arrays(_as_array_dict(source), name="arrays", **opts)
    if not isinstance(source, (str, os.PathLike)):
        raise KerasSSLError(
            f"Cannot load a data source of type {type(source).__name__}. {SOURCES_HELP}"
        )
    text = os.fspath(source)
    if not text.strip():
        raise KerasSSLError(f"The data source is an empty string. {SOURCES_HELP}")
    if text == "digits":
        return _load_digits(**opts)
    if text == "digits_vectors":
        return _load_digits_vectors(**opts)
    path = Path(text).expanduser()
    if path.is_dir():
        if _find_idx_files(path)["x_train"] is not None:
            return _load_idx_folder(path, **opts)
        return _load_image_folder(path, **opts)
    if path.exists():
        suffix = path.suffix.lower()
        if suffix in (".npz", ".npy"):
            return _load_arrays(_read_npz(path), name=path.name, **opts)
        raise KerasSSLError(
            f"Don't know how to read {text!r} (a {suffix or 'suffix-less'} file). {SOURCES_HELP}"
        )
    if _TFDS_NAME.fullmatch(text) and ("/" not in text or _is_tfds_builder(_tfds_base(text))):
        return _load_tfds(text, data_dir=data_dir, download=download, **opts)
    raise KerasSSLError(f"No such file or folder: {text!r}. {SOURCES_HELP}")


# --------------------------------------------------------------------------------------------
# Validation and conversion shared by every source
# --------------------------------------------------------------------------------------------


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise KerasSSLError(
            f"image_size must be an integer S or a pair (H, W) of integers, got {image_size!r}."
        )
    if min(size) < 1:
        raise KerasSSLError(f"image_size must be positive, got {image_size!r}.")
    return size


def _canonical_x(x, what: str, name: str) -> tuple[np.ndarray, str]:
    """Validate and convert examples: uint8 images [N, H, W, C] or float32 vectors [N, F]."""
    try:
        x = np.asarray(x)
    except ValueError as e:  # ragged nested lists
        raise KerasSSLError(
            f"{name}: {what} is not a regular array ({e}); give one NumPy array."
        ) from e
    if x.dtype == object or x.dtype.kind in "USV":
        raise KerasSSLError(
            f"{name}: {what} must be a numeric array, got dtype {x.dtype} (ragged or non-numeric "
            "data?). Stack the examples into one NumPy array of numbers."
        )
    if x.ndim not in (2, 3, 4):
        raise KerasSSLError(
            f"{name}: {what} has shape {x.shape}; expected images [N, H, W, C] or [N, H, W], or "
            "vectors [N, F]."
        )
    if x.shape[0] == 0 or x.size == 0:
        raise KerasSSLError(
            f"{name}: {what} is empty (shape {x.shape}); there is nothing to learn from."
        )
    if x.ndim == 2:
        if x.dtype.kind not in "biuf":
            raise KerasSSLError(f"{name}: vectors {what} must be numbers, got dtype {x.dtype}.")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise KerasSSLError(f"{name}: {what} holds NaN or infinite values; clean them first.")
        return x, "vectors"
    if x.ndim == 3:
        x = x[..., np.newaxis]
    channels = x.shape[-1]
    if channels not in (1, 3):
        hint = "Images must be channels-last with 1 (grayscale) or 3 (RGB) channels."
        if channels == 4:
            hint += " These look like RGBA: drop the alpha channel with x[..., :3]."
        elif channels == 2:
            hint += " Two channels look like grayscale + alpha: keep x[..., :1]."
        elif x.shape[1] in (1, 3):
            hint += " These look channels-first: use np.transpose(x, (0, 2, 3, 1))."
        else:
            hint += " Select or combine channels into 1 or 3 (e.g. x[..., :3])."
        raise KerasSSLError(f"{name}: {what} has shape {x.shape}, i.e. {channels} channels. {hint}")
    return _to_uint8(x, what, name), "images"


def _to_uint8(x: np.ndarray, what: str, name: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    kind = x.dtype.kind
    if kind == "b":
        raise KerasSSLError(
            f"{name}: {what} is boolean; convert it to images first, e.g. x.astype(np.uint8) * 255."
        )
    if kind == "f":
        if not np.isfinite(x).all():
            raise KerasSSLError(f"{name}: {what} holds NaN or infinite values; clean them first.")
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0 and hi <= 1:
            return np.round(x * 255.0).astype(np.uint8)
        if lo >= 0 and hi <= 255:
            return np.round(x).astype(np.uint8)
        raise KerasSSLError(
            f"{name}: float images {what} range over [{lo:g}, {hi:g}], but float images must be "
            "in [0, 1] (or [0, 255]). Rescale them, e.g. (x - x.min()) / (x.max() - x.min()), "
            "or pass uint8 images."
        )
    if kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if lo >= 0 and hi <= 255:
            return x.astype(np.uint8)
        raise KerasSSLError(
            f"{name}: integer images {what} range over [{lo}, {hi}], outside 0..255. Scale them to "
            "uint8 (e.g. 16-bit: (x >> 8).astype(np.uint8)) or to floats in [0, 1]."
        )
    raise KerasSSLError(
        f"{name}: {what} has unsupported dtype {x.dtype}; use uint8 or float images."
    )


def _canonical_labels(y_train, y_test, n_train, n_test, name):
    """int64 class indices for both splits, and class names when the labels were strings."""
    labels = []
    for y, n, what in ((y_train, n_train, "y"), (y_test, n_test, "y_test")):
        if y is None:
            labels.append(None)
            continue
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            hint = " One-hot labels? Use y.argmax(axis=1)." if y.ndim == 2 else ""
            raise KerasSSLError(
                f"{name}: {what} has shape {y.shape}; labels must be one class index per example "
                f"[N].{hint}"
            )
        if n is None:
            raise KerasSSLError(f"{name}: {what} is given but there are no matching examples.")
        if len(y) != n:
            raise KerasSSLError(
                f"{name}: {what} has {len(y)} labels but there are {n} examples; give exactly one "
                "label per example."
            )
        labels.append(y)
    present = [y for y in labels if y is not None]
    if not present:
        return None, None, None
    if any(y.dtype.kind in "USO" for y in present):
        try:
            class_names = sorted({str(v) for y in present for v in y.tolist()})
        except TypeError as e:
            raise KerasSSLError(f"{name}: labels must be integers or strings ({e}).") from e
        index = {c: i for i, c in enumerate(class_names)}
        out = [
            None if y is None else np.array([index[str(v)] for v in y.tolist()], np.int64)
            for y in labels
        ]
        return out[0], out[1], class_names
    out = []
    for y, what in zip(labels, ("y", "y_test"), strict=True):
        if y is None:
            out.append(None)
            continue
        if y.dtype.kind == "f":
            if not np.isfinite(y).all() or not np.all(y == np.round(y)):
                raise KerasSSLError(
                    f"{name}: {what} holds non-integer values; labels must be class indices 0..K-1."
                )
        elif y.dtype.kind not in "biu":
            raise KerasSSLError(f"{name}: {what} has unsupported dtype {y.dtype} for labels.")
        y = y.astype(np.int64)
        if len(y) and y.min() < 0:
            raise KerasSSLError(
                f"{name}: {what} holds negative labels ({int(y.min())}); labels must be class "
                "indices 0..K-1 (unlabelled examples: drop y)."
            )
        out.append(y)
    return out[0], out[1], None


def _resize(x: np.ndarray, size) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of uint8 images, in chunks, on the CPU."""
    if size is None or tuple(x.shape[1:3]) == tuple(size):
        return x
    out = np.empty((len(x), size[0], size[1], x.shape[-1]), np.uint8)
    with tf.device("/CPU:0"):
        for start in range(0, len(x), _RESIZE_CHUNK):
            chunk = tf.image.resize(
                tf.cast(x[start : start + _RESIZE_CHUNK], tf.float32),
                size,
                method="bilinear",
                antialias=True,
            )
            out[start : start + _RESIZE_CHUNK] = np.clip(np.round(chunk.numpy()), 0, 255).astype(
                np.uint8
            )
    return out


def _split_indices(n, y, test_fraction, seed, max_examples, name, shuffle=False):
    """Indices of the training and held-out examples (held-out None when there is none)."""
    from sklearn.model_selection import train_test_split

    # The held-out split exists for evaluation with labels (kNN / linear probe): without labels,
    # every example goes to training.
    if test_fraction > 0 and y is not None:
        n_test = math.ceil(n * test_fraction)
        if n - n_test < 1:
            raise KerasSSLError(
                f"{name}: {n} example(s) are too few to hold out test_fraction={test_fraction}; "
                "give more data or pass test_fraction=0."
            )
        try:
            train, test = train_test_split(
                np.arange(n), test_size=n_test, stratify=y, random_state=seed
            )
        except ValueError as e:  # a class with one example, fewer test slots than classes
            warnings.warn(
                f"{name}: could not stratify the held-out split by label ({e}); using a random "
                "split instead.",
                stacklevel=3,
            )
            train, test = train_test_split(np.arange(n), test_size=n_test, random_state=seed)
    else:
        train, test = np.arange(n), None
        if shuffle:
            train = np.random.default_rng(seed).permutation(n)
    if max_examples is not None and len(train) > max_examples:
        train = _subset(train, y, max_examples, seed)
        if test is not None:
            n_test = max(1, math.ceil(max_examples * test_fraction / (1 - test_fraction)))
            if n_test < len(test):
                test = _subset(test, y, n_test, seed)
    return train, test


def _subset(idx, y, size, seed):
    """A random subset of `idx` of `size`, stratified by `y` when that is possible."""
    from sklearn.model_selection import train_test_split

    try:
        keep, _ = train_test_split(
            idx, train_size=size, stratify=None if y is None else y[idx], random_state=seed
        )
    except ValueError:
        keep = np.random.default_rng(seed).permutation(idx)[:size]
    return keep


def _finish(
    x,
    y,
    x_test,
    y_test,
    *,
    kind,
    name,
    class_names,
    test_fraction,
    seed,
    image_size,
    max_examples,
    shuffle=False,
) -> SSLData:
    """Split off the held-out set if the source has none, cap, resize, and build the SSLData."""
    if x_test is None:
        train, test = _split_indices(len(x), y, test_fraction, seed, max_examples, name, shuffle)
        if test is not None:
            x_test, y_test = x[test], (None if y is None else y[test])
        if len(train) != len(x) or shuffle:
            x, y = x[train], (None if y is None else y[train])
    elif max_examples is not None and len(x) > max_examples:
        train = _subset(np.arange(len(x)), y, max_examples, seed)
        x, y = x[train], (None if y is None else y[train])
    if image_size is not None:
        if kind != "images":
            raise KerasSSLError(
                f"{name}: image_size applies to images, but this source holds vectors."
            )
        x = _resize(x, image_size)
        x_test = None if x_test is None else _resize(x_test, image_size)
    return SSLData(x, y, x_test, y_test, kind=kind, name=name, class_names=class_names)


# --------------------------------------------------------------------------------------------
# Arrays, .npz, digits
# --------------------------------------------------------------------------------------------


def _as_array_dict(source) -> dict:
    if isinstance(source, np.ndarray):
        return {"x": source}
    if isinstance(source, Mapping):
        return dict(source)
    if len(source) not in (1, 2):
        raise KerasSSLError(
            f"Pass arrays as x, (x,) or (x, y); got a {type(source).__name__} of {len(source)} items."
        )
    return {"x": source[0], "y": source[1] if len(source) == 2 else None}


def _read_npz(path: Path) -> dict:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a .npy file
            return {"x": loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except Exception as e:  # BadZipFile, zlib.error, pickled data, truncated file, ...
        raise KerasSSLError(
            f"Could not read {path} as a .npz file ({type(e).__name__}: {e}). Save it with "
            "np.savez(path, x=images, y=labels) (optionally x_test=..., y_test=...)."
        ) from e


def _load_arrays(arrays: dict, *, name, **opts) -> SSLData:
    keys = sorted(arrays)
    x = arrays.get("x", arrays.get("x_train"))
    y = arrays.get("y", arrays.get("y_train"))
    x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
    if x is None:
        raise KerasSSLError(
            f"{name}: no examples under the key 'x' (found keys: {keys or 'none'}). Save the "
            "examples as x (and labels as y), e.g. np.savez(path, x=images, y=labels)."
        )
    x, kind = _canonical_x(x, "x", name)
    if x_test is not None:
        x_test, kind_test = _canonical_x(x_test, "x_test", name)
        if kind_test != kind:
            raise KerasSSLError(f"{name}: x holds {kind} but x_test holds {kind_test}.")
        if x_test.shape[1:] != x.shape[1:] and (kind == "vectors" or opts["image_size"] is None):
            hint = " Pass image_size to resize both." if kind == "images" else ""
            raise KerasSSLError(
                f"{name}: x examples have shape {x.shape[1:]} but x_test examples {x_test.shape[1:]}; "
                f"they must match.{hint}"
            )
        if kind == "images" and x_test.shape[-1] != x.shape[-1]:
            raise KerasSSLError(
                f"{name}: x has {x.shape[-1]} channel(s) but x_test {x_test.shape[-1]}; they must match."
            )
    elif y_test is not None:
        raise KerasSSLError(f"{name}: y_test is given without x_test.")
    y, y_test, class_names = _canonical_labels(
        y, y_test, len(x), None if x_test is None else len(x_test), name
    )
    return _finish(x, y, x_test, y_test, kind=kind, name=name, class_names=class_names, **opts)


def _load_digits(*, image_size, **opts) -> SSLData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    return _finish(
        x,
        y,
        None,
        None,
        kind="images",
        name="digits",
        class_names=[str(i) for i in range(10)],
        image_size=image_size or (32, 32),
        **opts,
    )


def _load_digits_vectors(**opts) -> SSLData:
    """The 8x8 digits as 64 float32 features in [0, 1] (pixel intensities 0-16 / 16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _finish(
        (digits.data / 16.0).astype(np.float32),
        digits.target.astype(np.int64),
        None,
        None,
        kind="vectors",
        name="digits_vectors",
        class_names=[str(i) for i in range(10)],
        **opts,
    )


# --------------------------------------------------------------------------------------------
# idx folders (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------


def _find_idx_files(folder: Path) -> dict:
    found = {}
    for key, (stem, idx) in _IDX_FILES.items():
        found[key] = None
        for sep in ("-", "."):
            for ext in (".gz", ""):
                candidate = folder / f"{stem}{sep}{idx}-ubyte{ext}"
                if candidate.is_file():
                    found[key] = candidate
                    break
            if found[key] is not None:
                break
    return found


def _read_idx(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as e:
        raise KerasSSLError(
            f"Could not read the idx file {path} ({e}); replace it with a good copy."
        ) from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise KerasSSLError(
            f"{path} is not an idx file (bad magic number); replace it with a good copy."
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise KerasSSLError(f"{path} has a truncated idx header; replace it with a good copy.")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise KerasSSLError(
            f"{path} is truncated or corrupt: its header promises {dims} = {expected} bytes of data, "
            f"but it holds {len(data) - header}. Replace it with a good copy."
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _load_idx_folder(folder: Path, **opts) -> SSLData:
    files = _find_idx_files(folder)
    if files["y_train"] is None:
        raise KerasSSLError(
            f"{folder} has {files['x_train'].name} but no train-labels-idx1-ubyte[.gz] beside it."
        )
    if (files["x_test"] is None) != (files["y_test"] is None):
        have, missing = ("x_test", "y_test") if files["x_test"] else ("y_test", "x_test")
        raise KerasSSLError(
            f"{folder} has {files[have].name} but not its partner "
            f"{_IDX_FILES[missing][0]}-{_IDX_FILES[missing][1]}-ubyte[.gz]; add it or remove "
            f"{files[have].name}."
        )
    arrays = {key: (None if path is None else _read_idx(path)) for key, path in files.items()}
    name = folder.name
    for key in ("x_train", "x_test"):
        if arrays[key] is not None and arrays[key].ndim != 3:
            raise KerasSSLError(
                f"{files[key]} holds shape {arrays[key].shape}, expected images [N, H, W]."
            )
    return _load_arrays(
        {
            "x": arrays["x_train"],
            "y": arrays["y_train"],
            "x_test": arrays["x_test"],
            "y_test": arrays["y_test"],
        },
        name=name,
        **opts,
    )


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _list_image_folder(root: Path):
    """(files, labels or None, class_names or None, skipped files)."""
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    subdirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file()]

    def is_image(p: Path) -> bool:
        return p.suffix.lower() in IMAGE_EXTENSIONS

    files, labels, class_names, skipped, empty = [], [], [], [], []
    for d in subdirs:
        members = sorted(p for p in d.rglob("*") if p.is_file() and _visible(p, root))
        images = [p for p in members if is_image(p)]
        skipped += [p for p in members if not is_image(p)]
        if not images:
            empty.append(d.name)
            continue
        labels += [len(class_names)] * len(images)
        class_names.append(d.name)
        files += images
    if files:
        skipped += loose
        if empty:
            warnings.warn(
                f"{root}: ignoring {len(empty)} class folder(s) without images: {', '.join(empty[:5])}.",
                stacklevel=4,
            )
        return files, np.asarray(labels, np.int64), class_names, skipped
    # A flat folder of images: no labels.
    files = [p for p in loose if is_image(p)]
    skipped = [p for p in loose if not is_image(p)] + skipped
    return files, None, None, skipped


def _decode_image(path: Path, size):
    """One image file -> uint8 array [H, W] (grayscale) or [H, W, 3] (colour)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if size is not None and im.format == "JPEG":
                # Let libjpeg decode at a reduced scale (never below the target size): much faster
                # for large photos that are shrunk anyway.
                im.draft(im.mode, (size[1], size[0]))
            im.load()
            mode = im.mode
            if mode in ("L", "1", "LA", "La") or (mode == "P" and _palette_is_gray(im)):
                im = im.convert("L")
            elif mode.startswith("I") or mode == "F":
                arr = np.asarray(im).astype(np.float64)
                peak = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray(
                    np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
                )
            elif mode != "RGB":
                im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Exception as e:  # UnidentifiedImageError, truncated file, decompression bomb, ...
        raise KerasSSLError(
            f"Could not decode the image {path} ({type(e).__name__}: {e}). Remove or replace it."
        ) from e


def _palette_is_gray(im) -> bool:
    if im.mode != "P":
        return False
    palette = im.getpalette() or []
    rgb = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


def _decode_all(files, size) -> list:
    first = _decode_image(files[0], size)
    rest = files[1:]
    if (
        first.shape[0] * first.shape[1] >= _THREADED_DECODE_PIXELS
        and len(rest) > 1
        and (os.cpu_count() or 1) > 1
    ):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return [first, *pool.map(lambda f: _decode_image(f, size), rest)]
    return [first, *(_decode_image(f, size) for f in rest)]


def _stack_images(arrays, files) -> np.ndarray:
    sizes = [a.shape[:2] for a in arrays]
    for f, s in zip(files, sizes, strict=True):
        if s != sizes[0]:
            raise KerasSSLError(
                f"The images have different sizes: {files[0]} is {sizes[0][1]}x{sizes[0][0]} but "
                f"{f} is {s[1]}x{s[0]} (width x height). Pass image_size=(H, W) (--image-size) to "
                "resize them all to one size."
            )
    if all(a.ndim == 2 for a in arrays):
        return np.stack(arrays)[..., np.newaxis]
    # Mixed grayscale and colour: make everything RGB.
    return np.stack(
        [np.repeat(a[..., np.newaxis], 3, axis=-1) if a.ndim == 2 else a for a in arrays]
    )


def _load_image_folder(root: Path, *, test_fraction, seed, image_size, max_examples) -> SSLData:
    files, labels, class_names, skipped = _list_image_folder(root)
    if skipped:
        warnings.warn(
            f"{root}: skipped {len(skipped)} file(s) that are not {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} "
            f"images (or lie loose beside the class folders), e.g. {skipped[0]}.",
            stacklevel=3,
        )
    if not files:
        raise KerasSSLError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) in the folder {root}. Expected "
            f"{root}/<class>/<image> (labelled) or images directly in {root} (unlabelled)."
        )
    name = root.resolve().name or str(root)
    train, test = _split_indices(
        len(files), labels, test_fraction, seed, max_examples, name, shuffle=True
    )
    chosen = [*train, *([] if test is None else test)]
    chosen_files = [files[i] for i in chosen]
    images = _stack_images(_decode_all(chosen_files, image_size), chosen_files)
    x, x_test = images[: len(train)], (None if test is None else images[len(train) :])
    y = None if labels is None else labels[train]
    y_test = None if labels is None or test is None else labels[test]
    return SSLData(x, y, x_test, y_test, kind="images", name=name, class_names=class_names)


# --------------------------------------------------------------------------------------------
# tensorflow-datasets
# --------------------------------------------------------------------------------------------


def _tfds_base(name: str) -> str:
    return name.split("/")[0].split(":")[0]


def _is_tfds_builder(base: str) -> bool:
    import tensorflow_datasets as tfds

    return base in tfds.list_builders()


def _prepared_tfds_builder(name, *, data_dir, download, sources_help: str = SOURCES_HELP):
    """The tfds builder of `name`, prepared; fails fast (no implicit download) when it is not.

    Shared with `keras_ssl.text`, which reads text data sets through the same checks.
    """
    import tensorflow_datasets as tfds

    base = _tfds_base(name)
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


def _load_tfds(
    name, *, data_dir, download, test_fraction, seed, image_size, max_examples
) -> SSLData:
    import tensorflow_datasets as tfds

    builder = _prepared_tfds_builder(name, data_dir=data_dir, download=download)
    features = builder.info.features
    feature_names = list(features.keys()) if hasattr(features, "keys") else []
    if "image" not in feature_names:
        text_hint = (
            " It holds text: load it with keras_ssl.text.load and train a masked language model "
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
    held_out = (
        "test"
        if not splits or "test" in splits
        else ("validation" if "validation" in splits else None)
    )

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
    x, kind = _canonical_x(x, "images", name)
    if x_test is not None:
        x_test, _ = _canonical_x(x_test, "test images", name)
    y, y_test, names_from_strings = _canonical_labels(
        y, y_test, len(x), None if x_test is None else len(x_test), name
    )
    return _finish(
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
