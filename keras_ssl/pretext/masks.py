"""MAE-style random patch masks, drawn per image (He et al., CVPR 2022)."""

from __future__ import annotations

import math

import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.images import check_static_images
from keras_ssl.pretext._common import batch_size, seed_tensor, uniform_int
from keras_ssl.validate import check_fraction, is_int


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def random_patch_mask(images_or_shape, patch_size, mask_ratio: float, seed=None) -> tf.Tensor:
    """A random mask of square patches per image, the same number of patches in every image.

    As in MAE: each image gets uniform noise per patch, and the `round(mask_ratio * num_patches)`
    patches with the largest noise (`tf.math.top_k`, so exactly that many even with equal noise
    values) are masked. Different images get different patches.

    Args:
        images_or_shape: `[N, H, W, C]` images (only the shape is used; the batch size may be
            dynamic) or a shape tuple `(N, H, W)` / `(N, H, W, C)`.
        patch_size: patch side in pixels (an int), or a `(height, width)` pair; it must divide
            the image height and width.
        mask_ratio: fraction of patches to mask, in (0, 1); rounded to the nearest whole number
            of patches (halves up), which must be at least 1 and less than all of them.
        seed: `None`, a Python int or a `[2]` integer stateless seed.

    Returns:
        A `[N, H, W, 1]` float32 mask, 1.0 where masked and 0.0 where visible.

    Example:
    >>> mask = random_patch_mask((2, 32, 32), patch_size=8, mask_ratio=0.75, seed=0)
    >>> mask.shape, tf.reduce_mean(mask, axis=[1, 2, 3]).numpy().tolist()
    (TensorShape([2, 32, 32, 1]), [0.75, 0.75])
    """
    if isinstance(images_or_shape, (tuple, list, tf.TensorShape)):
        shape = tuple(images_or_shape)
        if len(shape) not in (3, 4) or not all(is_int(d) and d >= 1 for d in shape):
            raise KerasSSLError(
                f"random_patch_mask takes images or a shape (N, H, W) or (N, H, W, C) of positive "
                f"ints, got {images_or_shape!r}."
            )
        n, height, width = shape[0], shape[1], shape[2]
    else:
        images = check_static_images(images_or_shape, "random_patch_mask")
        n, height, width = batch_size(images), images.shape[1], images.shape[2]
    if is_int(patch_size):
        patch_h = patch_w = int(patch_size)
    elif (
        isinstance(patch_size, (tuple, list))
        and len(patch_size) == 2
        and all(is_int(p) for p in patch_size)
    ):
        patch_h, patch_w = (int(p) for p in patch_size)
    else:
        raise KerasSSLError(
            f"random_patch_mask: patch_size must be an int or a (height, width) pair of ints, got "
            f"{patch_size!r}."
        )
    if patch_h < 1 or patch_w < 1 or height % patch_h or width % patch_w:
        if height == width:
            works = f"patch sizes that divide {height}: {_divisors(height)}"
        else:
            common = sorted(set(_divisors(height)) & set(_divisors(width)))
            works = (
                f"square patch sizes that divide both: {common}; or a (height, width) pair with a "
                f"height in {_divisors(height)} and a width in {_divisors(width)}"
            )
        raise KerasSSLError(
            f"random_patch_mask: patch_size {patch_size!r} does not tile {height}x{width} images "
            f"(it must divide the height and the width). Use one of the {works}."
        )
    check_fraction(mask_ratio, "random_patch_mask: mask_ratio",
                   "the fraction of patches masked; MAE uses 0.75")
    grid_h, grid_w = height // patch_h, width // patch_w
    num_patches = grid_h * grid_w
    num_masked = int(math.floor(float(mask_ratio) * num_patches + 0.5))
    if not 1 <= num_masked < num_patches:
        raise KerasSSLError(
            f"random_patch_mask: mask_ratio={mask_ratio} of {num_patches} patches "
            f"({grid_h}x{grid_w} patches of {patch_h}x{patch_w}) rounds to {num_masked} masked "
            f"patches; it must mask at least 1 and leave at least 1 visible. Use a ratio between "
            f"{0.5 / num_patches:.3g} and {1 - 0.5 / num_patches:.3g}, or smaller patches."
        )

    noise = uniform_int([n, num_patches], seed_tensor(seed), 0, 2**31 - 1)
    # top_k indices are distinct, so the one-hot rows sum to a 0/1 vector with exactly
    # num_masked ones, whatever ties the noise has (a threshold on the values would not).
    masked = tf.math.top_k(noise, k=num_masked).indices
    patch_mask = tf.reduce_sum(tf.one_hot(masked, num_patches, dtype=tf.float32), axis=1)
    # Blow each patch up to patch_h x patch_w pixels by broadcasting (no gather, static shapes).
    patch_mask = tf.reshape(patch_mask, [n, grid_h, 1, grid_w, 1])
    pixels = tf.broadcast_to(patch_mask, [n, grid_h, patch_h, grid_w, patch_w])
    return tf.reshape(pixels, [n, height, width, 1])
