"""Tiny instances of every registered method, for tests that must run each one quickly."""

import numpy as np

from keras_ssl import encoders
from keras_ssl.methods import get_method

BATCH = 8
VOCAB, LENGTH = 40, 12


def tiny_method(name, seed=0):
    """A registered method on a tiny encoder, and a batch it trains on: (model, x, y)."""
    cls, preset = get_method(name)
    rng = np.random.default_rng(seed)
    if name in ("mlm", "next_token"):
        encoder = encoders.TransformerEncoder(VOCAB, LENGTH, embed_dim=8, num_heads=2,
                                              num_layers=1, ff_dim=16, dropout=0.0,
                                              causal=name == "next_token")
        x = rng.integers(3, VOCAB, (BATCH, LENGTH)).astype("int32")
        return cls(encoder, VOCAB, seed=seed), x, None
    if "series" in cls.input_kinds and "images" not in cls.input_kinds:
        encoder = (encoders.DilatedConv1D((LENGTH, 2), width=4, depth=2)
                   if cls.default_encoder == "dilated_conv1d" else
                   encoders.ResNet1D((LENGTH, 2), width=4, blocks=1))
        x = rng.normal(size=(BATCH, LENGTH, 2)).astype("float32")
        return cls(encoder, seed=seed, **preset), x, None
    kwargs = dict(preset)
    size = 16
    if name == "moco":
        kwargs.update(queue_size=16, projection_dim=8)
    elif name in ("simclr", "supcon"):
        kwargs.update(projection_dim=8)
    elif name == "triplet":
        kwargs.update(embedding_dim=8)
    elif name == "rotnet":
        kwargs.update(hidden_dim=None)
    elif name == "jigsaw":
        kwargs.update(grid=2, permutations=4, tile_size=8, hidden_dim=8)
    elif name in ("byol", "simsiam", "barlow_twins", "vicreg", "nnclr"):
        kwargs.update(projection_dim=8, hidden_dim=16, **({"queue_size": 16} if name == "nnclr" else {}))
    elif name == "dino":
        kwargs.update(output_dim=16, hidden_dim=16, bottleneck_dim=8, num_local_views=2)
    encoder = encoders.ConvNet((size, size, 1), width=4)
    if name == "mae":  # MAE drops patches: it needs a ViT
        encoder = encoders.ViT((size, size, 1), hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=16)
        kwargs.update(decoder_dim=8)
    model = cls(encoder, seed=seed, **kwargs)
    x = rng.integers(0, 256, (BATCH, size, size, 1), dtype="uint8")
    y = (np.arange(BATCH) % 2).astype("int64") if cls.needs_labels else None
    return model, x, y
