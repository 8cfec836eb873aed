"""The image convention every layer shares: batches `[N, H, W, C]` of uint8 (0-255) or floats
(0-1) with 1 or 3 channels, converted to float32 in [0, 1] inside the model.

>>> import numpy as np
>>> to_float_images(np.array([[0, 255]], dtype="uint8")).numpy()
array([[0., 1.]], dtype=float32)
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.errors import KerasSSLError

# ITU-R BT.601 luma: the gray level of an RGB pixel, for every grayscale conversion in keras_ssl.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def as_tensor(x):
    """`x` as a tensor; Keras tensors and variables pass through."""
    if isinstance(x, (tf.Tensor, tf.Variable)) or keras.backend.is_keras_tensor(x):
        return x
    return tf.convert_to_tensor(x)


def dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)


def check_image_dtype(dtype, what: str = "images") -> None:
    """Raise `KerasSSLError` unless `dtype` is uint8 (0-255) or a float type (0-1)."""
    dtype = tf.as_dtype(dtype)
    if dtype == tf.uint8 or dtype in _FLOAT_DTYPES:
        return
    if dtype.is_integer:
        fix = (
            "If the values are 0-255, cast them: tf.cast(images, 'uint8') (or "
            "images.astype('uint8') in NumPy); if they are floats in [0, 1], cast to float32."
        )
    elif dtype == tf.string:
        fix = (
            "Decode the encoded images first, e.g. tf.io.decode_image(bytes, channels=3, "
            "expand_animations=False), or load them with keras_ssl.data."
        )
    else:
        fix = "Convert them to uint8 (0-255) or float32 (0-1)."
    raise KerasSSLError(
        f"{what} have dtype {dtype_name(dtype)}, but keras_ssl takes uint8 images (0-255) "
        f"or float images (0-1). {fix}"
    )


def validate_images(x) -> None:
    """Check, on the static shape and dtype, that `x` is a batch of images [N, H, W, C].

    Raises `KerasSSLError` saying what is wrong and how to fix it: rank other than 4, a channel
    count other than 1 or 3 (or unknown), an empty image, or a dtype other than uint8 / float.
    """
    shape = tf.TensorShape(x.shape)  # KerasTensor shapes are tuples
    if shape.rank is None:
        raise KerasSSLError(
            "images have an unknown rank; augmentation needs a batch of images [N, H, W, C] with "
            "a known rank. Give the tf.function an input_signature such as "
            "tf.TensorSpec([None, H, W, C], tf.uint8)."
        )
    if shape.rank == 3:
        raise KerasSSLError(
            f"got a single image of shape {tuple(shape)}, but augmentation takes a batch "
            f"[N, H, W, C]. Add a batch axis: images[None] or tf.expand_dims(image, 0)."
        )
    if shape.rank == 2:
        raise KerasSSLError(
            f"got a rank-2 tensor of shape {tuple(shape)}, but image augmentation takes a batch "
            "[N, H, W, C]. For one grayscale image use images[None, :, :, None]; for feature "
            "vectors [N, F] use keras_ssl.augment.vectors() (FeatureNoise, FeatureMask)."
        )
    if shape.rank != 4:
        raise KerasSSLError(
            f"images have shape {tuple(shape)} (rank {shape.rank}), but augmentation takes a "
            "batch of images [N, H, W, C]. Reshape them to rank 4."
        )
    channels = shape[-1]
    if channels is None:
        raise KerasSSLError(
            f"images have shape {tuple(shape)} with an unknown channel count; augmentation needs "
            "it known (1 or 3). Give the tf.function an input_signature with the channels set, "
            "or tf.ensure_shape(images, [None, None, None, 3])."
        )
    if channels not in (1, 3):
        hint = {
            2: "For grayscale + alpha keep the gray channel: images[..., :1].",
            4: "For RGBA drop the alpha channel: images[..., :3].",
        }.get(channels, "Convert them to grayscale (1 channel) or RGB (3 channels).")
        raise KerasSSLError(
            f"images have {channels} channels (shape {tuple(shape)}), but augmentation takes 1 "
            f"(grayscale) or 3 (RGB) channels. {hint}"
        )
    if shape[1] == 0 or shape[2] == 0:
        raise KerasSSLError(
            f"images have shape {tuple(shape)}: an empty image has nothing to augment. Check "
            "how the images were loaded or cropped."
        )
    check_image_dtype(x.dtype)


def check_static_images(images, where: str) -> tf.Tensor:
    """`images` as a tensor `[N, H, W, C]` with static H, W and C (what XLA and matrices need)."""
    images = as_tensor(images)
    if images.shape.rank != 4 or None in images.shape[1:]:
        raise KerasSSLError(
            f"{where} takes a batch of images of shape [N, H, W, C] with static H, W and C, got "
            f"shape {images.shape}. Add a batch axis to a single image (images[None]) and give the "
            f"model a fixed image size."
        )
    return images


def to_float_images(x) -> tf.Tensor:
    """uint8 images (0-255) or float images -> float32 in [0, 1].

    uint8 is divided by 255; floats are clipped to [0, 1] (so that a slightly out-of-range input,
    e.g. after an earlier resize, cannot push colors out of range). Any shape is accepted; other
    dtypes raise `KerasSSLError`.
    """
    x = as_tensor(x)
    check_image_dtype(x.dtype)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0)


def grayscale(images: tf.Tensor) -> tf.Tensor:
    """The gray level `[..., 1]` of RGB float images `[..., 3]`."""
    return tf.tensordot(images, tf.constant(GRAY_WEIGHTS, images.dtype), axes=[[-1], [0]])[..., None]


def spatial_size(images):
    """(height, width) of images [N, H, W, C]: Python ints where static, else scalar tensors."""
    dynamic = tf.shape(images)
    h = images.shape[1] if images.shape[1] is not None else dynamic[1]
    w = images.shape[2] if images.shape[2] is not None else dynamic[2]
    return h, w


def fine_detail(images, factor: int = 4) -> float:
    """The share of the images' pixel variance finer than 1/`factor` of their resolution: what is
    lost by shrinking them `factor` times and enlarging them back. Near 0 for images upsampled
    from small sources (scikit-learn's 8x8 digits at 32 px: 0.07), a quarter or more for photos
    (CIFAR-10: 0.26)."""
    x = tf.cast(as_tensor(images), tf.float32)
    height, width = int(x.shape[1]), int(x.shape[2])
    small = tf.image.resize(x, (max(1, height // factor), max(1, width // factor)), antialias=True)
    lost = tf.reduce_mean(tf.square(x - tf.image.resize(small, (height, width))), axis=(1, 2, 3))
    variance = tf.math.reduce_variance(x, axis=(1, 2, 3))
    return float(tf.reduce_mean(lost / (variance + 1e-8)))


__all__ = ["GRAY_WEIGHTS", "as_tensor", "check_image_dtype", "check_static_images", "dtype_name",
           "fine_detail", "grayscale", "spatial_size", "to_float_images", "validate_images"]
