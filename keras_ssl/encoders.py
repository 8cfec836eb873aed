"""Backbones: functional Keras models from float32 images in [0, 1] (or vectors) to pooled features.

Any `keras.Model` that maps a batch of inputs to a batch of vectors works as an encoder; these are the
ones keras-ssl builds for you:

- `ResNet(depth=18 | 34 | 50, input_shape, small_images=...)`: He et al. 2016. With
  `small_images=True` the stem is one 3x3 stride-1 convolution without max-pool, as SimCLR, lightly
  and solo-learn use for 32 px CIFAR-10; otherwise the ImageNet stem (7x7 stride 2 + max-pool).
- `ConvNet(input_shape, width=...)`: a small VGG-style network for quick runs on a CPU.
- `MLP(input_dim, hidden=...)`: for feature vectors (tabular rows, sensor readings).
- `TransformerEncoder(vocab_size, sequence_length, ...)`, `LSTMEncoder(vocab_size, ...)`: token ids
  `[N, L]` to per-position features `[N, L, D]`, for the masked language model;
  `MaskedMeanPooling` averages them over the non-padding tokens.
- `for_input(input_shape, kind=...)`: the default encoder for a data set's shape.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_ssl.errors import KerasSSLError

_RESNET_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}


def _check_image_shape(input_shape) -> tuple[int, int, int]:
    if input_shape is None or len(input_shape) != 3:
        raise KerasSSLError(
            f"An image encoder needs input_shape=(height, width, channels); got {input_shape!r}."
        )
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise KerasSSLError(
            f"Images must have 1 or 3 channels, got {channels} in input_shape={tuple(input_shape)}. "
            "Convert them to grayscale or RGB first."
        )
    return int(height), int(width), int(channels)


def _conv_bn_relu(x, filters, kernel_size, strides=1, name=None, relu=True):
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, strides, name):
    shortcut = x
    y = _conv_bn_relu(x, filters, 3, strides, name=f"{name}_1")
    y = _conv_bn_relu(y, filters, 3, 1, name=f"{name}_2", relu=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, 1, strides, name=f"{name}_proj", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _bottleneck_block(x, filters, strides, name):
    shortcut = x
    y = _conv_bn_relu(x, filters, 1, 1, name=f"{name}_1")
    y = _conv_bn_relu(y, filters, 3, strides, name=f"{name}_2")
    y = _conv_bn_relu(y, filters * 4, 1, 1, name=f"{name}_3", relu=False)
    if strides != 1 or x.shape[-1] != filters * 4:
        shortcut = _conv_bn_relu(x, filters * 4, 1, strides, name=f"{name}_proj", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _image_input(input_shape):
    inputs = keras.Input(shape=_check_image_shape(input_shape), name="images")
    # Centre the [0, 1] pixels: cheaper than a learned first normalisation, same effect.
    return inputs, layers.Rescaling(2.0, offset=-1.0, name="center")(inputs)


def ResNet(
    depth: int = 18,
    input_shape=(32, 32, 3),
    small_images: bool | None = None,
    width: int = 64,
    name: str | None = None,
) -> keras.Model:
    """A ResNet encoder ending in global-average-pooled features.

    Args:
        depth: 18, 34 (basic blocks) or 50 (bottlenecks).
        input_shape: `(height, width, channels)` of the float32 [0, 1] images it takes.
        small_images: use the 3x3 stride-1 stem without max-pool. `None` picks it for images
            smaller than 64 px.
        width: channels of the first stage (64 in the paper); halve it for quick runs.

    Example:
    >>> encoder = ResNet(18, input_shape=(32, 32, 3), width=16)
    >>> encoder.output_shape
    (None, 128)
    """
    if depth not in _RESNET_BLOCKS:
        raise KerasSSLError(f"ResNet depth must be one of 18, 34, 50; got {depth}.")
    inputs, x = _image_input(input_shape)
    if small_images is None:
        small_images = min(input_shape[0], input_shape[1]) < 64
    if small_images:
        x = _conv_bn_relu(x, width, 3, 1, name="stem")
    else:
        x = _conv_bn_relu(x, width, 7, 2, name="stem")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    block = _bottleneck_block if depth == 50 else _basic_block
    for stage, blocks in enumerate(_RESNET_BLOCKS[depth]):
        filters = width * 2**stage
        for i in range(blocks):
            strides = 2 if (stage > 0 and i == 0) else 1
            x = block(x, filters, strides, name=f"stage{stage + 1}_block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name or f"resnet{depth}")


def ConvNet(input_shape=(32, 32, 3), width: int = 32, name: str = "convnet") -> keras.Model:
    """A small VGG-style encoder (4 conv blocks, ~0.58M parameters at width 32) for CPU runs.

    Each block is conv-BN-ReLU twice; the first three blocks halve the resolution, the last one is
    pooled globally, so any image of 8 px or more works.

    Example:
    >>> ConvNet(input_shape=(28, 28, 1), width=16).output_shape
    (None, 64)
    """
    inputs, x = _image_input(input_shape)
    for stage in range(4):
        filters = width * 2 ** min(stage, 2)
        x = _conv_bn_relu(x, filters, 3, name=f"block{stage + 1}_a")
        x = _conv_bn_relu(x, filters, 3, name=f"block{stage + 1}_b")
        if stage < 3 and x.shape[1] >= 2 and x.shape[2] >= 2:
            x = layers.MaxPooling2D(2, name=f"block{stage + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


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


ENCODERS = ("convnet", "resnet18", "resnet34", "resnet50", "mlp")


def build(name: str, input_shape, width: int | None = None) -> keras.Model:
    """Build an encoder by name (`convnet`, `resnet18`, `resnet34`, `resnet50`, `mlp`)."""
    name = name.lower()
    if name == "mlp":
        if len(input_shape) != 1:
            raise KerasSSLError(
                f"The mlp encoder takes feature vectors, but the data are images of shape "
                f"{tuple(input_shape)}. Use --encoder convnet or resnet18."
            )
        return MLP(input_shape[0])
    if len(input_shape) != 3:
        raise KerasSSLError(
            f"The {name} encoder takes images, but the data are vectors of shape "
            f"{tuple(input_shape)}. Use --encoder mlp."
        )
    if name == "convnet":
        return ConvNet(input_shape, width=width or 32)
    if name.startswith("resnet") and name[6:].isdigit():
        return ResNet(int(name[6:]), input_shape, width=width or 64)
    raise KerasSSLError(f"Unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}.")


def for_input(input_shape) -> keras.Model:
    """The default encoder for inputs of this shape: see `keras_ssl.defaults`."""
    from keras_ssl import defaults  # it builds encoders with this module

    return defaults.choose(input_shape).build_encoder(input_shape)


# ----- token sequences ------------------------------------------------------------------------
# Text encoders map token ids [N, L] (0 = padding) to per-position features [N, L, D]; a masked
# language model predicts tokens from them, and MaskedMeanPooling turns them into one embedding.


@keras.saving.register_keras_serializable(package="keras_ssl")
class PositionEmbedding(layers.Layer):
    """Adds a learned vector per position to token embeddings `[N, L, D]` (L <= sequence_length).

    Example:
    >>> import numpy as np
    >>> tuple(PositionEmbedding(16)(np.zeros((2, 10, 8), "float32")).shape)
    (2, 10, 8)
    """

    def __init__(self, sequence_length: int, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)
        self.supports_masking = True

    def build(self, input_shape):
        self.position_embeddings = self.add_weight(
            shape=(self.sequence_length, int(input_shape[-1])),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="position_embeddings",
        )

    def call(self, inputs):
        length = keras.ops.shape(inputs)[1]
        return inputs + keras.ops.cast(self.position_embeddings[:length], inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length}


@keras.saving.register_keras_serializable(package="keras_ssl")
class PaddingMask(layers.Layer):
    """Token ids `[N, L]` -> an attention mask `[N, 1, L]`: True where the key is a token, not padding (0)."""

    def call(self, token_ids):
        return keras.ops.expand_dims(keras.ops.not_equal(token_ids, 0), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, input_shape[1])

    def compute_output_spec(self, token_ids):
        return keras.KerasTensor(self.compute_output_shape(token_ids.shape), dtype="bool")


@keras.saving.register_keras_serializable(package="keras_ssl")
class MaskedMeanPooling(layers.Layer):
    """`[features [N, L, D], token_ids [N, L]]` -> the mean feature over non-padding positions `[N, D]`.

    A sequence of padding only pools to zeros.

    Example:
    >>> import numpy as np
    >>> features = np.arange(6, dtype="float32").reshape(1, 3, 2)
    >>> MaskedMeanPooling()([features, np.array([[4, 5, 0]])]).numpy().tolist()
    [[1.0, 2.0]]
    """

    def call(self, inputs):
        features, token_ids = inputs
        weights = keras.ops.cast(keras.ops.not_equal(token_ids, 0), features.dtype)[..., None]
        total = keras.ops.sum(features * weights, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        features_shape, _ = input_shape
        return (features_shape[0], features_shape[-1])


def _check_token_args(vocab_size, sequence_length, **dims) -> None:
    if int(vocab_size) < 2:
        raise KerasSSLError(f"vocab_size must be at least 2 (padding and one token), got {vocab_size}.")
    if sequence_length is not None and int(sequence_length) < 1:
        raise KerasSSLError(f"sequence_length must be positive, got {sequence_length}.")
    for name, value in dims.items():
        if int(value) < 1:
            raise KerasSSLError(f"{name} must be positive, got {value}.")


def TransformerEncoder(
    vocab_size: int,
    sequence_length: int,
    embed_dim: int = 128,
    num_heads: int = 4,
    num_layers: int = 2,
    ff_dim: int = 256,
    dropout: float = 0.1,
    name: str = "transformer",
) -> keras.Model:
    """A Transformer encoder (Vaswani et al. 2017) from token ids `[N, L]` to features `[N, L, D]`.

    Token and learned position embeddings, then `num_layers` pre-norm blocks (self-attention and a
    GELU feed-forward layer, each in a residual branch; Xiong et al. 2020: stable without a long
    warm-up on small data) and a final layer norm. Padding (id 0) is masked out of attention.

    Example:
    >>> TransformerEncoder(1000, 32, embed_dim=32, num_heads=2, num_layers=1, ff_dim=64).output_shape
    (None, 32, 32)
    """
    _check_token_args(vocab_size, sequence_length, embed_dim=embed_dim, num_heads=num_heads,
                      num_layers=num_layers, ff_dim=ff_dim)
    if embed_dim % num_heads:
        raise KerasSSLError(
            f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}: each head attends "
            f"in embed_dim / num_heads dimensions."
        )
    token_ids = keras.Input(shape=(int(sequence_length),), dtype="int32", name="token_ids")
    x = layers.Embedding(int(vocab_size), embed_dim, name="token_embedding")(token_ids)
    x = PositionEmbedding(sequence_length, name="position_embedding")(x)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    attention_mask = PaddingMask(name="padding_mask")(token_ids)
    for i in range(num_layers):
        block = f"block{i + 1}"
        h = layers.LayerNormalization(epsilon=1e-6, name=f"{block}_attention_norm")(x)
        h = layers.MultiHeadAttention(
            num_heads, key_dim=embed_dim // num_heads, dropout=dropout, name=f"{block}_attention"
        )(h, h, attention_mask=attention_mask)
        x = layers.Add(name=f"{block}_attention_add")(
            [x, layers.Dropout(dropout, name=f"{block}_attention_dropout")(h)]
        )
        h = layers.LayerNormalization(epsilon=1e-6, name=f"{block}_ff_norm")(x)
        h = layers.Dense(ff_dim, activation="gelu", name=f"{block}_ff1")(h)
        h = layers.Dense(embed_dim, name=f"{block}_ff2")(h)
        x = layers.Add(name=f"{block}_ff_add")(
            [x, layers.Dropout(dropout, name=f"{block}_ff_dropout")(h)]
        )
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    return keras.Model(token_ids, x, name=name)


def LSTMEncoder(
    vocab_size: int,
    embed_dim: int = 128,
    units: int = 128,
    sequence_length: int | None = None,
    name: str = "lstm",
) -> keras.Model:
    """A bidirectional LSTM from token ids `[N, L]` to features `[N, L, 2 * units]`.

    Padding (id 0) is masked, so the backward direction starts at each sequence's last token.

    Example:
    >>> LSTMEncoder(1000, embed_dim=16, units=8, sequence_length=20).output_shape
    (None, 20, 16)
    """
    _check_token_args(vocab_size, sequence_length, embed_dim=embed_dim, units=units)
    length = None if sequence_length is None else int(sequence_length)
    token_ids = keras.Input(shape=(length,), dtype="int32", name="token_ids")
    x = layers.Embedding(int(vocab_size), embed_dim, mask_zero=True, name="token_embedding")(
        token_ids
    )
    x = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name="bilstm")(x)
    return keras.Model(token_ids, x, name=name)


TEXT_ENCODERS = ("transformer", "lstm")


def build_text(name: str, vocab_size: int, sequence_length: int, width: int | None = None):
    """Build a text encoder by name (`transformer`, `lstm`); `width` is its feature size."""
    name = name.lower()
    if name == "transformer":
        width = width or 128
        return TransformerEncoder(vocab_size, sequence_length, embed_dim=width,
                                  num_heads=max(1, width // 32), ff_dim=2 * width)
    if name == "lstm":
        width = width or 128
        return LSTMEncoder(vocab_size, embed_dim=width, units=width // 2,
                           sequence_length=sequence_length)
    raise KerasSSLError(
        f"Unknown text encoder {name!r}; choose one of {', '.join(TEXT_ENCODERS)} (image and "
        "vector encoders such as convnet or mlp do not take token ids)."
    )
