"""Images streamed from storage: decoded and resized in `tf.data` on the host, never all in memory.

`StreamData` has the interface the training code uses from `SSLData` (`input_shape`, `num_train`,
`train_dataset`, `resumable_dataset`, `test_dataset`, `evaluation_arrays`), but keeps only file
names (or shard names) in memory. Each batch is read, decoded (`tf.io.decode_image`, any JPEG, PNG,
GIF or BMP: CMYK, 16-bit and palette images are converted) and resized to the storage size in
parallel on the host; the pixels stay uint8 until the model, whose graph augments them.

Sources (all paths through `tf.io.gfile`, so `gs://`, `s3://` and `hdfs://` work where
TensorFlow's file systems are installed):

- an image folder: class sub-folders (labelled, any depth below each class) or a flat folder;
- a list of image files, or a glob pattern (`"photos/**/*.jpg"` is `tf.io.gfile.glob`'s syntax);
- TFRecord shards of encoded images (`image/encoded` bytes, optional `image/class/label` int64),
  such as `keras_ssl.data.prepare` writes;
- a tensorflow-datasets set read with `builder.as_dataset` (stl10's `unlabelled` split joins the
  training split; imagenet2012 when prepared).

Order. Epoch `e` visits the examples in an order that depends only on `(seed, e)`: a permutation
of the file list for files; a permutation of the shards, read interleaved, then a seeded shuffle
buffer for records. A stream can start at any `(epoch, step)` without decoding what comes before,
so a resumed run sees exactly the batches an uninterrupted one would have.

Bad files. A file that cannot be read or decoded (truncated, not an image, empty, deleted during
the run) is skipped: its place in the batch is taken by the previous good image of the stream, so
every epoch keeps its length and every later batch its position (resume stays exact). Each one is
counted (`StreamData.bad_files`) and the first few are named in the log (logger `keras_ssl.data`);
with `on_bad_file="raise"` the first one stops the run with its name. A source in which no image
can be read is an error when it is loaded, before training.

Several workers (`TF_CONFIG` names a cluster of several workers, or `workers=(index, count)`):
each worker reads its own files. For a file list, global batch `j` is the same set of files as in
a single process, and worker `i` reads the `i`-th part of it; for record shards, worker `i` reads
shards `i, i + count, ...` (when there are at least `count` shards). The streams carry
`AutoShardPolicy.OFF`, so `tf.distribute` does not shard them again; they yield global batches,
which the strategy splits across the workers' replicas.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading

import numpy as np
import tensorflow as tf

from keras_ssl.data.base import Position, steps_per_epoch
from keras_ssl.errors import KerasSSLError
from keras_ssl.validate import check_int

logger = logging.getLogger("keras_ssl.data")

# load(stream=None) streams a source when its decoded images would take more than this.
STREAM_THRESHOLD_BYTES = 1 << 30
# Bad files named in the log before the rest are only counted.
NAMED_BAD_FILES = 5
# Shuffle buffer of record streams (serialized, still encoded examples).
RECORD_SHUFFLE_BUFFER = 4096
# A source is an error when none of its first this many files decodes (then every file is tried).
PROBE_FILES = 16
# Decoded examples checked for gaps (skipped files) at a time.
FILL_CHUNK = 64
ON_BAD_FILE = ("skip", "raise")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec")
SHARDS_FILE = "keras_ssl_shards.json"
_AUTOTUNE = tf.data.AUTOTUNE


# ----- decoding -----------------------------------------------------------------------------
def decode_image(encoded, size, channels: int):
    """Encoded bytes -> uint8 `[H, W, C]` at `size` (bilinear, antialiased when shrinking).

    Fails (an `InvalidArgumentError` inside `tf.data`) on bytes that are not a whole image.
    """
    image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8, expand_animations=False)
    return resize_image(image, size, channels)


def resize_image(image, size, channels: int):
    """A uint8 image of any size -> uint8 `[size, channels]` (unchanged when the size matches)."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    have = image.shape[-1]
    if have is not None and have != channels:
        image = tf.image.rgb_to_grayscale(image[..., :3]) if channels == 1 else (
            tf.image.grayscale_to_rgb(image) if have == 1 else image[..., :3])
    height, width = size

    def resized():
        out = tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
    out = tf.cond(same, lambda: tf.cast(image, tf.uint8), resized)
    return tf.ensure_shape(out, [height, width, channels])


# ----- bad files ---------------------------------------------------------------------------------
class BadFiles:
    """The files a stream skipped: `count` distinct ones (`skips`: how often, over the epochs),
    the first `NAMED_BAD_FILES` named in the log and in `named`."""

    def __init__(self, name: str, on_bad_file: str = "skip"):
        if on_bad_file not in ON_BAD_FILE:
            raise KerasSSLError(
                f"on_bad_file must be one of {', '.join(ON_BAD_FILE)}, got {on_bad_file!r}."
            )
        self.name = name
        self.on_bad_file = on_bad_file
        self.skips = 0
        self.named: list[str] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return len(self._seen)

    def report(self, names) -> bool:
        """Record the non-empty `names` (called from the stream, once per batch that has any)."""
        for raw in np.asarray(names).reshape(-1):
            name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if not name:
                continue
            if self.on_bad_file == "raise":
                raise KerasSSLError(
                    f"{self.name}: could not read or decode {name} (on_bad_file='raise'). Remove "
                    "or replace it, or pass on_bad_file='skip' to skip unreadable files."
                )
            with self._lock:
                self.skips += 1
                if name in self._seen:
                    continue
                self._seen.add(name)
                if len(self.named) < NAMED_BAD_FILES:
                    self.named.append(name)
                    logger.warning("%s: skipped an unreadable image (its place in the batch "
                                   "goes to the previous image): %s", self.name, name)
                elif self.count == NAMED_BAD_FILES + 1:
                    logger.warning("%s: more unreadable images skipped; only counting them now "
                                   "(StreamData.bad_files).", self.name)
        return True

    def __repr__(self):
        return f"BadFiles(count={self.count}, skips={self.skips}, named={self.named})"


def fill_gaps(decoded, end, names, initial_image, initial_label):
    """Put the previous good example wherever a failed one was dropped.

    `decoded` yields `(position, image, label)` in increasing position, with some positions missing
    (dropped by `ignore_errors`); the result has one `(image, label, bad_name)` per position in
    `0 .. end - 1`, `bad_name` naming the dropped example ("" for the good ones).
    `names(positions)` maps missing positions to names.
    """
    end = tf.cast(end, tf.int64)
    sentinel = tf.data.Dataset.from_tensors(
        (end, tf.zeros_like(initial_image), tf.zeros_like(initial_label)))
    stream = decoded.concatenate(sentinel)

    def step(state, chunk):
        # One step per chunk of FILL_CHUNK examples (not per example: the fill is cheap when
        # nothing is missing, which is nearly always).
        expected, last_image, last_label = state
        positions, images, labels = chunk
        real = positions < end  # the sentinel is not an example
        positions = tf.boolean_mask(positions, real)
        images, labels = tf.boolean_mask(images, real), tf.boolean_mask(labels, real)
        upto = tf.cond(tf.reduce_all(real), lambda: positions[-1], lambda: end - 1)
        wanted = tf.range(expected, upto + 1)
        # The newest good example at or before each wanted position (-1: the one before the chunk)
        source = tf.searchsorted(positions[None], wanted[None], side="right")[0]
        pool_positions = tf.concat([[tf.constant(-1, tf.int64)], positions], axis=0)
        out_images = tf.gather(tf.concat([last_image[None], images], axis=0), source)
        out_labels = tf.gather(tf.concat([last_label[None], labels], axis=0), source)
        missing = tf.not_equal(tf.gather(pool_positions, source), wanted)
        bad = tf.cond(tf.reduce_any(missing),
                      lambda: tf.where(missing, names(wanted), ""),
                      lambda: tf.fill(tf.shape(wanted), ""))
        count = tf.shape(wanted)[0]
        new_image = tf.cond(count > 0, lambda: out_images[-1], lambda: last_image)
        new_label = tf.cond(count > 0, lambda: out_labels[-1], lambda: last_label)
        return (upto + 1, new_image, new_label), (out_images, out_labels, bad)

    initial = (tf.constant(0, tf.int64), initial_image, initial_label)
    return stream.batch(FILL_CHUNK).scan(initial, step).unbatch()


def _with_report(ds, bad_files: BadFiles, labels: bool):
    """Batches of `(images, labels, bad)` -> `images` or `(images, labels)`, reporting bad names."""

    def strip(images, y, bad):
        reported = tf.cond(
            tf.reduce_any(tf.not_equal(bad, "")),
            lambda: tf.py_function(bad_files.report, [bad], Tout=tf.bool),
            lambda: tf.constant(True),
        )
        with tf.control_dependencies([reported]):
            images = tf.identity(images)
        return (images, y) if labels else images

    return ds.map(strip, num_parallel_calls=_AUTOTUNE)


def _no_auto_shard(ds):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def epoch_key(seed, epoch):
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])


# ----- the parts of a source ------------------------------------------------------------------
class FilePart:
    """A list of image files (with optional int64 labels): random access by index."""

    def __init__(self, paths, labels=None):
        self.paths = np.asarray([os.fspath(p) for p in paths], dtype=object)
        self.labels = None if labels is None else np.asarray(labels, np.int64)
        self.count = len(self.paths)
        self.by_file = True

    def order(self, key, shuffle):
        n = self.count
        return (tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key,
                                                         alg="philox")
                if shuffle else tf.range(n, dtype=tf.int64))

    def stream(self, order, decode, initial):
        """Decoded `(image, label, bad_name)` for the files at `order` (a 1-D int64 tensor)."""
        paths = tf.constant(self.paths.astype(str))
        labels = (tf.zeros([self.count], tf.int64) if self.labels is None
                  else tf.constant(self.labels))
        files = tf.gather(paths, order)
        ys = tf.gather(labels, order)
        n = tf.size(order, out_type=tf.int64)
        ds = tf.data.Dataset.from_tensor_slices((tf.range(n), files, ys))
        ds = ds.map(lambda p, f, y: (p, decode(tf.io.read_file(f)), y),
                    num_parallel_calls=_AUTOTUNE, deterministic=True).ignore_errors()
        return fill_gaps(ds, n, lambda missing: tf.gather(files, missing), *initial)


def decoder_for(size, channels):
    def decode(encoded):
        if encoded.dtype == tf.string:
            return decode_image(encoded, size, channels)
        return resize_image(encoded, size, channels)  # tfds without SkipDecoding: pixels already
    return decode


# ----- the container ----------------------------------------------------------------------------
class StreamData:
    """Images read from storage batch by batch; the interface of `SSLData` for images.

    Build it with `keras_ssl.data.load(source, stream=True)` (or `stream=None`, the default, which
    streams large sources). Attributes: `kind` ("images"), `name`, `input_shape` (the storage size
    `(H, W, C)` every image is decoded and resized to), `has_labels`, `num_classes`,
    `class_names`, `num_train`, `num_test`, `workers` (`(index, count)`), `bad_files` (a
    `BadFiles`: how many were skipped, and the first names).

    Args:
        train: the training examples (`FilePart` or `RecordPart`).
        test: the labelled held-out examples, or None.
        bank: the labelled examples the kNN bank is drawn from (default: `train` when labelled).
        on_bad_file: "skip" (count, name the first few in the log, go on) or "raise".
        workers: `(index, count)`, or None / "auto": from `TF_CONFIG` when it names a cluster of
            several workers, else `(0, 1)`.
    """

    kind = "images"

    def __init__(self, train, *, name, input_shape, class_names=None, has_labels=False,
                 test=None, bank=None, on_bad_file="skip", workers=None):
        self.name = name
        self._train = train
        self._test = test
        self._bank = bank if bank is not None else (train if has_labels else None)
        self.class_names = None if class_names is None else list(class_names)
        self.has_labels = bool(has_labels)
        height, width, channels = (int(d) for d in input_shape)
        self.input_shape = (height, width, channels)
        self.bad_files = BadFiles(name, on_bad_file)
        self.workers = _resolve_workers(workers)
        self._decode = decoder_for((height, width), channels)
        from keras_ssl.data.folder import first_readable

        found = first_readable(train, self._decode)
        if found is None:
            raise KerasSSLError(
                f"{name}: none of the {train.count} training image(s) could be read or decoded; "
                "there is nothing to train on. Check the files (images? truncated? empty?).")
        self._initial = (tf.constant(found[0], tf.uint8), tf.constant(found[1], tf.int64))

    # ----- what SSLData also has ------------------------------------------------------------
    @property
    def num_train(self) -> int:
        """The number of training examples (files or records; bad ones included)."""
        return self._train.count

    @property
    def num_test(self) -> int:
        return 0 if self._test is None else self._test.count

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def train_dataset(self, batch_size: int, *, labels: bool = False, shuffle: bool = True,
                      seed: int = 0, drop_remainder: bool = True,
                      repeat: bool = False) -> tf.data.Dataset:
        """The training split as batches of uint8 images (or `(images, labels)`), decoded as
        they are needed; each pass (and each epoch of `repeat=True`) in a fresh order."""
        self._check_labels(labels)
        count = self.workers[1]
        if count > 1 or drop_remainder:
            steps = steps_per_epoch(self.num_train, batch_size)
            per_epoch = steps * batch_size // self._check_split(batch_size)
        else:
            check_int(batch_size, "batch_size", least=1)
            per_epoch = self.num_train
        keys = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True)
        keys = keys if repeat else keys.take(1)
        ds = keys.flat_map(lambda k: self._epoch(
            tf.stack([k, tf.constant(0, tf.int64)]), shuffle, per_epoch, 0, batch_size,
            drop_remainder, batch=count == 1))
        if count > 1:
            ds = self._whole_batches(ds, None if repeat else per_epoch, batch_size)
        return self._finish(ds, labels)

    def resumable_dataset(self, batch_size: int, *, epochs: int, seed: int = 0,
                          start: Position | None = None, labels: bool = False) -> tf.data.Dataset:
        """The training batches of epochs `start.epoch` .. `epochs - 1` as one stream whose order
        depends only on `(seed, epoch)`, starting at batch `start.step` without decoding the
        batches before it: what `checkpoint.fit_resumable` trains on."""
        self._check_labels(labels)
        start = start or Position()
        steps = steps_per_epoch(self.num_train, batch_size)
        if not 0 <= start.step < steps or start.epoch < 0:
            raise KerasSSLError(f"Cannot start at {start}: an epoch has steps 0..{steps - 1}.")
        count = self._check_split(batch_size)
        per_epoch = steps * batch_size // count
        skip = start.step * batch_size // count
        first, last = int(start.epoch), max(int(epochs), int(start.epoch))
        seed_t = tf.constant(int(seed), tf.int64)

        def epoch_batches(epoch):
            offset = tf.where(tf.equal(epoch, first), tf.constant(skip, tf.int64),
                              tf.constant(0, tf.int64))
            return self._epoch(epoch_key(seed_t, epoch), True, per_epoch, offset, batch_size,
                               True, batch=count == 1)

        ds = tf.data.Dataset.range(first, last).flat_map(epoch_batches)
        remaining = max(int(epochs) - first, 0) * steps - (start.step if epochs > first else 0)
        if count > 1:
            # One continuous stream of this worker's parts of the global batches; the strategy
            # splits each element into the workers' parts again, and a global step takes one.
            ds = self._whole_batches(ds, max(remaining, 0) * batch_size // count, batch_size)
            remaining = math.ceil(max(remaining, 0) / count)
        ds = ds.apply(tf.data.experimental.assert_cardinality(max(remaining, 0)))
        return self._finish(ds, labels)

    def test_dataset(self, batch_size: int = 256, *, labels: bool = False) -> tf.data.Dataset:
        """The held-out examples in order, all of them (the last batch may be smaller)."""
        if self._test is None:
            raise KerasSSLError(f"{self.name!r} has no held-out split (test_fraction=0?).")
        check_int(batch_size, "batch_size", least=1)
        ds = self._part_stream(self._test, epoch_key(0, 0), False, self._test.count, 0)
        ds = ds.batch(min(batch_size, self._test.count), drop_remainder=False)
        return _with_report(ds, self.bad_files, labels).prefetch(_AUTOTUNE)

    def evaluation_arrays(self, max_examples: int, seed: int = 0):
        """A bounded, seeded sample for evaluation: `(x_bank, y_bank, x_test, y_test)` NumPy
        arrays of at most `max_examples` examples each (the kNN bank drawn from the training
        split, the scored examples from the held-out split; unreadable files left out), or None
        when the source has no labels or no held-out split."""
        check_int(max_examples, "max_examples", least=1)
        if self._bank is None or self._test is None:
            return None
        return (*self._sample(self._bank, max_examples, seed),
                *self._sample(self._test, max_examples, seed + 1))

    # ----- helpers ------------------------------------------------------------------------
    def _check_labels(self, labels):
        if labels and not self.has_labels:
            raise KerasSSLError(
                f"{self.name!r} has no labels, but labels=True was asked for. Use a labelled "
                "source (class sub-folders, records with image/class/label, a tfds set with "
                "labels) or labels=False.")

    def _check_split(self, batch_size):
        count = self.workers[1]
        if count > 1 and batch_size % count:
            raise KerasSSLError(
                f"batch_size={batch_size} must be divisible by the {count} workers: each reads "
                "an equal part of every global batch.")
        return count

    def _part_stream(self, part, key, shuffle, take, skip, batch_size=None, worker=False):
        """Decoded `(image, label, bad)`: `take` examples of the epoch of `key` (this worker's
        part when `worker`), from the `skip`-th on."""
        index, count = self.workers if worker else (0, 1)
        if isinstance(part, FilePart):
            order = part.order(key, shuffle)
            if count > 1:
                # Worker i reads the i-th part of every global batch: batch j holds the same
                # files as in one process.
                steps = take * count // batch_size
                order = tf.reshape(order[: steps * batch_size], [steps, count, -1])[:, index]
                order = tf.reshape(order, [-1])
            return part.stream(order[skip:take], self._decode, self._initial)
        if part.shards_for(count):
            return part.stream(key, shuffle, take, skip, self._decode, self._initial, index,
                               count)
        # Fewer shards than workers: each worker reads them all and keeps its own examples.
        ds = part.stream(key, shuffle, take * count, skip * count, self._decode, self._initial)
        return ds.shard(count, index)

    def _epoch(self, key, shuffle, per_epoch, skip, batch_size, drop_remainder, batch=True):
        ds = self._part_stream(self._train, key, shuffle, per_epoch, skip, batch_size,
                               worker=True)
        return ds.batch(batch_size, drop_remainder=drop_remainder) if batch else ds

    def _whole_batches(self, ds, examples, batch_size):
        """Batches of `batch_size` of a worker's stream of `examples` (None: endless), the last
        one filled up with copies of one image: `tf.distribute` splits every batch into equal
        parts only when it is whole, and the filling is never reached (the steps end first)."""
        if examples is not None and examples % batch_size:
            image, label = self._initial
            filler = tf.data.Dataset.from_tensors((image, label, tf.constant("")))
            ds = ds.concatenate(filler.repeat(batch_size - examples % batch_size))
        return ds.batch(batch_size, drop_remainder=examples is None)

    def _finish(self, ds, labels):
        ds = _with_report(ds, self.bad_files, labels).prefetch(_AUTOTUNE)
        return _no_auto_shard(ds) if self.workers[1] > 1 else ds

    def _sample(self, part, max_examples, seed):
        n = min(part.count, max_examples)
        if isinstance(part, FilePart):
            order = np.sort(np.random.default_rng(seed).permutation(part.count)[:n])
            ds = part.stream(tf.constant(order, tf.int64), self._decode, self._initial)
        else:
            ds = part.stream(epoch_key(seed, 0), True, n, 0, self._decode, self._initial)
        ds = ds.filter(lambda image, y, bad: tf.equal(bad, ""))
        images, ys = [], []
        for x, y, _ in ds.batch(256).prefetch(1).as_numpy_iterator():
            images.append(x)
            ys.append(y)
        if not images:
            raise KerasSSLError(f"{self.name}: no readable image in the evaluation sample.")
        return np.concatenate(images), np.concatenate(ys)

    def __repr__(self):
        return (f"StreamData(name={self.name!r}, input_shape={self.input_shape}, "
                f"num_train={self.num_train}, num_test={self.num_test}, "
                f"has_labels={self.has_labels}, num_classes={self.num_classes}, "
                f"workers={self.workers})")


def _resolve_workers(workers):
    if workers is None or workers == "auto":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            return (0, 1)
        try:
            config = json.loads(raw)
            cluster = config.get("cluster", {})
            chiefs, members = list(cluster.get("chief", [])), list(cluster.get("worker", []))
            task = config.get("task", {})
            kind, number = task.get("type"), int(task.get("index", 0))
        except (ValueError, AttributeError, TypeError):
            return (0, 1)
        if len(chiefs) + len(members) < 2 or kind not in ("chief", "worker"):
            return (0, 1)
        return (number if kind == "chief" else len(chiefs) + number, len(chiefs) + len(members))
    try:
        index, count = (int(v) for v in workers)
    except (TypeError, ValueError) as e:
        raise KerasSSLError(f"workers must be (index, count) or 'auto', got {workers!r}.") from e
    if count < 1 or not 0 <= index < count:
        raise KerasSSLError(f"workers=(index, count) needs 0 <= index < count, got {workers!r}.")
    return (index, count)
