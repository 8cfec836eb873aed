"""Per-image random resized crops, and a plain resize, as interpolation matrices.

Each output row is a weighted sum of input rows, and likewise for columns; for a box (top, left,
height, width) the weights form a matrix rows [out_h, H] and columns [out_w, W], so a batch of
N crops is two batched matmuls (einsum) with per-image matrices [N, out_h, H] and [N, out_w, W].
This needs no gather, no `tf.image.crop_and_resize` (which has no XLA kernel on CPU) and no
projective transform (no XLA kernel either), and it runs on the matrix units. Measured on 2
CPU cores: 256 crops 32x32 -> 32x32 take about 5.5 ms (graph or XLA) against 2.7 ms for
`crop_and_resize` outside XLA; inside a compiled train step the difference is noise next to the
encoder.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from keras_ssl.augment.base import (
    ImageAugmentation,
    check_range,
    spatial_size,
    to_float_images,
    validate_images,
)
from keras_ssl.errors import KerasSSLError
from keras_ssl.replicas import replica_rows

# torchvision's RandomResizedCrop draws up to 10 boxes and keeps the first that fits the image.
_ATTEMPTS = 10


def _check_size(height, width, name: str) -> tuple[int, int]:
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError):
        h = w = 0
    if h < 1 or w < 1 or h != height or w != width:
        raise KerasSSLError(
            f"{name} needs a positive integer output height and width, got ({height!r}, "
            f"{width!r})."
        )
    return h, w


def interpolation_matrix(start, length, in_size, out_size: int, antialias: bool) -> tf.Tensor:
    """Bilinear weights [N, out_size, in_size] that resample [start, start + length) to out_size.

    `start` and `length` are float [N] in pixels (edges: the whole axis is start=0,
    length=in_size). Pixel centers are at i + 0.5, as in `tf.image.resize` (half-pixel centers).
    With `antialias`, a downscale widens the triangle filter by the scale factor, as
    `tf.image.resize(..., antialias=True)` does, so that small outputs do not alias.
    """
    in_size_f = tf.cast(in_size, tf.float32)
    step = length / float(out_size)  # input pixels per output pixel, [N]
    out_centers = tf.range(out_size, dtype=tf.float32) + 0.5
    # Source coordinate of each output pixel, in input pixel indices: [N, out].
    src = start[:, None] + out_centers[None, :] * step[:, None] - 0.5
    width = tf.maximum(step, 1.0) if antialias else tf.ones_like(step)
    in_index = tf.range(in_size_f, dtype=tf.float32)
    distance = tf.abs(src[:, :, None] - in_index[None, None, :]) / width[:, None, None]
    weights = tf.nn.relu(1.0 - distance)
    # Normalising over the pixels inside the image is the same as clamping at the border
    # (src never leaves [-0.5, in_size - 0.5], so at least half a pixel always has weight).
    return weights / tf.maximum(tf.reduce_sum(weights, axis=-1, keepdims=True), 1e-12)


def resample(images, row_matrix, col_matrix) -> tf.Tensor:
    """out[n] = rows[n] @ images[n] @ cols[n]^T per channel: two batched matmuls.

    Each output pixel is a convex combination of input pixels in [0, 1]; float rounding can put it
    a hair outside (1.0000001 was seen), so the result is clipped back to the unit range.
    """
    x = tf.einsum("nih,nhwc->niwc", row_matrix, images)
    return tf.clip_by_value(tf.einsum("njw,niwc->nijc", col_matrix, x), 0.0, 1.0)


def draw_parameters(layer: ImageAugmentation, images):
    """(apply [N] bool, draws [N, draws_per_image]) of one call of `layer` on `images`.

    The same numbers `ImageAugmentation.call` draws (one uniform op per call, this replica's rows
    of the global batch), so a fused path that draws through this gives the layer's own views.
    """
    batch = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
    draws = replica_rows(
        lambda n: keras.random.uniform([n, 1 + layer.draws_per_image], dtype="float32",
                                       seed=layer.seed_generator),
        batch,
    )
    return draws[:, 0] < layer.p, draws[:, 1:]


def bilinear_taps(start, length, in_size, out_size: int):
    """The two source pixels and weights of each output pixel: `interpolation_matrix` sparse.

    Without antialiasing the bilinear filter has two taps: output pixel i reads pixels `low[n, i]`
    and `high[n, i]` (int32 [N, out_size]) with weights `1 - frac` and `frac` (float [N, out]).
    Clamping the source coordinate to [0, in_size - 1] is what the matrix's normalisation over
    the pixels inside the image does at the border, so both give the same output.
    """
    in_last = tf.cast(in_size, tf.float32) - 1.0
    step = length / float(out_size)
    out_centers = tf.range(out_size, dtype=tf.float32) + 0.5
    src = tf.clip_by_value(start[:, None] + out_centers[None, :] * step[:, None] - 0.5,
                           0.0, in_last)
    low = tf.floor(src)
    frac = src - low
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, tf.cast(in_last, tf.int32))
    return low, high, frac


def gather_resample(images, rows, cols) -> tf.Tensor:
    """Bilinear resampling by gathers: uint8 or float images in, float32 [0, 1] out.

    `rows` and `cols` are `bilinear_taps` triples. The rows are gathered from the input as it
    is (uint8 stays uint8: a quarter of the bytes of float32), blended in float, then the
    columns; the work is O(out_h * W + out_h * out_w) per channel, against O(out_h * H * W) for
    the interpolation matrices. A horizontal flip is the column taps in reverse order.
    """
    scale = 1.0 / 255.0 if images.dtype == tf.uint8 else 1.0
    row_low, row_high, row_frac = rows
    col_low, col_high, col_frac = cols
    top = tf.cast(tf.gather(images, row_low, axis=1, batch_dims=1), tf.float32)
    bottom = tf.cast(tf.gather(images, row_high, axis=1, batch_dims=1), tf.float32)
    weight = (row_frac * scale)[:, :, None, None]
    x = top * (scale - weight) + bottom * weight  # [N, out_h, W, C]
    left = tf.gather(x, col_low, axis=2, batch_dims=1)
    right = tf.gather(x, col_high, axis=2, batch_dims=1)
    weight = col_frac[:, None, :, None]
    out = left + weight * (right - left)
    # A convex combination of values in [0, 1], up to rounding.
    return tf.clip_by_value(out, 0.0, 1.0)


def flip_taps(taps, flip):
    """Column taps of the left-right mirrored output where `flip` [N] is true."""
    return tuple(tf.where(flip[:, None], tf.reverse(t, axis=[1]), t) for t in taps)


def resize_boxes(images, top, left, box_height, box_width, height: int, width: int,
                 antialias: bool = False) -> tf.Tensor:
    """Resample box n of each image n to (height, width); boxes are float [N] in pixels."""
    in_h, in_w = spatial_size(images)
    rows = interpolation_matrix(top, box_height, in_h, height, antialias)
    cols = interpolation_matrix(left, box_width, in_w, width, antialias)
    return resample(images, rows, cols)


def resize_images(images, height: int, width: int, antialias: bool = False) -> tf.Tensor:
    """Bilinear resize of float images to (height, width), like `tf.image.resize` but XLA-safe."""
    in_h, in_w = spatial_size(images)
    n = tf.shape(images)[0]
    zeros = tf.zeros([n], tf.float32)
    return resize_boxes(
        images,
        zeros,
        zeros,
        zeros + tf.cast(in_h, tf.float32),
        zeros + tf.cast(in_w, tf.float32),
        height,
        width,
        antialias,
    )


@keras.saving.register_keras_serializable(package="keras_ssl")
class RandomResizedCrop(ImageAugmentation):
    """Crop a random box of each image and resize it to (height, width), a new box per image.

    The box follows torchvision's `RandomResizedCrop`: its area is a fraction of the image drawn
    uniformly from `scale`, its aspect ratio (width / height) is drawn log-uniformly from `ratio`,
    and its position uniformly among the places where it fits. Up to 10 boxes are drawn per image
    and the first that fits is kept; if none fits, the largest centered box with an aspect ratio
    inside `ratio` is used. Boxes have sub-pixel coordinates and are resampled bilinearly.

    With `training=False` the whole image is resized to (height, width) (no crop), which is what
    an encoder sees at inference.

    Args:
        height, width: output size. A crop may be larger than the input (then it is upscaled).
        scale: (low, high) range of the box area as a fraction of the image area, in (0, 1].
        ratio: (low, high) range of the box aspect ratio width / height.
        antialias: widen the filter when a box is shrunk (as `tf.image.resize(antialias=True)`),
            to avoid aliasing on large downscales. Off by default, like `tf.image.resize`.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> images = np.random.randint(0, 256, (4, 48, 48, 3), dtype="uint8")
    >>> crop = RandomResizedCrop(32, 32, scale=(0.2, 1.0), seed=1)
    >>> crop(images).shape
    TensorShape([4, 32, 32, 3])
    """

    # Per image: 10 areas, 10 aspect ratios, then the top and left position of the box.
    draws_per_image = 2 * _ATTEMPTS + 2

    def __init__(self, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 antialias: bool = False, seed: int | None = None, **kwargs):
        kwargs.pop("p", None)  # a crop is always applied; `p` is not a setting of this layer
        super().__init__(p=1.0, seed=seed, **kwargs)
        self.height, self.width = _check_size(height, width, "RandomResizedCrop")
        self.scale = check_range(scale, "RandomResizedCrop scale", 0.0, 1.0)
        if self.scale[1] <= 0.0:
            raise KerasSSLError(
                f"RandomResizedCrop scale must allow a positive area, got {scale!r}; the SimCLR "
                "setting is (0.08, 1.0)."
            )
        self.ratio = check_range(ratio, "RandomResizedCrop ratio")
        if self.ratio[0] <= 0.0:
            raise KerasSSLError(
                f"RandomResizedCrop ratio (width / height) must be positive, got {ratio!r}; the "
                "usual setting is (3/4, 4/3)."
            )
        self.antialias = bool(antialias)

    def boxes(self, draws, in_h, in_w):
        """float [N] top, left, height, width of one box per image, in pixels, from `draws`."""
        in_h = tf.cast(in_h, tf.float32)
        in_w = tf.cast(in_w, tf.float32)
        (low_scale, high_scale), (low_ratio, high_ratio) = self.scale, self.ratio
        target_area = in_h * in_w * (low_scale + (high_scale - low_scale) * draws[:, :_ATTEMPTS])
        log_low, log_high = math.log(low_ratio), math.log(high_ratio)
        aspect = tf.exp(log_low + (log_high - log_low) * draws[:, _ATTEMPTS:2 * _ATTEMPTS])
        box_w = tf.sqrt(target_area * aspect)
        box_h = tf.sqrt(target_area / aspect)
        # A small tolerance so that a box of exactly the image size is not lost to rounding.
        fits = (box_w <= in_w * (1 + 1e-5)) & (box_h <= in_h * (1 + 1e-5)) & (box_w > 0)
        # The first attempt that fits (argmax finds the first True); none: the fallback below.
        first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
        pick = tf.one_hot(first, _ATTEMPTS, dtype=tf.float32)
        box_w = tf.reduce_sum(pick * tf.minimum(box_w, in_w), axis=1)
        box_h = tf.reduce_sum(pick * tf.minimum(box_h, in_h), axis=1)

        # torchvision's fallback: the whole image, narrowed to the nearest allowed aspect ratio,
        # centered.
        in_ratio = in_w / in_h
        any_fits = tf.reduce_any(fits, axis=1)
        fallback_w = tf.where(in_ratio > high_ratio, in_h * high_ratio, in_w)
        fallback_h = tf.where(in_ratio < low_ratio, in_w / low_ratio, in_h)
        box_w = tf.where(any_fits, box_w, fallback_w)
        box_h = tf.where(any_fits, box_h, fallback_h)
        top = tf.where(any_fits, draws[:, -2], 0.5) * (in_h - box_h)
        left = tf.where(any_fits, draws[:, -1], 0.5) * (in_w - box_w)
        return top, left, box_h, box_w

    def call(self, images, training=True):
        validate_images(images)
        if not training:
            return self.inference(to_float_images(images))
        # uint8 stays uint8 until the crop has picked its pixels (gather_resample).
        return self.resample(images, self.taps(images), flip=None)

    def taps(self, images, draws=None):
        """Row and column `bilinear_taps` of one random box per image (`draws`: drawn here)."""
        if draws is None:
            _, draws = draw_parameters(self, images)
        in_h, in_w = spatial_size(images)
        top, left, box_h, box_w = self.boxes(draws, in_h, in_w)
        return (bilinear_taps(top, box_h, in_h, self.height),
                bilinear_taps(left, box_w, in_w, self.width), (top, left, box_h, box_w))

    def resample(self, images, taps, flip=None):
        """The crops of `taps` as float32 [0, 1], mirrored where `flip` [N] (bool) is true."""
        rows, cols, box = taps
        if self.antialias:  # a wider filter than two taps: the interpolation matrices
            images = to_float_images(images)
            in_h, in_w = spatial_size(images)
            top, left, box_h, box_w = box
            row_matrix = interpolation_matrix(top, box_h, in_h, self.height, True)
            col_matrix = interpolation_matrix(left, box_w, in_w, self.width, True)
            if flip is not None:
                col_matrix = tf.where(flip[:, None, None], tf.reverse(col_matrix, axis=[1]),
                                      col_matrix)
            return resample(images, row_matrix, col_matrix)
        if images.dtype != tf.uint8:
            images = to_float_images(images)
        if flip is not None:
            cols = flip_taps(cols, flip)
        return gather_resample(images, rows, cols)

    def transform(self, images, apply, draws):
        in_h, in_w = spatial_size(images)
        top, left, box_h, box_w = self.boxes(draws, in_h, in_w)
        return resize_boxes(images, top, left, box_h, box_w, self.height, self.width,
                            self.antialias)

    def inference(self, images):
        return resize_images(images, self.height, self.width, self.antialias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.pop("p")
        return {
            **config,
            "height": self.height,
            "width": self.width,
            "scale": list(self.scale),
            "ratio": list(self.ratio),
            "antialias": self.antialias,
        }


@keras.saving.register_keras_serializable(package="keras_ssl")
class Resize(keras.layers.Layer):
    """Deterministic bilinear resize to (height, width), XLA-compilable; float32 [0, 1] out.

    The same interpolation matrices as `RandomResizedCrop`, for the whole image: it matches
    `tf.image.resize(images, (height, width), antialias=antialias)` on float images.

    Args:
        height, width: output size.
        antialias: widen the filter on downscales, as `tf.image.resize(antialias=True)`.

    Example:
    >>> import numpy as np
    >>> Resize(16, 16)(np.zeros((2, 32, 32, 1), dtype="uint8")).shape
    TensorShape([2, 16, 16, 1])
    """

    def __init__(self, height: int, width: int, antialias: bool = False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.height, self.width = _check_size(height, width, "Resize")
        self.antialias = bool(antialias)

    def call(self, images):
        validate_images(images)
        images = to_float_images(images)
        return resize_images(images, self.height, self.width, self.antialias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def compute_output_spec(self, images):
        validate_images(images)
        return keras.KerasTensor(self.compute_output_shape(images.shape), dtype="float32")

    def get_config(self):
        return {
            **super().get_config(),
            "height": self.height,
            "width": self.width,
            "antialias": self.antialias,
        }
