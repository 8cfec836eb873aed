"""An MLP encoder for feature vectors (tabular rows, sensor readings)."""

from __future__ import annotations

import keras
from keras import layers

from keras_ssl.encoders.registry import register_encoder
from keras_ssl.errors import KerasSSLError


def MLP(
    input_dim: int,
    hidden=(256, 256),
    output_dim: int = 128,
    dropout: float = 0.0,
    name: str = "mlp",
) -> keras.Model:
    """A multilayer perceptron encoder for feature vectors `[N, input_dim]` (float32).

    Example:
    >>> MLP(64, hidden=(128,), output_dim=32).output_shape
    (None, 32)
    """
    if int(input_dim) < 1:
        raise KerasSSLError(f"MLP input_dim must be positive, got {input_dim}.")
    inputs = keras.Input(shape=(int(input_dim),), name="features")
    x = inputs
    for i, units in enumerate(hidden):
        x = layers.Dense(units, use_bias=False, name=f"dense{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{i + 1}")(x)
    x = layers.Dense(output_dim, name="embedding")(x)
    return keras.Model(inputs, x, name=name)


@register_encoder("mlp", "vectors")
def _mlp(input_shape, width=None):
    return MLP(input_shape[0])
