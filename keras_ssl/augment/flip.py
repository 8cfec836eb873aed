"""Per-image random horizontal flip."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.augment.base import ImageAugmentation


@keras.saving.register_keras_serializable(package="keras_ssl")
class RandomFlip(ImageAugmentation):
    """Mirror each image left-right with probability `p`, independently per image.

    Only horizontal: a vertical flip looks like a 180-degree turn, which would spoil rotation
    pretext tasks and is not part of the SimCLR / MoCo recipes.

    Args:
        p: probability that an image is flipped.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> image = np.array([[[[0], [255]]]], dtype="uint8")  # one 1x2 image
    >>> RandomFlip(p=1.0)(image).numpy().ravel()
    array([1., 0.], dtype=float32)
    """

    def __init__(self, p: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)

    def transform(self, images, apply, draws):
        # One gather of each image's columns, in reverse order where flipped: one pass over the
        # batch (a select between the image and its mirror reads it twice). Inside a recipe the
        # flip is folded into the crop's column taps instead (`RandomResizedCrop.resample`).
        width = images.shape[2] if images.shape[2] is not None else tf.shape(images)[2]
        columns = tf.range(width)
        index = tf.where(apply[:, None], tf.reverse(columns, axis=[0])[None, :], columns[None, :])
        return tf.gather(images, index, axis=2, batch_dims=1)
