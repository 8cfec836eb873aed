"""Image files: folders of class sub-folders (labelled) or flat folders (unlabelled), lists and
globs of files; decoded into memory (PIL, small data) or streamed (`keras_ssl.data.stream`).

`load_image_source` chooses: a stream when the decoded images would take more than
`stream.STREAM_THRESHOLD_BYTES` (or `stream=True`), memory otherwise. Listing goes through
`tf.io.gfile`, so `gs://`, `s3://` and `hdfs://` folders list like local ones.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_ssl.data import stream as stream_lib
from keras_ssl.data.base import IMAGE_EXTENSIONS, SSLData
from keras_ssl.data.convert import split_indices
from keras_ssl.data.stream import (
    PROBE_FILES,
    FilePart,
    StreamData,
    decoder_for,
    epoch_key,
)
from keras_ssl.errors import KerasSSLError

logger = logging.getLogger("keras_ssl.data")
_AUTOTUNE = tf.data.AUTOTUNE

# Above this many pixels per image, folder decoding uses threads (PIL releases the GIL while it
# decodes); below it, the per-image Python overhead dominates and threads only add contention.
_THREADED_DECODE_PIXELS = 128 * 128


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


def load_image_folder(root: Path, *, test_fraction, seed, image_size, max_examples) -> SSLData:
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
    train, test = split_indices(
        len(files), labels, test_fraction, seed, max_examples, name, shuffle=True
    )
    chosen = [*train, *([] if test is None else test)]
    chosen_files = [files[i] for i in chosen]
    images = _stack_images(_decode_all(chosen_files, image_size), chosen_files)
    x, x_test = images[: len(train)], (None if test is None else images[len(train) :])
    y = None if labels is None else labels[train]
    y_test = None if labels is None or test is None else labels[test]
    return SSLData(x, y, x_test, y_test, kind="images", name=name, class_names=class_names)


# ----- listing files ------------------------------------------------------------------------------
def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if "://" in root else os.path.join(root, *parts)


def list_files_below(root: str) -> tuple[list[str], list[str]]:
    """(images, other files) anywhere below `root`, sorted, hidden files and folders left out."""
    images, others = [], []
    for directory, subdirs, files in tf.io.gfile.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not _hidden(d.rstrip("/")))
        for f in sorted(files):
            if _hidden(f):
                continue
            (images if is_image_file(f) else others).append(join(directory, f))
    return sorted(images), sorted(others)


def list_image_folder(root: str):
    """`(files, labels or None, class_names or None, skipped, empty class folders)` of a folder of
    class sub-folders (labelled, files at any depth below each) or a flat folder of images."""
    entries = sorted(e.rstrip("/") for e in tf.io.gfile.listdir(root) if not _hidden(e))
    subdirs = [e for e in entries if tf.io.gfile.isdir(join(root, e))]
    loose = [join(root, e) for e in entries if e not in subdirs]
    files, labels, class_names, skipped, empty = [], [], [], [], []
    for d in subdirs:
        images, others = list_files_below(join(root, d))
        skipped += others
        if not images:
            empty.append(d)
            continue
        labels += [len(class_names)] * len(images)
        class_names.append(d)
        files += images
    if files:
        return files, np.asarray(labels, np.int64), class_names, skipped + loose, empty
    files = [f for f in loose if is_image_file(f)]
    return files, None, None, [f for f in loose if not is_image_file(f)] + skipped, []


def expand_file_source(source) -> list[str]:
    """A list of files or one glob pattern -> the sorted list of files."""
    if isinstance(source, (str, os.PathLike)):
        pattern = os.fspath(source)
        return sorted(tf.io.gfile.glob(pattern))
    return [os.fspath(p) for p in source]


def is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def first_readable(part, decode, limit=None):
    """`(image, label)` of the first example of `part` that decodes, or None (tries them all,
    `limit` at most)."""
    if isinstance(part, FilePart):
        labels = (np.zeros(part.count, np.int64) if part.labels is None else part.labels)
        ds = tf.data.Dataset.from_tensor_slices((part.paths.astype(str), labels))
        ds = ds.take(limit) if limit else ds
        ds = ds.map(lambda f, y: (decode(tf.io.read_file(f)), y), num_parallel_calls=_AUTOTUNE)
    else:
        ds = part.raw(epoch_key(0, 0), False)
        ds = ds.take(limit) if limit else ds

        def decoded(payload, label):
            encoded, y = part.example(payload, label)
            return decode(encoded), y

        ds = ds.map(decoded, num_parallel_calls=_AUTOTUNE)
    for image, label in ds.ignore_errors().take(1).as_numpy_iterator():
        return image, np.int64(label)
    return None


def storage_shape(part, image_size, name):
    """The storage size `(H, W, C)` of a source: `image_size` (or the size of its images when a
    sample of them agrees), C = 1 when the sampled images are all grayscale, else 3."""
    shapes = []

    def look(encoded):
        if encoded.dtype == tf.string:
            image = tf.io.decode_image(encoded, expand_animations=False)
        else:
            image = encoded if encoded.shape.rank == 3 else encoded[..., None]
        return tf.shape(image)

    if isinstance(part, FilePart):
        ds = tf.data.Dataset.from_tensor_slices(part.paths.astype(str)).take(PROBE_FILES)
        ds = ds.map(lambda f: look(tf.io.read_file(f)))
    else:
        ds = part.raw(epoch_key(0, 0), False).take(PROBE_FILES)
        ds = ds.map(lambda payload, label: look(part.example(payload, label)[0]))
    shapes = [tuple(int(v) for v in s) for s in ds.ignore_errors().as_numpy_iterator()]
    if not shapes:
        # None of the first files decodes: is there a readable one at all?
        found = first_readable(part, decoder_for((8, 8), 3))
        if found is None:
            raise KerasSSLError(
                f"{name}: none of the {part.count} image(s) could be read or decoded; there is "
                "nothing to train on. Check the files (images? truncated? empty?).")
        if image_size is None:
            raise KerasSSLError(f"{name}: pass image_size: the first images cannot be read.")
        return (*image_size, 3)
    channels = 1 if all(s[-1] in (1, 2) for s in shapes) else 3
    if image_size is not None:
        return (*image_size, channels)
    sizes = sorted({s[:2] for s in shapes})
    if len(sizes) > 1:
        (h1, w1), (h2, w2) = sizes[:2]
        raise KerasSSLError(
            f"{name}: the images have different sizes ({w1}x{h1} and {w2}x{h2}, width x height, "
            f"among the first {len(shapes)}). Pass image_size=(H, W) (--image-size) to decode "
            "them all to one storage size.")
    return (*sizes[0], channels)


# ----- building a StreamData from files -------------------------------------------------------------
def decoded_bytes(count: int, shape) -> int:
    """What `count` images of `shape` take decoded as uint8."""
    return int(count) * int(np.prod(shape))


def open_files(files, labels=None, class_names=None, *, name, image_size=None,
               test_fraction=0.2, seed=0, max_examples=None, on_bad_file="skip",
               workers=None) -> StreamData:
    """A `StreamData` over image files (labels: one class index per file, or None).

    With labels and `test_fraction > 0`, a seeded split of the files (stratified by label) is
    held out for evaluation; `max_examples` keeps a seeded subset of the training files.
    """
    from keras_ssl.data.convert import split_indices

    files = np.asarray([os.fspath(f) for f in files], dtype=object)
    if len(files) == 0:
        raise KerasSSLError(f"{name}: no image files ({', '.join(IMAGE_EXTENSIONS)}).")
    train, test = split_indices(len(files), labels, test_fraction, seed, max_examples, name)
    train, test = np.sort(train), (None if test is None else np.sort(test))
    part = FilePart(files[train], None if labels is None else labels[train])
    held_out = None if test is None else FilePart(files[test], labels[test])
    shape = storage_shape(part, image_size, name)
    return StreamData(part, name=name, input_shape=shape, class_names=class_names,
                      has_labels=labels is not None, test=held_out, on_bad_file=on_bad_file,
                      workers=workers)


def load_image_source(source, *, stream=None, cache=False, on_bad_file="skip", workers=None,
                      data_dir=None, download=False, test_fraction=0.2, seed=0, image_size=None,
                      max_examples=None):
    """The image sources that can stream (folders, files, globs, TFRecords, tfds sets) as a
    `StreamData` or, when small enough (or `stream=False`), an in-memory `SSLData`; None when
    `source` is none of these (the caller goes on with its other sources)."""
    from keras_ssl.data import tfrecord
    from keras_ssl.data.tfrecord import cache_in_files, to_memory

    if stream not in (None, True, False):
        raise KerasSSLError(f"stream must be None (automatic), True or False, got {stream!r}.")
    if not (cache in (False, True) or isinstance(cache, (str, os.PathLike))):
        raise KerasSSLError(f"cache must be False, True or a file path, got {cache!r}.")
    opts = dict(image_size=image_size, max_examples=max_examples, on_bad_file=on_bad_file,
                workers=workers)
    split = dict(test_fraction=test_fraction, seed=seed)

    def finish(data):
        if cache is True:
            return to_memory(data)
        if cache is not False:
            return cache_in_files(data, cache)
        return data

    def files_source(files, labels=None, class_names=None, name="files", in_memory=None):
        if not files:
            raise KerasSSLError(f"{name}: no image files ({', '.join(IMAGE_EXTENSIONS)}).")
        small = stream is False or (stream is None and not _too_big(files, image_size))
        if small and in_memory is not None:
            return in_memory()
        data = open_files(files, labels, class_names, name=name, **split, **opts)
        return to_memory(data) if small else finish(data)

    def records(files, name, metadata=None):
        data = tfrecord.open_records(files, name=name, metadata=metadata, **opts)
        return to_memory(data) if stream is False else finish(data)

    if isinstance(source, (list, tuple)):
        if not source or not all(isinstance(s, (str, os.PathLike)) for s in source):
            return None
        files = [os.fspath(s) for s in source]
        if all(tfrecord.is_tfrecord_file(f) for f in files):
            return records(files, "records")
        return files_source(files, name="files")
    if not isinstance(source, (str, os.PathLike)):
        return None
    text = os.fspath(source)
    remote = "://" in text
    local = os.path.expanduser(text) if not remote else text
    if is_glob(text) and not (not remote and os.path.exists(local)):
        files = expand_file_source(local)
        if not files:
            return None  # (a tfds name with a version pattern, or a glob that matches nothing)
        if all(tfrecord.is_tfrecord_file(f) for f in files):
            return records(files, os.path.basename(text) or text)
        images = [f for f in files if is_image_file(f)]
        if not images:
            raise KerasSSLError(f"None of the {len(files)} files matching {text!r} is an image "
                                f"({', '.join(IMAGE_EXTENSIONS)}) or a TFRecord file.")
        return files_source(images, name=os.path.basename(text) or text)
    if tf.io.gfile.isdir(local):
        metadata = tfrecord.read_metadata(local)
        shards = tfrecord.find_tfrecords(local)
        if metadata is not None or shards:
            name = os.path.basename(os.path.normpath(local)) or local
            if metadata and metadata.get("shards"):
                shards = [join(local, n) for n in metadata["shards"]]
            return records(shards, name, metadata)
        files, labels, class_names, skipped, _ = list_image_folder(local)
        if not files:
            return None if not remote else files_source([], name=text)
        name = os.path.basename(os.path.normpath(local)) or local

        def in_memory():
            if remote:
                return None
            from pathlib import Path

            from keras_ssl.data.folder import load_image_folder
            return load_image_folder(Path(local), **split, image_size=image_size,
                                     max_examples=max_examples)

        result = files_source(files, labels, class_names, name,
                              in_memory=None if remote else in_memory)
        if skipped and isinstance(result, StreamData):
            logger.warning("%s: left out %d file(s) that are not %s images (or lie loose beside "
                           "the class folders), e.g. %s", name, len(skipped),
                           "/".join(e[1:] for e in IMAGE_EXTENSIONS), skipped[0])
        return result
    if tf.io.gfile.exists(local) and not tf.io.gfile.isdir(local):
        if tfrecord.is_tfrecord_file(local):
            return records([local], os.path.basename(local))
        if is_image_file(local):
            return files_source([local], name=os.path.basename(local))
        return None
    return None


def _too_big(files, image_size) -> bool:
    """Would the files, decoded, take more than `stream.STREAM_THRESHOLD_BYTES`? (from their count and
    the storage size of the first ones; False when those cannot be read: the in-memory loader
    then says what is wrong)."""
    if image_size is not None:
        return decoded_bytes(len(files), (*image_size, 3)) > stream_lib.STREAM_THRESHOLD_BYTES
    try:
        shape = storage_shape(FilePart(files[:PROBE_FILES]), None, "probe")
    except KerasSSLError:
        return False
    return decoded_bytes(len(files), shape) > stream_lib.STREAM_THRESHOLD_BYTES
