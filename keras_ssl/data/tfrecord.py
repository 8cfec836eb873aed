"""Streamed record sources: TFRecord shards of encoded images, and tensorflow-datasets sets.

Both are read in sequence (never converted to NumPy): a `RecordPart` permutes the shards each epoch
(by seed and epoch), reads them interleaved and shuffles the records in a seeded buffer; see
`keras_ssl.data.stream` for the rest (decoding, bad records, workers).

TFRecords: each record a `tf.train.Example` with `image/encoded` (JPEG, PNG, GIF or BMP bytes) and
optionally `image/class/label` (int64). A folder written by `keras_ssl.data.prepare` also holds
`keras_ssl_shards.json` (counts, storage size, class names, which shards are held out), so opening
it reads no record; other shard sets are counted once when opened. Shards whose names start with
`test` or `validation` are the held-out split.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from keras_ssl.data import stream as stream_lib
from keras_ssl.data.folder import decoded_bytes, join, storage_shape
from keras_ssl.data.stream import (
    RECORD_SHUFFLE_BUFFER,
    SHARDS_FILE,
    TFRECORD_SUFFIXES,
    FilePart,
    StreamData,
    epoch_key,
    fill_gaps,
)
from keras_ssl.errors import KerasSSLError

_AUTOTUNE = tf.data.AUTOTUNE

HELD_OUT_PREFIXES = ("test", "validation", "val-", "val_")


class RecordPart:
    """TFRecord shards of encoded images, or a tfds split: read in sequence, never by index.

    `files`: the shard files (`parse(serialized) -> (encoded, label)` reads one record), or
    `reader(worker, workers) -> dataset of (encoded or pixels, label)` (a tfds split, a cache).
    `buffer`: the seeded shuffle buffer, in examples.
    """

    def __init__(self, *, count, what, files=None, parse=None, reader=None,
                 buffer=RECORD_SHUFFLE_BUFFER):
        self.files = None if files is None else [os.fspath(f) for f in files]
        self.parse = parse
        self.reader = reader
        self.count = int(count)
        self.what = what
        self.buffer = int(buffer)

    def shards_for(self, workers):
        return self.reader is not None or len(self.files) >= workers

    def raw(self, key, shuffle, worker=0, workers=1):
        """This worker's records as `(payload, label)`, shards in the order of `key`."""
        if self.reader is not None:
            return self.reader(worker, workers)
        files = self.files[worker::workers] if workers > 1 else self.files
        names = tf.constant(files)
        order = (tf.random.experimental.stateless_shuffle(
            tf.range(len(files), dtype=tf.int64), seed=key, alg="philox")
            if shuffle else tf.range(len(files), dtype=tf.int64))
        ds = tf.data.Dataset.from_tensor_slices(tf.gather(names, order)).interleave(
            tf.data.TFRecordDataset, cycle_length=min(8, len(files)), block_length=1,
            num_parallel_calls=_AUTOTUNE, deterministic=True)
        return ds.map(lambda r: (r, tf.constant(-1, tf.int64)))

    def example(self, payload, label):
        """A raw record -> (encoded bytes or pixels, int64 label)."""
        if self.parse is not None:
            return self.parse(payload)
        return payload, tf.cast(label, tf.int64)

    def stream(self, key, shuffle, take, skip, decode, initial, worker=0, workers=1):
        """Decoded `(image, label, bad_name)` of `take - skip` examples of the epoch of `key`."""
        ds = self.raw(key, shuffle, worker, workers)
        if shuffle:
            ds = _window_shuffle(ds, key, self.buffer)
        ds = ds.repeat()  # a worker whose shards hold fewer examples than an epoch reads twice
        take = tf.cast(take, tf.int64)
        skip = tf.cast(skip, tf.int64)
        ds = ds.take(take).skip(skip).enumerate()

        def decoded(position, raw):
            encoded, label = self.example(*raw)
            return position, decode(encoded), label

        ds = ds.map(decoded, num_parallel_calls=_AUTOTUNE, deterministic=True).ignore_errors()
        what, epoch = tf.constant(self.what), tf.strings.as_string(key[1])

        def names(missing):
            return tf.strings.join([what, " (example ", tf.strings.as_string(missing + skip),
                                    " of epoch ", epoch, ")"])

        return fill_gaps(ds, take - skip, names, *initial)


def _window_shuffle(ds, key, size):
    """Permute each window of `size` consecutive examples by a permutation drawn from `key` and
    the window's number (stateless: the same key gives the same order; `Dataset.shuffle` takes
    no tensor seed). Examples whose shape varies (decoded pixels of several sizes) stay in order."""
    spec = ds.element_spec
    if not all(s.shape.is_fully_defined() for s in tf.nest.flatten(spec)):
        return ds

    def permute(window, batch):
        n = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n), seed=tf.stack([key[0], key[1] * 1_000_003 + window]), alg="philox")
        return tf.nest.map_structure(lambda t: tf.gather(t, order), batch)

    return ds.batch(size).enumerate().map(permute).unbatch()


def parse_image_record(serialized):
    """A `tf.train.Example` with `image/encoded` (and optional `image/class/label`) ->
    (encoded bytes, int64 label, -1 when absent)."""
    features = tf.io.parse_single_example(serialized, {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    })
    return features["image/encoded"], features["image/class/label"]


def is_tfrecord_file(name: str) -> bool:
    base = os.path.basename(os.fspath(name)).lower()
    return any(base.endswith(s) or f"{s}-" in base for s in TFRECORD_SUFFIXES)


def find_tfrecords(folder: str) -> list[str]:
    """The TFRecord shards directly in `folder` (sorted), or []."""
    try:
        names = tf.io.gfile.listdir(folder)
    except tf.errors.OpError:
        return []
    return sorted(join(folder, n) for n in names if not n.startswith(".") and is_tfrecord_file(n))


def count_records(files) -> int:
    """How many records the shards hold (reads them once, without parsing)."""
    ds = tf.data.TFRecordDataset(list(files), num_parallel_reads=min(8, len(files)))
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1))


def open_records(files, *, name, image_size=None, max_examples=None, on_bad_file="skip",
                 workers=None, metadata=None) -> StreamData:
    """A `StreamData` over TFRecord shards (`metadata`: what `prepare` wrote beside them)."""
    files = [os.fspath(f) for f in files]
    if not files:
        raise KerasSSLError(f"{name}: no TFRecord files ({', '.join(TFRECORD_SUFFIXES)}).")
    missing = [f for f in files if not tf.io.gfile.exists(f)]
    if missing:
        raise KerasSSLError(f"{name}: no such TFRecord file: {missing[0]}.")
    metadata = metadata or {}
    counts = metadata.get("counts", {})
    held = [f for f in files if os.path.basename(f).lower().startswith(HELD_OUT_PREFIXES)]
    train = [f for f in files if f not in held]
    if not train:
        train, held = held, []

    def part(shards, what):
        known = [counts.get(os.path.basename(f)) for f in shards]
        count = sum(known) if all(c is not None for c in known) else count_records(shards)
        if count == 0:
            raise KerasSSLError(f"{name}: the {what} shards hold no record.")
        return RecordPart(count=count, what=f"a record of {what}", files=shards,
                          parse=parse_image_record)

    train_part = part(train, f"{name} (train)")
    if max_examples is not None and train_part.count > max_examples:
        train_part.count = int(max_examples)
    test_part = part(held, f"{name} (held out)") if held else None
    class_names = metadata.get("class_names")
    if "has_labels" in metadata:
        has_labels = bool(metadata["has_labels"])
    else:
        first = next(iter(tf.data.TFRecordDataset(train[:1]).map(parse_image_record).take(1)),
                     None)
        has_labels = first is not None and int(first[1]) >= 0
    if image_size is None and metadata.get("image_size"):
        shape = (*metadata["image_size"], int(metadata.get("channels", 3)))
    else:
        shape = storage_shape(train_part, image_size, name)
    return StreamData(train_part, name=name, input_shape=shape, class_names=class_names,
                      has_labels=has_labels, test=test_part if has_labels else None,
                      on_bad_file=on_bad_file, workers=workers)


def read_metadata(folder: str) -> dict | None:
    path = join(folder, SHARDS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        return json.load(f)


def open_record_folder(folder: str, **opts) -> StreamData:
    metadata = read_metadata(folder) or {}
    if metadata.get("shards"):
        files = [join(folder, n) for n in metadata["shards"]]
    else:
        files = find_tfrecords(folder)
    name = os.path.basename(os.path.normpath(folder)) or folder
    return open_records(files, name=name, metadata=metadata, **opts)


# ----- tensorflow-datasets ----------------------------------------------------------------------
def open_tfds(name, *, data_dir=None, download=False, image_size=None, max_examples=None,
              on_bad_file="skip", workers=None) -> StreamData:
    """A `StreamData` over a prepared tensorflow-datasets set, read with `builder.as_dataset`.

    Training split: "train", joined by "unlabelled" where there is one (stl10); the kNN bank is
    drawn from "train", the held-out examples from "test" (else "validation", as imagenet2012).
    """
    import tensorflow_datasets as tfds

    from keras_ssl.data.tfds import describe_builder, prepared_builder

    builder = prepared_builder(name, data_dir=data_dir, download=download)
    has_label, class_names, splits, held_out = describe_builder(builder, name)
    train_split = "train+unlabelled" if "unlabelled" in splits else "train"
    features = builder.info.features
    image_feature = features["image"]
    decoders = ({"image": tfds.decode.SkipDecoding()}
                if isinstance(image_feature, tfds.features.Image) else None)

    def reader(split):
        def read(worker, workers):
            config = tfds.ReadConfig(
                input_context=(tf.distribute.InputContext(workers, worker, 1)
                               if workers > 1 else None))
            try:
                ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                                        read_config=config)
            except Exception as e:
                raise KerasSSLError(f"Could not read split {split!r} of {name!r}: {e}") from e
            return ds.map(lambda e: (e["image"], tf.cast(e["label"], tf.int64) if has_label
                                     else tf.constant(-1, tf.int64)))
        return read

    def count(split):
        known = [splits[s].num_examples for s in split.split("+") if s in splits]
        if splits and len(known) == len(split.split("+")):
            return int(sum(known))
        ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
        return int(ds.reduce(np.int64(0), lambda n, _: n + 1))

    def part(split):
        return RecordPart(count=count(split), what=f"an example of {name}[{split}]",
                          reader=reader(split))

    train = part(train_split)
    if max_examples is not None and train.count > max_examples:
        train.count = int(max_examples)
    bank = (train if train_split == "train" else part("train")) if has_label else None
    test = part(held_out) if has_label and held_out is not None else None
    shape = tuple(image_feature.shape) if hasattr(image_feature, "shape") else ()
    if image_size is not None or len(shape) != 3 or None in shape:
        shape = storage_shape(train, image_size, name)
    return StreamData(train, name=name, input_shape=shape, class_names=class_names,
                      has_labels=has_label and train_split == "train", test=test, bank=bank,
                      on_bad_file=on_bad_file, workers=workers)


def to_memory(data: StreamData):
    """Decode a `StreamData` once (in parallel, in `tf.data`) into an in-memory `SSLData`."""
    from keras_ssl.data.base import SSLData

    def arrays(part):
        if part is None:
            return None, None
        if isinstance(part, FilePart):
            ds = part.stream(tf.range(part.count, dtype=tf.int64), data._decode, data._initial)
        else:
            ds = part.stream(epoch_key(0, 0), False, part.count, 0, data._decode, data._initial)
        ds = ds.filter(lambda image, y, bad: tf.equal(bad, ""))
        x = np.empty((part.count, *data.input_shape), np.uint8)
        y = np.empty(part.count, np.int64)
        n = 0
        for images, labels, _ in ds.batch(256).prefetch(2).as_numpy_iterator():
            x[n:n + len(images)], y[n:n + len(images)] = images, labels
            n += len(images)
        if n < part.count:
            data.bad_files.skips += part.count - n
        return x[:n], y[:n]

    x, y = arrays(data._train)
    x_test, y_test = arrays(data._test)
    if not len(x):
        raise KerasSSLError(f"{data.name}: no readable image.")
    return SSLData(x, y if data.has_labels else None, x_test,
                   y_test if x_test is not None else None, kind="images", name=data.name,
                   class_names=data.class_names)


# Decoded images a file cache's shuffle buffer may hold.
CACHE_SHUFFLE_BYTES = 256 << 20


def cache_in_files(data: StreamData, path) -> StreamData:
    """Decode the training files once into tf.data's file cache at `path` (one cache per worker:
    `path-<worker>-of-<workers>`); later epochs read the decoded images from there, in the order
    of a seeded shuffle buffer (by seed and epoch), instead of decoding again."""
    part = data._train
    if not isinstance(part, FilePart):
        raise KerasSSLError("cache=<path> applies to image files; record sources read fast "
                            "already (cache=True keeps them in memory).")
    path = os.fspath(path)
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    index, count = data.workers
    mine = FilePart(part.paths[index::count],
                    None if part.labels is None else part.labels[index::count])
    decode, initial = data._decode, data._initial
    cached = (mine.stream(tf.range(mine.count, dtype=tf.int64), decode, initial)
              .map(lambda image, y, bad: (image, y))
              .cache(f"{path}-{index}-of-{count}"))
    for _ in cached.batch(256).prefetch(2):  # the first, complete pass writes the cache
        pass
    per_image = max(int(np.prod(data.input_shape)), 1)
    cached_part = RecordPart(
        count=part.count, what=f"a cached image of {data.name}",
        reader=lambda worker, workers: cached,
        buffer=max(64, min(RECORD_SHUFFLE_BUFFER, CACHE_SHUFFLE_BYTES // per_image)))
    data._train = cached_part
    return data


def load_tfds_source(name, *, stream=None, cache=False, data_dir=None, download=False,
                     image_size=None, max_examples=None, on_bad_file="skip", workers=None):
    """A tfds image set as a `StreamData`, or None when it should load into memory (`stream=False`,
    or `stream=None` and its training split decodes to less than `stream.STREAM_THRESHOLD_BYTES`)."""
    from keras_ssl.data import tfrecord

    if stream is False:
        return None
    if stream is None and not _tfds_too_big(name, data_dir):
        return None
    data = tfrecord.open_tfds(name, data_dir=data_dir, download=download, image_size=image_size,
                              max_examples=max_examples, on_bad_file=on_bad_file,
                              workers=workers)
    if cache is True:
        return to_memory(data)
    if cache is not False:
        raise KerasSSLError("cache=<path> applies to image files; a tfds set reads its own "
                            "records (cache=True keeps it in memory).")
    return data


def _tfds_too_big(name, data_dir) -> bool:
    """Is a prepared tfds set's training split larger than `stream.STREAM_THRESHOLD_BYTES` decoded (or
    of images without a fixed size)? False when that is unknown (not prepared: the in-memory
    loader says what to do)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
        if not builder.is_prepared():
            return False
        splits = dict(builder.info.splits)
        image = builder.info.features["image"]
    except Exception:  # unknown names and features: the in-memory loader explains
        return False
    if "train" not in splits:
        return False
    count = sum(splits[s].num_examples for s in ("train", "unlabelled") if s in splits)
    shape = tuple(getattr(image, "shape", ()) or ())
    if len(shape) != 3 or None in shape:
        return True
    return decoded_bytes(count, shape) > stream_lib.STREAM_THRESHOLD_BYTES
