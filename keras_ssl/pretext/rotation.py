"""RotNet's labels: exact quarter turns of every image (Gidaris, Singh, Komodakis, ICLR 2018)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.images import check_static_images
from keras_ssl.pretext._common import batch_size
from keras_ssl.validate import is_int


def _rot90(images: tf.Tensor, k: int) -> tf.Tensor:
    """`np.rot90(images, k, axes=(1, 2))`: k quarter turns counter-clockwise, exact."""
    k %= 4
    if k == 0:
        return images
    if k == 1:  # flip left-right, then swap rows and columns
        return tf.transpose(tf.reverse(images, axis=[2]), [0, 2, 1, 3])
    if k == 2:
        return tf.reverse(images, axis=[1, 2])
    return tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[2])  # k == 3


def rotate(images, k) -> tf.Tensor:
    """Rotate images counter-clockwise by `k` quarter turns, exactly (same as `np.rot90`).

    Args:
        images: `[N, H, W, C]` images of any dtype; the output has the same dtype and the pixel
            values are moved, never resampled, so it is bitwise equal to
            `np.rot90(images, k, axes=(1, 2))`.
        k: the number of 90 degree counter-clockwise turns, taken modulo 4 (negative turns go
            clockwise). A Python int applies to every image (odd `k` on `H != W` images gives
            `[N, W, H, C]`, like `np.rot90`); a scalar or `[N]` integer tensor gives one turn per
            image and needs square images, since images with different turns share one output.

    Returns:
        The rotated images.

    Example:
    >>> import numpy as np
    >>> x = np.arange(2 * 3 * 3).reshape(2, 3, 3, 1)
    >>> y = rotate(x, tf.constant([1, 3]))
    >>> bool(np.array_equal(y[0], np.rot90(x[0])) and np.array_equal(y[1], np.rot90(x[1], 3)))
    True
    """
    images = check_static_images(images, "rotate")
    if is_int(k):
        return _rot90(images, int(k))
    k = tf.convert_to_tensor(k)
    height, width = images.shape[1], images.shape[2]
    if not k.dtype.is_integer or k.shape.rank not in (0, 1):
        raise KerasSSLError(
            f"rotate takes k as a Python int, a scalar integer tensor or an [N] integer tensor "
            f"(one number of quarter turns per image), got dtype {k.dtype.name} and shape "
            f"{k.shape}."
        )
    n = images.shape[0]
    if k.shape.rank == 1 and n is not None and k.shape[0] is not None and k.shape[0] != n:
        raise KerasSSLError(
            f"rotate got {k.shape[0]} rotations for {n} images; give one k per image "
            f"(shape [{n}]) or a single k for all of them."
        )
    if height != width:
        raise KerasSSLError(
            f"rotate with a tensor k needs square images, because a quarter turn of a "
            f"{height}x{width} image is {width}x{height} and all images must share one shape. "
            f"Crop or resize the images to a square, or pass k as a Python int."
        )
    # Compute all four turns with transposes and reverses, then pick one per image with
    # `tf.where`: exact for every dtype (a one-hot product would round and does not run on uint8).
    k = tf.math.floormod(tf.cast(k, tf.int32), 4)
    k = tf.broadcast_to(k, [batch_size(images)])[:, None, None, None]
    out = _rot90(images, 0)
    for turns in (1, 2, 3):
        out = tf.where(k == turns, _rot90(images, turns), out)
    return out


def four_rotations(images) -> tuple[tf.Tensor, tf.Tensor]:
    """All four rotations of every image, with their labels, as RotNet trains on every step.

    Args:
        images: `[N, H, W, C]` square images of any dtype (kept: convert them yourself).

    Returns:
        `(rotated, labels)`: `rotated` is `[4N, H, W, C]`, ordered by rotation first: rows
        `r * N + i` hold image `i` turned `r` quarter turns counter-clockwise (`rotate(images, r)`),
        and `labels` is the `[4N]` int32 vector of those `r` in 0..3.

    Example:
    >>> x = tf.zeros([8, 32, 32, 3], tf.uint8)
    >>> rotated, labels = four_rotations(x)
    >>> rotated.shape, labels.numpy()[[0, 8, 16, 24]].tolist()
    (TensorShape([32, 32, 32, 3]), [0, 1, 2, 3])
    """
    images = check_static_images(images, "four_rotations")
    height, width = images.shape[1], images.shape[2]
    if height != width:
        raise KerasSSLError(
            f"four_rotations needs square images (a quarter turn of a {height}x{width} image is "
            f"{width}x{height}, and all rotations go into one batch). Crop or resize the images to "
            f"a square first."
        )
    rotated = tf.concat([_rot90(images, r) for r in range(4)], axis=0)
    n = batch_size(images)
    labels = tf.reshape(tf.broadcast_to(tf.range(4, dtype=tf.int32)[:, None], [4, n]), [-1])
    return rotated, labels


def rotation_lookalikes(images, threshold: float = 0.8) -> float:
    """The share of `images` that look alike turned by a quarter or half turn: their correlation
    with one of their own rotations is above `threshold` (digits 0, 1 and 8, a centred flower).
    RotNet cannot tell the rotation of such an image, so predicting it teaches little.

    >>> import numpy as np
    >>> ring = np.zeros((1, 9, 9, 1)); ring[0, 2:7, 2:7] = 1; ring[0, 3:6, 3:6] = 0
    >>> rotation_lookalikes(np.concatenate([ring, np.tri(9)[None, :, :, None]]))
    0.5
    """
    x = np.asarray(images, np.float32)
    x = x - x.mean(axis=(1, 2, 3), keepdims=True)
    energy = (x * x).sum(axis=(1, 2, 3)) + 1e-6
    best = np.full(len(x), -1.0)
    for turns in (1, 2, 3):
        best = np.maximum(best, (x * np.rot90(x, turns, axes=(1, 2))).sum(axis=(1, 2, 3)) / energy)
    return float((best > threshold).mean())
