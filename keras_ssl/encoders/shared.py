"""The same encoder on inputs of another size: one set of weights, a second functional view."""

from __future__ import annotations

import re

import keras
import tensorflow as tf

from keras_ssl.encoders.text import PositionEmbedding
from keras_ssl.encoders.vit import PatchEmbedding
from keras_ssl.errors import KerasSSLError


def _first_lines(err: Exception) -> str:
    """The gist of a Keras error: its first two lines without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:2])[:300]


def shared_weights_at(encoder: keras.Model, size, *, needed_for: str | None = None):
    """The encoder's layers (the same weights) applied to inputs of `size` (the spatial or time
    axes, channels as before), or None where they cannot be; with `needed_for` (what the inputs
    are, e.g. "tiles"), a `KerasSSLError` that says why instead of None.

    Convolutional encoders that end in global pooling can (a 32 px ConvNet on 16 px crops, a
    series ResNet on segments); encoders with a position embedding (ViT, the series and text
    Transformers) cannot: it has one entry per patch or step of the size they were built for.

    >>> import keras_ssl
    >>> encoder = keras_ssl.encoders.ResNet1D((30, 1), width=4)
    >>> shared_weights_at(encoder, (10,)).input_shape
    (None, 10, 1)
    """
    model, reason = _at_size(encoder, tuple(size))
    if model is None and needed_for:
        raise KerasSSLError(f"The encoder {encoder.name!r} cannot run on "
                            f"{'x'.join(map(str, size))} {needed_for}: {reason}")
    return model


def _at_size(encoder: keras.Model, size) -> tuple[keras.Model | None, str]:
    """(the view at `size`, "") or (None, why not)."""
    if any(isinstance(layer, (PatchEmbedding, PositionEmbedding)) for layer in encoder.layers):
        return None, "its position embedding has one entry per patch or step of its own size."
    channels = encoder.input_shape[-1]
    try:
        inputs = keras.Input(shape=(*size, channels), name=f"{encoder.input.name}_at_size")
        model = keras.models.clone_model(encoder, input_tensors=inputs,
                                         clone_function=lambda layer: layer)
        out = model(tf.zeros((2, *size, channels)), training=False)
    except Exception as err:  # noqa: BLE001 - any failure means: this encoder takes one size only
        return None, _first_lines(err)
    same_weights = len(model.weights) == len(encoder.weights) and all(
        a is b for a, b in zip(model.weights, encoder.weights, strict=True))
    if tuple(out.shape) != (2, encoder.output_shape[-1]):
        return None, (f"it gives features of shape {tuple(out.shape)[1:]} there, not "
                      f"{encoder.output_shape[1:]} (no global pooling).")
    if not same_weights:
        return None, "a view at that size would not share its weights."
    return model, ""
