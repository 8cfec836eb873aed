"""What every augmentation layer shares: input checks, the float conversion and the base layer.

Each layer draws its random parameters per image with one op for the whole batch (a batch of N
images draws N independent sets of parameters): no Python loop, no `tf.map_fn`, nothing XLA lacks,
so the augmentation compiles into the `jit_compile=True` training step.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.replicas import replica_rows

_FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def _as_tensor(x):
    # Keras passes tensors; users may pass NumPy arrays or lists straight to the functions here.
    if isinstance(x, (tf.Tensor, tf.Variable)) or keras.backend.is_keras_tensor(x):
        return x
    return tf.convert_to_tensor(x)


def _dtype_name(dtype) -> str:
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
        f"{what} have dtype {_dtype_name(dtype)}, but augmentation takes uint8 images (0-255) "
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


def spatial_size(images):
    """(height, width) of images [N, H, W, C]: Python ints where static, else scalar tensors."""
    # Static sizes where known (XLA, cheap constants); dynamic ones work outside XLA too.
    dynamic = tf.shape(images)
    h = images.shape[1] if images.shape[1] is not None else dynamic[1]
    w = images.shape[2] if images.shape[2] is not None else dynamic[2]
    return h, w


def to_float_images(x) -> tf.Tensor:
    """uint8 images (0-255) or float images -> float32 in [0, 1].

    uint8 is divided by 255; floats are clipped to [0, 1] (so that a slightly out-of-range input,
    e.g. after an earlier resize, cannot push colors out of range). Any shape is accepted; other
    dtypes raise `KerasSSLError`.

    Example:
    >>> import numpy as np
    >>> to_float_images(np.array([[0, 255]], dtype="uint8")).numpy()
    array([[0., 1.]], dtype=float32)
    """
    x = _as_tensor(x)
    check_image_dtype(x.dtype)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0)


def check_probability(p, name: str = "p") -> float:
    """`p` as a float in [0, 1], or `KerasSSLError`."""
    try:
        value = float(p)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise KerasSSLError(
            f"{name} must be a probability in [0, 1] (the share of images the op is applied "
            f"to), got {p!r}."
        )
    return value


def check_range(value, name: str, low_limit: float | None = None,
                high_limit: float | None = None) -> tuple[float, float]:
    """A `(low, high)` pair from a pair, with `low <= high`, inside the given limits."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise KerasSSLError(f"{name} must be a pair (low, high) of numbers, got {value!r}.") from None
    if not low <= high:
        raise KerasSSLError(f"{name} must be (low, high) with low <= high, got {value!r}.")
    if low_limit is not None and low < low_limit:
        raise KerasSSLError(f"{name} must be >= {low_limit}, got {value!r}.")
    if high_limit is not None and high > high_limit:
        raise KerasSSLError(f"{name} must be <= {high_limit}, got {value!r}.")
    return low, high


@keras.saving.register_keras_serializable(package="keras_ssl")
class ImageAugmentation(keras.layers.Layer):
    """Base class of the per-image random image layers.

    A subclass sets `draws_per_image` (how many uniform numbers in [0, 1) each image needs) and
    implements `transform(images, apply, draws)`: `images` is float32 [N, H, W, C] in [0, 1],
    `apply` a bool [N] saying which images get the op (each with probability `p`), `draws` float32
    [N, draws_per_image]; it returns float32 images in [0, 1]. `inference(images)` is the
    deterministic path for `training=False` (default: unchanged). The base class checks the input
    (rank, channels, dtype: `KerasSSLError`), converts it with `to_float_images` and holds the
    seed generator.

    All random numbers of a call come from one op: each random op costs XLA compile time (about
    0.05 s on CPU) and a layer needs many numbers per image.

    The layers compute in float32 whatever the global dtype policy: augmentation is cheap, and
    float16 would round colors to steps of 1/1000 near 1. Their outputs are float32 in [0, 1].

    Args:
        p: probability that the op is applied to each image.
        seed: integer seed; the same seed gives the same sequence of outputs.
    """

    draws_per_image: int = 0

    def __init__(self, p: float = 1.0, seed: int | None = None, **kwargs):
        # Float32 whatever the global policy (e.g. mixed_float16); inputs are converted here.
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.p = check_probability(p)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    # ----- what a subclass provides ----------------------------------------------------------
    def transform(self, images: tf.Tensor, apply: tf.Tensor, draws: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def inference(self, images: tf.Tensor) -> tf.Tensor:
        return images

    # ----- the Keras layer API ---------------------------------------------------------------
    def call(self, images, training=True):
        validate_images(images)
        images = to_float_images(images)
        if not training or self.p == 0.0:
            return self.inference(images)
        batch = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        # Under tf.distribute each replica takes its own rows of the global batch's draws:
        # replicas get different views, the same ones as one device on the global batch.
        draws = replica_rows(
            lambda n: keras.random.uniform(
                [n, 1 + self.draws_per_image], dtype="float32", seed=self.seed_generator
            ),
            batch,
        )
        # uniform < 1.0 always holds, so p=1 applies the op to every image.
        apply = draws[:, 0] < self.p
        return self.transform(images, apply, draws[:, 1:])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, images, training=None):
        # Symbolic calls (functional models) check the input too, before any training starts.
        validate_images(images)
        return keras.KerasTensor(self.compute_output_shape(images.shape), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "p": self.p, "seed": self.seed}
