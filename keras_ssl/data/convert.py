"""Validation and conversion every source shares: examples to uint8 images or float32 vectors,
labels to int64 class indices, the held-out split, resizing."""

from __future__ import annotations

import math
import warnings

import numpy as np
import tensorflow as tf

from keras_ssl.data.base import SSLData
from keras_ssl.errors import KerasSSLError

_RESIZE_CHUNK = 1024


def check_image_size(image_size):
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


def canonical_x(x, what: str, name: str) -> tuple[np.ndarray, str]:
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
    return to_uint8(x, what, name), "images"


def to_uint8(x: np.ndarray, what: str, name: str) -> np.ndarray:
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


def canonical_labels(y_train, y_test, n_train, n_test, name):
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


def resize(x: np.ndarray, size) -> np.ndarray:
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


def split_indices(n, y, test_fraction, seed, max_examples, name, shuffle=False):
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
        train = subset(train, y, max_examples, seed)
        if test is not None:
            n_test = max(1, math.ceil(max_examples * test_fraction / (1 - test_fraction)))
            if n_test < len(test):
                test = subset(test, y, n_test, seed)
    return train, test


def subset(idx, y, size, seed):
    """A random subset of `idx` of `size`, stratified by `y` when that is possible."""
    from sklearn.model_selection import train_test_split

    try:
        keep, _ = train_test_split(
            idx, train_size=size, stratify=None if y is None else y[idx], random_state=seed
        )
    except ValueError:
        keep = np.random.default_rng(seed).permutation(idx)[:size]
    return keep


def finish(
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
        train, test = split_indices(len(x), y, test_fraction, seed, max_examples, name, shuffle)
        if test is not None:
            x_test, y_test = x[test], (None if y is None else y[test])
        if len(train) != len(x) or shuffle:
            x, y = x[train], (None if y is None else y[train])
    elif max_examples is not None and len(x) > max_examples:
        train = subset(np.arange(len(x)), y, max_examples, seed)
        x, y = x[train], (None if y is None else y[train])
    if image_size is not None:
        if kind != "images":
            raise KerasSSLError(
                f"{name}: image_size applies to images, but this source holds vectors."
            )
        x = resize(x, image_size)
        x_test = None if x_test is None else resize(x_test, image_size)
    return SSLData(x, y, x_test, y_test, kind=kind, name=name, class_names=class_names)
