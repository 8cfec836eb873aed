"""Heads that sit on an encoder's features during pretraining and are dropped at export."""

from __future__ import annotations

import keras
from keras import layers


def projection_head(
    input_dim: int,
    output_dim: int = 128,
    hidden_dim: int | None = None,
    num_layers: int = 2,
    name: str = "projection_head",
) -> keras.Model:
    """The MLP projection head g(.) of SimCLR / MoCo v2: (Dense-BN-ReLU) x (num_layers-1), Dense.

    The contrastive loss is computed on its output; the encoder's features before it transfer
    better (Chen et al. 2020, section 4.2), so it is not exported.
    """
    hidden_dim = hidden_dim or max(int(input_dim), output_dim)
    inputs = keras.Input(shape=(int(input_dim),), name="features")
    x = inputs
    for i in range(num_layers - 1):
        x = layers.Dense(hidden_dim, use_bias=False, name=f"dense{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
    outputs = layers.Dense(output_dim, name="projection")(x)
    return keras.Model(inputs, outputs, name=name)


def classifier_head(input_dim: int, num_classes: int, hidden_dim: int | None = None,
                    name: str = "classifier_head") -> keras.Model:
    """A linear (or one-hidden-layer) classifier producing logits, for pretext labels."""
    inputs = keras.Input(shape=(int(input_dim),), name="features")
    x = inputs
    if hidden_dim:
        x = layers.Dense(hidden_dim, use_bias=False, name="dense")(x)
        x = layers.BatchNormalization(name="bn")(x)
        x = layers.ReLU(name="relu")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
