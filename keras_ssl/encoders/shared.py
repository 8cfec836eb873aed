"""The same encoder on inputs of another size: one set of weights, a second functional view."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.encoders.text import PositionEmbedding
from keras_ssl.encoders.vit import PatchEmbedding


def shared_weights_at(encoder: keras.Model, size) -> keras.Model | None:
    """The encoder's layers (the same weights) applied to inputs of `size` (the spatial or time
    axes, channels as before), or None where they cannot be.

    Convolutional encoders that end in global pooling can (a 32 px ConvNet on 16 px crops, a
    series ResNet on segments); encoders with a position embedding (ViT, the series and text
    Transformers) cannot: it has one entry per patch or step of the size they were built for.

    >>> import keras_ssl
    >>> encoder = keras_ssl.encoders.ResNet1D((30, 1), width=4)
    >>> shared_weights_at(encoder, (10,)).input_shape
    (None, 10, 1)
    """
    if any(isinstance(layer, (PatchEmbedding, PositionEmbedding)) for layer in encoder.layers):
        return None
    channels = encoder.input_shape[-1]
    try:
        inputs = keras.Input(shape=(*size, channels), name=f"{encoder.input.name}_at_size")
        model = keras.models.clone_model(encoder, input_tensors=inputs,
                                         clone_function=lambda layer: layer)
        out = model(tf.zeros((2, *size, channels)), training=False)
    except Exception:  # noqa: BLE001 - any failure means: this encoder takes one size only
        return None
    same_weights = len(model.weights) == len(encoder.weights) and all(
        a is b for a, b in zip(model.weights, encoder.weights, strict=True))
    if tuple(out.shape) != (2, encoder.output_shape[-1]) or not same_weights:
        return None
    return model
