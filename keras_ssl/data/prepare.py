"""`prepare`: an image folder (or list / glob of files) -> sharded TFRecords that stream fast.

Records read faster than loose files (large sequential reads, one open per shard), shard cleanly
across workers, and, resized to the training size once here, spare every epoch the decoding of
large photos. Each record is a `tf.train.Example` with `image/encoded` (the file's own bytes, or a
JPEG of the resized image with `image_size`) and `image/class/label` (int64, class folders only).
Unreadable files are left out, counted and named. Everything is written under temporary names and
renamed at the end, the `keras_ssl_shards.json` index last: a folder with that index is complete.

>>> from keras_ssl.data import prepare, load
>>> prepare.prepare("photos/", "photos-tfrecords/", shards=64, image_size=224)  # doctest: +SKIP
>>> data = load("photos-tfrecords/")                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid

import numpy as np
import tensorflow as tf

from keras_ssl.data.convert import check_image_size, split_indices
from keras_ssl.data.folder import (
    FilePart,
    expand_file_source,
    is_glob,
    join,
    list_image_folder,
    storage_shape,
)
from keras_ssl.data.stream import SHARDS_FILE, decode_image
from keras_ssl.errors import KerasSSLError
from keras_ssl.validate import check_int

logger = logging.getLogger("keras_ssl.data")

JPEG_QUALITY = 95


def _progress(total: int, verbose: int):
    """A progress bar with `update(n)` and `close()`: tqdm when installed, else Keras'."""
    if not verbose:
        class Quiet:
            def update(self, n): ...
            def close(self): ...
        return Quiet()
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="img", desc="prepare")
    except ImportError:
        import keras

        class Bar:
            def __init__(self):
                self.bar, self.done = keras.utils.Progbar(total, unit_name="img"), 0

            def update(self, n):
                self.done += n
                self.bar.update(self.done)

            def close(self):
                pass

        return Bar()


def _example(encoded: bytes, label: int) -> bytes:
    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
    if label >= 0:
        feature["image/class/label"] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=[int(label)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _encoded_stream(files, labels, size, channels):
    """(index, bytes to store, label, decoded shape) for each readable file, in order, decoded
    in parallel (the shape keeps the decoding that proves a file readable in the graph)."""
    ys = np.full(len(files), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(files)), np.asarray(files, str), ys))

    def convert(i, path, y):
        data = tf.io.read_file(path)
        if size is None:
            # Keep the file's own bytes; decoding them only proves they are an image.
            image = tf.io.decode_image(data, expand_animations=False)
            return i, data, y, tf.shape(image)
        image = decode_image(data, size, channels)
        return i, tf.io.encode_jpeg(image, quality=JPEG_QUALITY), y, tf.shape(image)

    ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.ignore_errors().prefetch(tf.data.AUTOTUNE)


def prepare(source, out_dir, *, shards: int | None = None, image_size=None,
            test_fraction: float = 0.0, seed: int = 0, verbose: int = 1) -> dict:
    """Write the images of `source` as sharded TFRecords into `out_dir`; returns the index.

    Args:
        source: a folder of class sub-folders (labels from the folder names) or of images, a
            glob pattern, or a list of image files. Paths may be `gs://`, `s3://`, ... where
            TensorFlow's file systems are installed; so may `out_dir`.
        out_dir: the output folder (created; files of an earlier `prepare` there are replaced).
        shards: number of training shards (default: about 1,000 images a shard, at least 1).
            Use at least as many as there will be workers, a few per worker is better.
        image_size: `S` or `(H, W)`: store every image decoded, resized and re-encoded as JPEG
            (quality 95) at this size; None stores each file's own bytes.
        test_fraction: hold out this share of a labelled source as `test-*` shards (stratified,
            seeded), for evaluation.
        seed: seeds the order of the images in the shards and the held-out split.
        verbose: show a progress bar.

    Returns:
        The index written to `out_dir/keras_ssl_shards.json`: shards, counts, class names, the
        skipped files (first 20) and their number.
    """
    size = check_image_size(image_size)
    if not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
        raise KerasSSLError(f"test_fraction must be in [0, 1), got {test_fraction!r}.")
    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    class_names = labels = None
    if text is not None and not is_glob(text) and tf.io.gfile.isdir(text):
        files, labels, class_names, _, _ = list_image_folder(text)
        name = os.path.basename(os.path.normpath(text))
    else:
        files = expand_file_source(source)
        name = "files"
    if not files:
        raise KerasSSLError(f"prepare: no image files in {source!r}.")
    n = len(files)
    if shards is None:
        shards = max(1, round(n / 1000))
    check_int(shards, "shards", least=1)
    files = np.asarray(files, dtype=object)
    train, test = split_indices(n, labels, float(test_fraction), seed, None, name)
    rng = np.random.default_rng(seed)
    splits = {"train": rng.permutation(train)}
    if test is not None:
        splits["test"] = rng.permutation(test)
    channels = 3
    if size is not None:
        channels = storage_shape(FilePart(files[splits["train"][:64]]), size, name)[-1]

    tf.io.gfile.makedirs(os.fspath(out_dir))
    out_dir = os.fspath(out_dir)
    tag = uuid.uuid4().hex[:8]
    written, counts, skipped = [], {}, []
    bar = _progress(n, verbose)
    started = time.monotonic()
    try:
        for split, order in splits.items():
            count = shards if split == "train" else max(1, math.ceil(shards * len(order) / max(
                len(splits["train"]), 1)))
            count = min(count, len(order))
            bounds = np.linspace(0, len(order), count + 1).astype(int)
            names = [f"{split}-{k:05d}-of-{count:05d}.tfrecord" for k in range(count)]
            shard_of = np.searchsorted(bounds, np.arange(len(order)), side="right") - 1
            writers = {}
            next_index = 0
            try:
                for i, data, y, _ in _encoded_stream(files[order], None if labels is None
                                                  else labels[order], size,
                                                  channels).as_numpy_iterator():
                    for lost in range(next_index, int(i)):
                        skipped.append(str(files[order][lost]))
                    bar.update(int(i) + 1 - next_index)
                    next_index = int(i) + 1
                    k = int(shard_of[i])
                    if k not in writers:
                        temporary = join(out_dir, f".{names[k]}.{tag}.tmp")
                        writers[k] = (tf.io.TFRecordWriter(temporary), temporary)
                        written.append((temporary, join(out_dir, names[k])))
                        counts[names[k]] = 0
                    writers[k][0].write(_example(data, int(y)))
                    counts[names[k]] += 1
                for lost in range(next_index, len(order)):
                    skipped.append(str(files[order][lost]))
                bar.update(len(order) - next_index)
            finally:
                for writer, _ in writers.values():
                    writer.close()
    except BaseException:
        for temporary, _ in written:
            if tf.io.gfile.exists(temporary):
                tf.io.gfile.remove(temporary)
        raise
    finally:
        bar.close()
    if not counts:
        raise KerasSSLError(f"prepare: none of the {n} files of {source!r} could be decoded.")
    for temporary, final in written:
        tf.io.gfile.rename(temporary, final, overwrite=True)
    final_names = sorted(os.path.basename(final) for _, final in written)
    # Shards of an earlier prepare into the same folder that this one did not write.
    for old in tf.io.gfile.listdir(out_dir):
        if old.endswith(".tfrecord") and old.startswith(("train-", "test-")) and (
                old not in final_names):
            tf.io.gfile.remove(join(out_dir, old))
    index = {
        "format": "keras-ssl image shards 1",
        "source": text if text is not None else f"{n} files",
        "shards": final_names,
        "counts": {k: counts[k] for k in final_names},
        "count": int(sum(counts.values())),
        "has_labels": labels is not None,
        "class_names": class_names,
        "image_size": None if size is None else list(size),
        "channels": channels,
        "skipped": len(skipped),
        "skipped_files": skipped[:20],
        "seconds": round(time.monotonic() - started, 1),
    }
    temporary = join(out_dir, f".{SHARDS_FILE}.{tag}.tmp")
    with tf.io.gfile.GFile(temporary, "w") as f:
        json.dump(index, f, indent=2)
    tf.io.gfile.rename(temporary, join(out_dir, SHARDS_FILE), overwrite=True)
    if skipped:
        logger.warning("prepare: left out %d unreadable file(s), e.g. %s", len(skipped),
                       ", ".join(skipped[:5]))
    return index
