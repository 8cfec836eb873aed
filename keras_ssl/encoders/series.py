"""Time-series encoders: float32 series `[N, T, F]` to one feature vector per series `[N, D]`.

- `ResNet1D(input_shape, width=64)`: the fully convolutional ResNet of Wang et al. 2017 (three
  residual blocks of 8-5-3 convolutions, batch norm, ReLU, global average pooling), a strong
  baseline on the UCR archive; registered as `resnet1d`.
- `SeriesTransformer(input_shape, embed_dim=64, patch_size=...)`: a pre-norm Transformer over
  patches of steps (each patch of `patch_size` steps of every channel projected to `embed_dim`,
  as PatchTST does), learned positions, mean pooling; registered as `series_transformer`.
- `DilatedConv1D(input_shape, width=64)`: TS2Vec's encoder (a per-step projection, residual blocks
  of dilated convolutions, max pooling over the steps), what `methods.TS2Vec` trains; registered
  as `dilated_conv1d`.
- `serving_model(encoder)`: the encoder with its input named `series` (float32 `[N, T, F]`), what
  `keras_ssl.export` writes as the SavedModel.

All take a fixed `(T, F)`: XLA wants static shapes, and the export signature is `[None, T, F]`.
Load sets of another length with `data.series.load(..., length=T)`.

>>> ResNet1D((150, 1), width=8).output_shape
(None, 16)
>>> SeriesTransformer((150, 2), embed_dim=16, num_heads=2, num_layers=1).output_shape
(None, 16)
>>> DilatedConv1D((150, 1), width=8, depth=3).output_shape
(None, 40)
"""

from __future__ import annotations

import math

import keras
from keras import layers

from keras_ssl.encoders.registry import register_encoder
from keras_ssl.encoders.text import PositionEmbedding
from keras_ssl.errors import KerasSSLError

# UCR training sets hold tens of series: a few hundred steps in all. Keras' default momentum of
# 0.99 leaves the moving statistics hundreds of steps behind the weights, and inference then sees
# other features than training did (measured on GunPoint: a supervised ResNet1D at 100% with
# batch statistics, 51% with the moving ones); 0.9 follows the last ten or so steps.
BN_MOMENTUM = 0.9

__all__ = ["DilatedConv1D", "ResNet1D", "SeriesTransformer", "is_series_encoder", "serving_model"]


def _check_shape(input_shape, name) -> tuple[int, int]:
    shape = tuple(input_shape)
    if len(shape) == 1:
        raise KerasSSLError(
            f"{name} takes series of shape (T, F), got {shape}: a one-channel series needs its "
            f"channel axis, input_shape=({shape[0]}, 1) (and x[..., None] for the data)."
        )
    if len(shape) != 2 or any(d is None or int(d) < 1 for d in shape):
        raise KerasSSLError(
            f"{name} takes series of a fixed shape (T, F) (T steps of F channels), got {shape}."
        )
    return int(shape[0]), int(shape[1])


def ResNet1D(input_shape, width: int = 64, kernel_sizes=(8, 5, 3), blocks: int = 3,
             name: str = "resnet1d") -> keras.Model:
    """A 1D ResNet (Wang et al. 2017): `blocks` residual blocks of convolutions with
    `kernel_sizes` (widths `width`, `2 * width`, `2 * width`, ...), batch norm and ReLU, then
    global average pooling over the steps. Output `[N, 2 * width]` (`[N, width]` with one block).
    """
    steps, channels = _check_shape(input_shape, "ResNet1D")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise KerasSSLError(f"ResNet1D width must be a positive integer, got {width!r}.")
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise KerasSSLError(f"ResNet1D blocks must be a positive integer, got {blocks!r}.")
    inputs = keras.Input((steps, channels), dtype="float32", name="series")
    x = inputs
    for b in range(blocks):
        filters = width if b == 0 else 2 * width
        shortcut = x
        h = x
        for i, kernel in enumerate(kernel_sizes):
            h = layers.Conv1D(filters, kernel, padding="same", use_bias=False,
                              name=f"block{b + 1}_conv{i + 1}")(h)
            h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{b + 1}_bn{i + 1}")(h)
            if i < len(kernel_sizes) - 1:
                h = layers.ReLU(name=f"block{b + 1}_relu{i + 1}")(h)
        if shortcut.shape[-1] != filters:
            shortcut = layers.Conv1D(filters, 1, use_bias=False,
                                     name=f"block{b + 1}_shortcut")(shortcut)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM,
                                             name=f"block{b + 1}_shortcut_bn")(shortcut)
        x = layers.ReLU(name=f"block{b + 1}_out")(layers.Add(name=f"block{b + 1}_add")([h, shortcut]))
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


def DilatedConv1D(input_shape, width: int = 64, depth: int = 10, output_dim: int | None = None,
                  kernel_size: int = 3, dropout: float = 0.1,
                  name: str = "dilated_conv1d") -> keras.Model:
    """TS2Vec's encoder (Yue et al. 2022): a per-step linear projection to `width` channels, then
    `depth` residual blocks of two GELU-preceded convolutions with dilation 1, 2, 4, ..., and a
    last block to `output_dim` (default `5 * width`: TS2Vec's 64 -> 320), dropout, and max pooling
    over the steps: `[N, output_dim]`.

    Three named parts, which `methods.TS2Vec` uses apart: `input_projection` (Dense), `steps` (a
    model `[N, T, width] -> [N, T, output_dim]`, per-step features) and `pool`.
    """
    steps, channels = _check_shape(input_shape, "DilatedConv1D")
    for value, label in ((width, "width"), (depth, "depth")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise KerasSSLError(f"DilatedConv1D {label} must be a positive integer, got {value!r}.")
    output_dim = output_dim or 5 * width
    hidden = keras.Input((steps, width), name="projected")
    x = hidden
    sizes = [width] * depth + [output_dim]
    for i, filters in enumerate(sizes):
        block, final = f"block{i + 1}", i == len(sizes) - 1
        # A dilation of T or more reads only padding beyond the centre tap: capping it at T is the
        # same function, without convolving thousands of padding steps (TensorFlow pads the
        # series to a multiple of the dilation).
        dilation = min(2**i, steps)
        shortcut = x
        if x.shape[-1] != filters or final:
            shortcut = layers.Conv1D(filters, 1, name=f"{block}_shortcut")(x)
        h = layers.Activation("gelu", name=f"{block}_gelu1")(x)
        h = layers.Conv1D(filters, kernel_size, padding="same", dilation_rate=dilation,
                          name=f"{block}_conv1")(h)
        h = layers.Activation("gelu", name=f"{block}_gelu2")(h)
        h = layers.Conv1D(filters, kernel_size, padding="same", dilation_rate=dilation,
                          name=f"{block}_conv2")(h)
        x = layers.Add(name=f"{block}_add")([h, shortcut])
    x = layers.Dropout(dropout, name="dropout")(x)
    per_step = keras.Model(hidden, x, name="steps")
    inputs = keras.Input((steps, channels), dtype="float32", name="series")
    projected = layers.Dense(width, name="input_projection")(inputs)
    pooled = layers.GlobalMaxPooling1D(name="pool")(per_step(projected))
    return keras.Model(inputs, pooled, name=name)


def default_patch_size(steps: int) -> int:
    """Patches so that a series has at most 64 tokens (attention is quadratic in them)."""
    return max(1, math.ceil(steps / 64))


def SeriesTransformer(input_shape, embed_dim: int = 64, num_heads: int = 4, num_layers: int = 2,
                      ff_dim: int | None = None, patch_size: int | None = None,
                      dropout: float = 0.1, name: str = "series_transformer") -> keras.Model:
    """A Transformer over the steps of a series: patches of `patch_size` steps (default: at
    most 64 patches) projected to `embed_dim`, learned position embeddings, `num_layers` pre-norm
    blocks (self-attention, GELU feed-forward), a final layer norm and mean pooling: `[N, D]`.
    """
    steps, channels = _check_shape(input_shape, "SeriesTransformer")
    if embed_dim % num_heads:
        raise KerasSSLError(
            f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}."
        )
    patch = default_patch_size(steps) if patch_size is None else int(patch_size)
    if patch < 1 or patch > steps:
        raise KerasSSLError(f"patch_size must lie in 1..{steps}, got {patch_size!r}.")
    ff_dim = ff_dim or 2 * embed_dim
    tokens = math.ceil(steps / patch)
    inputs = keras.Input((steps, channels), dtype="float32", name="series")
    x = inputs
    if tokens * patch != steps:
        x = layers.ZeroPadding1D((0, tokens * patch - steps), name="pad_to_patches")(x)
    x = layers.Reshape((tokens, patch * channels), name="patches")(x)
    x = layers.Dense(embed_dim, name="patch_embedding")(x)
    x = PositionEmbedding(tokens, name="position_embedding")(x)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        block = f"block{i + 1}"
        h = layers.LayerNormalization(epsilon=1e-6, name=f"{block}_attention_norm")(x)
        h = layers.MultiHeadAttention(num_heads, key_dim=embed_dim // num_heads, dropout=dropout,
                                      name=f"{block}_attention")(h, h)
        x = layers.Add(name=f"{block}_attention_add")(
            [x, layers.Dropout(dropout, name=f"{block}_attention_dropout")(h)])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"{block}_ff_norm")(x)
        h = layers.Dense(ff_dim, activation="gelu", name=f"{block}_ff1")(h)
        h = layers.Dense(embed_dim, name=f"{block}_ff2")(h)
        x = layers.Add(name=f"{block}_ff_add")(
            [x, layers.Dropout(dropout, name=f"{block}_ff_dropout")(h)])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


def is_series_encoder(encoder) -> bool:
    """Whether `encoder` takes float series `[N, T, F]` (rank-3 float input)."""
    if not isinstance(encoder, keras.Model) or len(encoder.inputs or []) != 1:
        return False
    spec = encoder.inputs[0]
    return len(encoder.input_shape) == 3 and "float" in str(spec.dtype)


def serving_model(encoder: keras.Model) -> keras.Model:
    """The encoder behind an input named `series` (float32 `[None, T, F]`), for export."""
    if not is_series_encoder(encoder):
        raise KerasSSLError(
            f"Expected a series encoder taking float [N, T, F], got input shape "
            f"{getattr(encoder, 'input_shape', None)}."
        )
    shape = encoder.input_shape[1:]
    if any(d is None for d in shape):
        raise KerasSSLError(
            f"Exporting needs a series encoder of a fixed input shape (T, F), got {shape}."
        )
    inputs = keras.Input(shape=shape, dtype="float32", name="series")
    return keras.Model(inputs, encoder(inputs), name=f"{encoder.name}_serving")


@register_encoder("resnet1d", "series")
def _resnet1d(input_shape, width=None):
    return ResNet1D(input_shape, width=width or 64)


@register_encoder("dilated_conv1d", "series")
def _dilated_conv1d(input_shape, width=None):
    return DilatedConv1D(input_shape, width=width or 64)


@register_encoder("series_transformer", "series")
def _series_transformer(input_shape, width=None):
    width = width or 64
    return SeriesTransformer(input_shape, embed_dim=width, num_heads=max(1, width // 16))
