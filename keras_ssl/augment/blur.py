"""Gaussian blur with a different sigma per image, as per-image separable blur matrices.

A 1-D blur of a column of H pixels with reflected borders is a fixed linear map, an [H, H]
matrix whose rows hold the kernel. With one kernel per image, the batch is two batched matmuls
with matrices [N, H, H] and [N, W, W]: per image, no loop, XLA-friendly, and correct for any
kernel size (even one wider than the image).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.augment.base import ImageAugmentation, check_range, spatial_size
from keras_ssl.augment.crop import resample
from keras_ssl.errors import KerasSSLError


def _check_kernel_size(kernel_size) -> tuple[int, int]:
    try:
        sizes = tuple(kernel_size) if hasattr(kernel_size, "__len__") else (kernel_size,) * 2
        ok = len(sizes) == 2 and all(int(k) == k and k >= 1 and k % 2 == 1 for k in sizes)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise KerasSSLError(
            f"GaussianBlur kernel_size must be a positive odd integer or a pair of them (so the "
            f"kernel has a center pixel), got {kernel_size!r}. SimCLR uses about 10% of the "
            "image side, made odd: e.g. 23 for 224-pixel images, 7 for 64."
        )
    return int(sizes[0]), int(sizes[1])


def reflect_index(index, size):
    """Mirror integer indices into [0, size) as torchvision's "reflect" padding (no edge repeat)."""
    period = tf.maximum(2 * (size - 1), 1)
    index = tf.math.floormod(index, period)
    return tf.where(index < size, index, period - index)


def gaussian_weights(sigma, kernel_size: int) -> tf.Tensor:
    """[N, kernel_size] normalized Gaussian kernels, one per sigma [N]."""
    radius = kernel_size // 2
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-(offsets[None, :] ** 2) / (2.0 * sigma[:, None] ** 2))
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def blur_matrices(weights, size) -> tf.Tensor:
    """[N, size, size] matrices applying the kernels `weights` [N, K] with reflected borders."""
    kernel_size = weights.shape[1]
    radius = kernel_size // 2
    taps = tf.range(-radius, radius + 1)[:, None] + tf.range(size)[None, :]  # [K, size]
    # shifts[k, i, j] = 1 where tap k of output pixel i reads input pixel j.
    shifts = tf.one_hot(reflect_index(taps, size), size, dtype=tf.float32)
    return tf.einsum("nk,kij->nij", weights, shifts)


@keras.saving.register_keras_serializable(package="keras_ssl")
class GaussianBlur(ImageAugmentation):
    """Gaussian blur with a sigma drawn per image from `sigma`, applied with probability `p`.

    As torchvision's `GaussianBlur` (reflected borders, one isotropic sigma per image), with the
    sigma drawn per image and the blur applied to each image with probability `p` (SimCLR: 0.5).

    Args:
        kernel_size: positive odd int, or a (height, width) pair of them. SimCLR uses about 10%
            of the image side.
        sigma: (low, high) range of the standard deviation in pixels, or one number.
        p: probability that an image is blurred.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> images = np.random.randint(0, 256, (4, 64, 64, 3), dtype="uint8")
    >>> blur = GaussianBlur(7, sigma=(0.1, 2.0), p=0.5, seed=1)
    >>> blur(images, training=True).shape
    TensorShape([4, 64, 64, 3])
    """

    draws_per_image = 1  # the sigma

    def __init__(self, kernel_size, sigma=(0.1, 2.0), p: float = 0.5, seed: int | None = None,
                 **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.kernel_size = _check_kernel_size(kernel_size)
        if isinstance(sigma, (int, float)):
            sigma = (sigma, sigma)
        self.sigma = check_range(sigma, "GaussianBlur sigma", 0.0, None)
        if self.sigma[0] <= 0.0:
            raise KerasSSLError(
                f"GaussianBlur sigma must be positive, got {sigma!r}; SimCLR uses (0.1, 2.0)."
            )

    def transform(self, images, apply, draws):
        low, high = self.sigma
        sigma = low + (high - low) * draws[:, 0]
        in_h, in_w = spatial_size(images)
        matrices = []
        for kernel_size, size in zip(self.kernel_size, (in_h, in_w), strict=True):
            weights = gaussian_weights(sigma, kernel_size)
            # Images left alone get the identity kernel, so the batch needs no select.
            identity = tf.one_hot(kernel_size // 2, kernel_size, dtype=tf.float32)
            weights = tf.where(apply[:, None], weights, identity[None, :])
            matrices.append(blur_matrices(weights, size))
        return resample(images, matrices[0], matrices[1])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": list(self.kernel_size),
            "sigma": list(self.sigma),
        }
