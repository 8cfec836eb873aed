"""Text encoders: token ids `[N, L]` (0 = padding) to per-position features `[N, L, D]`;
`MaskedMeanPooling` turns them into one embedding per sequence."""

from __future__ import annotations

import keras
from keras import layers

from keras_ssl.encoders.registry import register_encoder
from keras_ssl.errors import KerasSSLError


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
    causal: bool = False,
) -> keras.Model:
    """A Transformer encoder (Vaswani et al. 2017) from token ids `[N, L]` to features `[N, L, D]`.

    Token and learned position embeddings, then `num_layers` pre-norm blocks (self-attention and a
    GELU feed-forward layer, each in a residual branch; Xiong et al. 2020: stable without a long
    warm-up on small data) and a final layer norm. Padding (id 0) is masked out of attention.
    With `causal=True` each position attends only to itself and earlier positions (a GPT-style
    language model's encoder, for `NextTokenModel`).

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
        )(h, h, attention_mask=attention_mask, use_causal_mask=bool(causal))
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


@register_encoder("transformer", "text")
def _transformer(input_shape, width=None, *, vocab_size, causal=False):
    width = width or 128
    return TransformerEncoder(vocab_size, input_shape[0], embed_dim=width,
                              num_heads=max(1, width // 32), ff_dim=2 * width, causal=causal)


@register_encoder("lstm", "text")
def _lstm(input_shape, width=None, *, vocab_size):
    width = width or 128
    return LSTMEncoder(vocab_size, embed_dim=width, units=width // 2, sequence_length=input_shape[0])
