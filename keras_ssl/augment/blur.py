"""Gaussian blur with a different sigma per image: separable, one 1-D kernel per image and axis.

Three formulations of the same blur (reflected borders, as torchvision), picked by where it runs:

- under XLA, kernels up to 15 taps: reflect-pad, then the sum of K shifted copies weighted per
  image, which XLA fuses into one loop per axis (O(K) per pixel);
- outside XLA: only the images drawn for the blur, moved into the channels of one image so that a
  depthwise convolution applies each its own kernel (O(K) per pixel, half the batch at p=0.5);
- otherwise (wider kernels under XLA, a kernel wider than the image, unknown sizes): a 1-D blur
  of H pixels is a fixed linear map, an [H, H] matrix whose rows hold the kernel, so the batch is
  two batched matmuls with matrices [N, H, H] and [N, W, W] (O(H) per pixel, any kernel size).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_ssl._compat import in_xla_context
from keras_ssl.augment.base import ImageAugmentation, check_range, spatial_size
from keras_ssl.augment.crop import resample
from keras_ssl.errors import KerasSSLError

# Under XLA, kernels up to this size run as sums of shifted copies; wider ones as matrices.
MAX_SHIFTED_TAPS = 15
# Taps further than this many sigmas (the widest sigma drawn) from the centre are left out: they
# hold under 2e-5 of the kernel's weight at 4 sigmas.
TAIL_SIGMAS = 4.0


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

    @property
    def taps(self) -> tuple[int, int]:
        """Kernel sizes applied: `kernel_size`, less the taps beyond `TAIL_SIGMAS` of the widest
        sigma (SimCLR's 23 taps at 224 px become 17 for sigma up to 2; the weight left out, under
        2e-5 of the kernel's, changes no pixel by more than 4e-5)."""
        return self._taps_within(self.sigma[1])

    def _taps_within(self, sigma: float) -> tuple[int, int]:
        """`kernel_size`, cut to the taps within `TAIL_SIGMAS` of `sigma` of the centre."""
        widest = 2 * math.ceil(TAIL_SIGMAS * sigma) + 1
        return tuple(min(k, widest) for k in self.kernel_size)

    def transform(self, images, apply, draws):
        low, high = self.sigma
        sigma = low + (high - low) * draws[:, 0]
        in_h, in_w = spatial_size(images)
        radii = [k // 2 for k in self.taps]
        # Reflected padding needs a kernel narrower than twice the image (static sizes only).
        fits = all(isinstance(size, int) and r < size
                   for r, size in zip(radii, (in_h, in_w), strict=True))
        if fits and in_xla_context() and max(self.taps) <= MAX_SHIFTED_TAPS:
            return self._shifted_sums(images, apply, sigma)
        if fits and not in_xla_context():
            return self._depthwise(images, apply, sigma)
        return self._matrices(images, apply, sigma)

    def _kernels(self, apply, sigma):
        """Per axis, [N, K] kernels: the image's Gaussian where applied, else the identity."""
        kernels = []
        for kernel_size in self.taps:
            identity = tf.one_hot(kernel_size // 2, kernel_size, dtype=tf.float32)
            kernels.append(tf.where(apply[:, None], gaussian_weights(sigma, kernel_size),
                                    identity[None, :]))
        return kernels

    def _shifted_sums(self, images, apply, sigma):
        """Under XLA: per axis, reflect-pad and sum K shifted copies (one fused loop each)."""
        x = images
        for axis, weights in zip((1, 2), self._kernels(apply, sigma), strict=True):
            size, radius = x.shape[axis], weights.shape[1] // 2
            pad = [[0, 0]] * 4
            pad[axis] = [radius, radius]
            padded = tf.pad(x, pad, mode="REFLECT")
            taps = []
            for k in range(weights.shape[1]):
                begin, extent = [0, 0, 0, 0], [-1, -1, -1, -1]
                begin[axis], extent[axis] = k, size
                taps.append(weights[:, k, None, None, None] * tf.slice(padded, begin, extent))
            x = tf.add_n(taps)
        return tf.clip_by_value(x, 0.0, 1.0)

    def _depthwise(self, images, apply, sigma):
        """Outside XLA: only the blurred images, as channels of depthwise convolutions, in two
        groups: those whose sigma is under half the widest get a kernel half as wide (all the
        taps within `TAIL_SIGMAS` of their sigma), the others `taps`."""
        narrow_sigma = 0.5 * self.sigma[1]
        narrow = self._taps_within(narrow_sigma)
        if narrow == self.taps:
            return self._depthwise_group(images, apply, sigma, self.taps)
        x = self._depthwise_group(images, apply & (sigma <= narrow_sigma), sigma, narrow)
        return self._depthwise_group(x, apply & (sigma > narrow_sigma), sigma, self.taps)

    @staticmethod
    def _depthwise_group(images, apply, sigma, taps):
        # A convolution of no channels is an error: a group nobody drew is left as it is.
        return tf.cond(tf.reduce_any(apply),
                       lambda: GaussianBlur._depthwise_blur(images, apply, sigma, taps),
                       lambda: images)

    @staticmethod
    def _depthwise_blur(images, apply, sigma, taps):
        index = tf.where(apply)[:, 0]
        chosen, chosen_sigma = tf.gather(images, index), tf.gather(sigma, index)
        h, w, c = images.shape[1], images.shape[2], images.shape[3]
        n = tf.shape(chosen)[0]
        x = tf.reshape(tf.transpose(chosen, [1, 2, 0, 3]), [1, h, w, n * c])
        for axis, kernel_size in zip((1, 2), taps, strict=True):
            radius = kernel_size // 2
            pad = [[0, 0]] * 4
            pad[axis] = [radius, radius]
            # [K, n * C]: the kernel of each chosen image, once per channel.
            weights = tf.repeat(tf.transpose(gaussian_weights(chosen_sigma, kernel_size)), c,
                                axis=1)
            shape = [kernel_size, 1, -1, 1] if axis == 1 else [1, kernel_size, -1, 1]
            x = tf.nn.depthwise_conv2d(tf.pad(x, pad, mode="REFLECT"),
                                       tf.reshape(weights, shape), [1, 1, 1, 1], "VALID")
        blurred = tf.transpose(tf.reshape(x, [h, w, n, c]), [2, 0, 1, 3])
        return tf.tensor_scatter_nd_update(images, index[:, None],
                                           tf.clip_by_value(blurred, 0.0, 1.0))

    def _matrices(self, images, apply, sigma):
        in_h, in_w = spatial_size(images)
        matrices = []
        for kernel_size, size in zip(self.taps, (in_h, in_w), strict=True):
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
