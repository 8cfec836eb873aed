"""Heads that sit on an encoder's features during pretraining and are dropped at export."""

from __future__ import annotations

import keras
from keras import layers

from keras_ssl.errors import KerasSSLError


def projection_head(
    input_dim: int,
    output_dim: int = 128,
    hidden_dim: int | None = None,
    num_layers: int = 2,
    name: str = "projection_head",
    output_bn: bool = False,
) -> keras.Model:
    """The MLP projection head g(.) of SimCLR / MoCo v2: (Dense-BN-ReLU) x (num_layers-1), Dense.

    The contrastive loss is computed on its output; the encoder's features before it transfer
    better (Chen et al. 2020, section 4.2), so it is not exported. `output_bn` adds a batch norm
    without scale or shift at the end (SimSiam's projector ends so): each output is centred on
    the batch, so no constant output can match every example.
    """
    hidden_dim = hidden_dim or max(int(input_dim), output_dim)
    inputs = keras.Input(shape=(int(input_dim),), name="features")
    x = inputs
    for i in range(num_layers - 1):
        x = layers.Dense(hidden_dim, use_bias=False, name=f"dense{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
    outputs = layers.Dense(output_dim, use_bias=not output_bn, name="projection")(x)
    if output_bn:
        outputs = layers.BatchNormalization(center=False, scale=False, name="output_bn")(outputs)
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


def decoder_head(feature_dim: int, output_shape, width: int = 32, hidden_dim: int = 256,
                 name: str = "decoder_head") -> keras.Model:
    """A decoder from `[N, feature_dim]` features back to inputs of `output_shape`.

    For images `(H, W, C)`: Dense -> reshape to a coarse `h0 x w0` grid -> up to 3 stride-2
    `Conv2DTranspose`-BN-ReLU stages (each doubling the resolution, stopping while the coarse grid
    is still at least 4 px) -> a 3x3 convolution to `C` channels with a sigmoid, since images are
    in [0, 1]. Sizes that are not a multiple of the upsampling are cropped back to `H x W`.
    For vectors `(F,)`: an MLP (Dense-BN-ReLU twice) with a linear output, since features are
    unbounded.

    Args:
        feature_dim: size of the encoder's feature vector.
        output_shape: `(H, W, C)` for images or `(F,)` for vectors.
        width: channels of the last upsampling stage; earlier stages have up to 4x as many.
        hidden_dim: hidden units of the vector decoder.

    Example:
    >>> decoder_head(128, (28, 28, 1)).output_shape
    (None, 28, 28, 1)
    >>> decoder_head(32, (10,)).output_shape
    (None, 10)
    """
    output_shape = tuple(int(d) for d in output_shape)
    inputs = keras.Input(shape=(int(feature_dim),), name="features")
    if len(output_shape) == 1:
        x = inputs
        for i in range(2):
            x = layers.Dense(hidden_dim, use_bias=False, name=f"dense{i + 1}")(x)
            x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
            x = layers.ReLU(name=f"relu{i + 1}")(x)
        return keras.Model(inputs, layers.Dense(output_shape[0], name="reconstruction")(x),
                           name=name)
    if len(output_shape) != 3 or min(output_shape) < 1:
        raise KerasSSLError(
            f"decoder_head builds decoders for images (H, W, C) or vectors (F,), got output_shape "
            f"{output_shape}. Pass your own decoder for other inputs."
        )
    height, width_px, channels = output_shape
    stages = 0
    while stages < 3 and min(height, width_px) // 2 ** (stages + 1) >= 4:
        stages += 1
    scale = 2**stages
    h0, w0 = -(-height // scale), -(-width_px // scale)  # ceil: crop the excess at the end
    filters = width * 2 ** min(stages, 2)
    x = layers.Dense(h0 * w0 * filters, use_bias=False, name="dense")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Reshape((h0, w0, filters), name="grid")(x)
    for stage in range(stages):
        filters = width * 2 ** min(stages - stage - 1, 2)
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False,
                                   name=f"up{stage + 1}_conv")(x)
        x = layers.BatchNormalization(name=f"up{stage + 1}_bn")(x)
        x = layers.ReLU(name=f"up{stage + 1}_relu")(x)
    x = layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="pixels")(x)
    extra_h, extra_w = h0 * scale - height, w0 * scale - width_px
    if extra_h or extra_w:
        x = layers.Cropping2D(((0, extra_h), (0, extra_w)), name="crop")(x)
    return keras.Model(inputs, x, name=name)
