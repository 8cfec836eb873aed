"""The data container every source returns, and arrays -> batched `tf.data` pipelines."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.validate import check_int

# The rank of a batch of examples of each kind: images [N, H, W, C], vectors [N, F], token ids
# [N, L], series [N, T, F].
RANKS = {"images": 4, "vectors": 2, "text": 2, "series": 3}

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

SOURCES_HELP = (
    "Accepted sources: 'digits' (scikit-learn, offline) or 'digits_vectors' (the same as 64-dim "
    "vectors); a .npz file with x (and optional y, "
    "x_test, y_test); a folder of class sub-folders of png/jpg/jpeg/bmp/gif images (or a flat "
    "folder of images); a folder of MNIST-style idx files (train-images-idx3-ubyte.gz, ...); a "
    "tensorflow-datasets name such as 'cifar10' already prepared in data_dir; NumPy arrays x or "
    "(x, y) from Python."
)


@dataclasses.dataclass(repr=False)
class SSLData:
    """A training split (optionally labelled) and a labelled held-out split, as NumPy arrays.

    Attributes:
        x_train: uint8 images `[N, H, W, C]` (C in {1, 3}) or float32 vectors `[N, F]`.
        y_train: int64 class indices `[N]`, or None when the source has no labels.
        x_test: held-out examples for evaluation (kNN / linear probe), or None.
        y_test: int64 labels of `x_test`, or None.
        kind: `"images"`, `"vectors"`, `"text"` (token ids) or `"series"` (`RANKS`).
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
        if self.kind not in RANKS:
            raise KerasSSLError(
                f"SSLData.kind must be one of {', '.join(RANKS)}, got {self.kind!r}."
            )
        rank = RANKS[self.kind]
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

    @property
    def num_train(self) -> int:
        """The number of training examples."""
        return len(self.x_train)

    def resumable_dataset(self, batch_size: int, *, epochs: int, seed: int = 0,
                          start: Position | None = None, labels: bool = False) -> tf.data.Dataset:
        """The training batches of epochs `start.epoch` .. `epochs - 1` as one stream whose order
        depends only on `(seed, epoch)` (see `resumable_dataset`): what `fit_resumable` trains on."""
        if labels and self.y_train is None:
            raise KerasSSLError(f"{self.name!r} has no labels, but labels=True was asked for.")
        return resumable_dataset(self.x_train, self.y_train if labels else None,
                                 batch_size=batch_size, epochs=epochs, seed=seed,
                                 start=start or Position())

    def evaluation_arrays(self, max_examples: int, seed: int = 0):
        """`(x_bank, y_bank, x_test, y_test)`: at most `max_examples` labelled training examples
        (the kNN bank and the probe's training set) and the held-out split, as arrays; None when
        the data have no labelled held-out split. `seed` is for sources that sample."""
        if self.y_train is None or self.x_test is None or self.y_test is None:
            return None
        n = min(int(max_examples), len(self.x_train))
        return self.x_train[:n], self.y_train[:n], self.x_test, self.y_test

    def test_dataset(self, batch_size: int = 256) -> tf.data.Dataset:
        """The held-out examples in order, all of them (the last batch may be smaller)."""
        if self.x_test is None:
            raise KerasSSLError(f"{self.name!r} has no held-out split (test_fraction=0?).")
        return to_dataset(self.x_test, batch_size=min(batch_size, len(self.x_test)),
                          shuffle=False, drop_remainder=False)

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


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped: XLA wants static shapes)."""
    check_int(batch_size, "batch_size", least=1)
    steps = int(num_examples) // int(batch_size)
    if steps < 1:
        raise KerasSSLError(
            f"batch_size={batch_size} is larger than the {num_examples} training examples, so an "
            f"epoch would hold no full batch. Use batch_size <= {num_examples} or more data."
        )
    return steps


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a run stands: `step` steps of epoch `epoch` (both 0-based) are done."""

    epoch: int = 0
    step: int = 0

    def describe(self, epochs: int | None = None, steps: int | None = None) -> str:
        of_epochs = f" of {epochs}" if epochs else ""
        of_steps = f" of {steps}" if steps else ""
        return f"epoch {self.epoch + 1}{of_epochs}, after step {self.step}{of_steps}"


# ----- data --------------------------------------------------------------------------------------
def resumable_dataset(x, y=None, *, batch_size: int, epochs: int, seed: int = 0,
                      start: Position = Position()) -> tf.data.Dataset:
    """Shuffled training batches of epochs `start.epoch` .. `epochs - 1` as one stream.

    Epoch `e` visits the examples in the order of a permutation drawn from the stateless seed
    `(seed, e)` (the trailing partial batch dropped), so the same epoch always has the same batches,
    whatever the process did before; the stream starts at batch `start.step` of `start.epoch`.
    Train on it with `model.fit(ds, epochs=epochs, steps_per_epoch=steps_per_epoch(len(x),
    batch_size), initial_epoch=start.epoch)`, or let `fit_resumable` do it.

    Yields batches of `x` (uint8 images stay uint8), or `(x, y)` pairs when `y` is given, with the
    static batch size XLA needs.

    >>> x = np.arange(10)[:, None]
    >>> ds = resumable_dataset(x, batch_size=4, epochs=2, seed=0, start=Position(0, 1))
    >>> [tuple(int(v) for v in b[:, 0]) for b in ds.as_numpy_iterator()]  # epoch 0 from step 1
    [(6, 8, 2, 3), (9, 0, 2, 6), (3, 4, 1, 5)]
    """
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise KerasSSLError("The training data is empty: there is nothing to learn from.")
    n = len(x)
    if y is not None:
        y = np.asarray(y)
        if len(y) != n:
            raise KerasSSLError(f"{len(y)} labels for {n} examples; give one label per example.")
    steps = steps_per_epoch(n, batch_size)
    if not 0 <= start.step < steps or start.epoch < 0:
        raise KerasSSLError(f"Cannot start at {start}: an epoch has steps 0..{steps - 1}.")
    # Host memory: tf.data runs on the CPU (an eager tensor would be placed on a GPU and copied
    # back for every batch).
    with tf.device("/CPU:0"):
        xs = tf.convert_to_tensor(x)
        ys = None if y is None else tf.convert_to_tensor(y)
    seed = tf.constant(int(seed), tf.int64)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch]), alg="philox"
        )
        return tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[: steps * batch_size], [steps, batch_size])
        )

    remaining = max(int(epochs) - start.epoch, 0) * steps - (start.step if epochs > start.epoch
                                                             else 0)
    ds = tf.data.Dataset.range(start.epoch, max(int(epochs), start.epoch)).flat_map(epoch_batches)
    # flat_map hides the length; Keras needs it to know where the stream ends.
    ds = ds.skip(start.step).apply(tf.data.experimental.assert_cardinality(max(remaining, 0)))
    if ys is None:
        ds = ds.map(lambda i: tf.gather(xs, i), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
