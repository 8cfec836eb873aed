"""What every augmentation layer shares: input checks, the float conversion and the base layer.

Each layer draws its random parameters per image with one op for the whole batch (a batch of N
images draws N independent sets of parameters): no Python loop, no `tf.map_fn`, nothing XLA lacks,
so the augmentation compiles into the `jit_compile=True` training step.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.images import (
    check_image_dtype,
    spatial_size,
    to_float_images,
    validate_images,
)
from keras_ssl.replicas import replica_rows
from keras_ssl.validate import check_probability, check_range

# The image helpers every augmentation module uses, in one import.
__all__ = ["ImageAugmentation", "check_image_dtype", "check_probability", "check_range",
           "spatial_size", "to_float_images", "validate_images"]


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
