"""A Vision Transformer encoder (Dosovitskiy et al., ICLR 2021), written after keras_hub's ViT.

Images float32 `[N, H, W, C]` in [0, 1] -> `PatchEmbedding` (centred pixels, a stride-`patch`
convolution to `hidden_dim`, plus a learned position embedding per patch) -> `ViTTransformer`
(a [CLS] token, `num_layers` pre-norm blocks of multi-head self-attention and a GELU MLP, a final
LayerNorm) -> `TokenPooling` (mean of the patch tokens, or the [CLS] token) -> `[N, hidden_dim]`.

The three stages are layers of the functional model named `patch_embedding`, `transformer` and
`pool`, so a method can run them on a subset of the tokens: MAE embeds every patch, keeps the
visible ones and runs `transformer` on those only (`ViTTransformer` takes any number of tokens).

Sizes: keras_hub's smallest ViT (ViT-B/16) is far too big for a CPU; these are scaled down:

| name | hidden | layers | heads | MLP |
| --- | --- | --- | --- | --- |
| `vit_tiny` | 96 | 4 | 3 | 192 |
| `vit_small` | 192 | 6 | 3 | 384 |

The patch side is 4 px for images up to 64 px (8 x 8 patches at 32 px) and 8 px above (12 x 12
at 96 px); it must divide the image size.

Differences from keras_hub's ViT: mean pooling by default (MAE's fine-tuning default; the [CLS]
token with `pooling="cls"`), no dropout, inputs in [0, 1] centred to [-1, 1] inside.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from keras_ssl.encoders.registry import register_encoder
from keras_ssl.errors import KerasSSLError
from keras_ssl.validate import check_int

VIT_SIZES = {
    "vit_tiny": dict(hidden_dim=96, num_layers=4, num_heads=3, mlp_dim=192),
    "vit_small": dict(hidden_dim=192, num_layers=6, num_heads=3, mlp_dim=384),
}


def default_patch_size(image_size: int) -> int:
    """4 px up to 64 px images, 8 px above."""
    return 4 if image_size <= 64 else 8


@keras.saving.register_keras_serializable(package="keras_ssl")
class PatchEmbedding(layers.Layer):
    """Images `[N, H, W, C]` in [0, 1] -> patch tokens `[N, (H/p)(W/p), D]` + position embedding."""

    def __init__(self, patch_size: int, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.projection = layers.Conv2D(hidden_dim, patch_size, strides=patch_size,
                                        padding="valid", name="projection")

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        self.grid = (height // self.patch_size, width // self.patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.projection.build(input_shape)
        self.position_embedding = self.add_weight(
            shape=(self.num_patches, self.hidden_dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="position_embedding",
        )

    def call(self, images):
        x = self.projection(images * 2.0 - 1.0)
        x = ops.reshape(x, (-1, self.num_patches, self.hidden_dim))
        return x + ops.cast(self.position_embedding[None], x.dtype)

    def compute_output_shape(self, input_shape):
        grid = (input_shape[1] // self.patch_size) * (input_shape[2] // self.patch_size)
        return (input_shape[0], grid, self.hidden_dim)

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim}


@keras.saving.register_keras_serializable(package="keras_ssl")
class ViTTransformer(layers.Layer):
    """Tokens `[N, T, D]` -> `[N, T (+1 with cls_token), D]`: pre-norm transformer blocks.

    Args:
        num_layers, num_heads, mlp_dim: the blocks' depth, attention heads and MLP width.
        cls_token: prepend a learned [CLS] token (its output is row 0).
        epsilon: LayerNorm epsilon (1e-6 as keras_hub's ViT).
    """

    def __init__(self, num_layers: int, num_heads: int, mlp_dim: int, cls_token: bool = True,
                 epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.num_heads, self.mlp_dim = int(num_layers), int(num_heads), int(mlp_dim)
        self.cls_token, self.epsilon = bool(cls_token), float(epsilon)
        self.norms1 = [layers.LayerNormalization(epsilon=epsilon, name=f"block{i}_norm1")
                       for i in range(self.num_layers)]
        self.norms2 = [layers.LayerNormalization(epsilon=epsilon, name=f"block{i}_norm2")
                       for i in range(self.num_layers)]
        self.mlps1 = [layers.Dense(mlp_dim, activation="gelu", name=f"block{i}_mlp1")
                      for i in range(self.num_layers)]
        self.final_norm = layers.LayerNormalization(epsilon=epsilon, name="final_norm")

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if dim % self.num_heads:
            raise KerasSSLError(
                f"The ViT width ({dim}) must be a multiple of its attention heads "
                f"({self.num_heads})."
            )
        shape = (None, None, dim)
        # Attention and the MLP's output need the width, known only here.
        self.attentions = [layers.MultiHeadAttention(self.num_heads, dim // self.num_heads,
                                                     name=f"block{i}_attention")
                           for i in range(self.num_layers)]
        self.mlps2 = [layers.Dense(dim, name=f"block{i}_mlp2") for i in range(self.num_layers)]
        for i in range(self.num_layers):
            self.norms1[i].build(shape)
            self.attentions[i].build(shape, shape)
            self.norms2[i].build(shape)
            self.mlps1[i].build(shape)
            self.mlps2[i].build((None, None, self.mlp_dim))
        self.final_norm.build(shape)
        if self.cls_token:
            self.cls = self.add_weight(shape=(1, 1, dim), initializer="zeros", name="cls_token")

    def call(self, tokens, training=None):
        x = tokens
        if self.cls_token:
            cls = ops.cast(ops.broadcast_to(self.cls, (ops.shape(x)[0], 1, ops.shape(x)[2])),
                           x.dtype)
            x = ops.concatenate([cls, x], axis=1)
        for i in range(self.num_layers):
            y = self.norms1[i](x)
            x = x + self.attentions[i](y, y, training=training)
            x = x + self.mlps2[i](self.mlps1[i](self.norms2[i](x)))
        return self.final_norm(x)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        if self.cls_token and length is not None:
            length += 1
        return (input_shape[0], length, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers,
                "num_heads": self.num_heads, "mlp_dim": self.mlp_dim,
                "cls_token": self.cls_token, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_ssl")
class TokenPooling(layers.Layer):
    """`[N, 1 + P, D]` -> `[N, D]`: the mean of the patch tokens ("mean") or the [CLS] token."""

    def __init__(self, pooling: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if pooling not in ("mean", "cls"):
            raise KerasSSLError(f"ViT pooling must be 'mean' or 'cls', got {pooling!r}.")
        self.pooling = pooling

    def call(self, tokens):
        return ops.mean(tokens[:, 1:], axis=1) if self.pooling == "mean" else tokens[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "pooling": self.pooling}


def ViT(input_shape=(32, 32, 3), patch_size: int | None = None, hidden_dim: int = 96,
        num_layers: int = 4, num_heads: int = 3, mlp_dim: int = 192, pooling: str = "mean",
        name: str = "vit") -> keras.Model:
    """A ViT encoder: float32 images in [0, 1] -> `[N, hidden_dim]` pooled features.

    Example:
    >>> ViT((32, 32, 3), hidden_dim=24, num_layers=1, num_heads=2, mlp_dim=48).output_shape
    (None, 24)
    """
    if input_shape is None or len(input_shape) != 3:
        raise KerasSSLError(f"A ViT needs input_shape=(height, width, channels), got {input_shape!r}.")
    height, width, channels = (int(d) for d in input_shape)
    patch = default_patch_size(min(height, width)) if patch_size is None else check_int(
        patch_size, "patch_size", least=1)
    if height % patch or width % patch:
        raise KerasSSLError(
            f"The ViT's patch size {patch} must divide the image size {height}x{width}. Pass "
            f"patch_size= one that does, or resize the images (e.g. to 32 or 96 px)."
        )
    inputs = keras.Input(shape=(height, width, channels), name="images")
    tokens = PatchEmbedding(patch, hidden_dim, name="patch_embedding")(inputs)
    tokens = ViTTransformer(num_layers, num_heads, mlp_dim, name="transformer")(tokens)
    return keras.Model(inputs, TokenPooling(pooling, name="pool")(tokens), name=name)


def _vit_builder(size):
    def build(input_shape, width=None, patch_size=None, pooling="mean"):
        options = dict(VIT_SIZES[size])
        if width:
            heads = options["num_heads"]
            options["hidden_dim"] = max(heads, int(width) // heads * heads)
            options["mlp_dim"] = 2 * options["hidden_dim"]
        return ViT(input_shape, patch_size=patch_size, pooling=pooling, name=size, **options)

    return build


for _size in VIT_SIZES:
    register_encoder(_size, "images")(_vit_builder(_size))

__all__ = ["VIT_SIZES", "PatchEmbedding", "TokenPooling", "ViT", "ViTTransformer",
           "default_patch_size"]
