"""Jigsaw puzzles (Noroozi & Favaro 2016): learn features by putting shuffled tiles back in order."""

from __future__ import annotations

import math
import warnings

import keras
import tensorflow as tf

from keras_ssl import heads, losses, pretext
from keras_ssl import images as images_lib
from keras_ssl.encoders.shared import shared_weights_at
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method

# Below this share of variance in fine detail (images.fine_detail), Jigsaw warns: scikit-learn's
# 8x8 digits at 32 px have 0.07, Fashion-MNIST 0.34, CIFAR-10 0.26.
FINE_DETAIL_WARNING = 0.12
# The paper's 3x3 grid from 64 px; below, tiles of a 3x3 grid (8 px at 32 px) are too small.
LARGE_GRID_MIN_SIZE = 64
DEFAULT_PERMUTATIONS = 100


@register_method("jigsaw")
@keras.saving.register_keras_serializable(package="keras_ssl")
class Jigsaw(SelfSupervisedModel):
    """Jigsaw: a shared encoder embeds each shuffled tile; a classifier names the permutation.

    Each image is cut into `grid x grid` tiles (a random offset inside each cell leaves gaps, so
    edges cannot simply be matched), the tiles are shuffled by one of `permutations` fixed
    permutations chosen far apart in Hamming distance (`pretext.jigsaw_permutations`), and the
    model predicts which one. The tiles of a batch go through the encoder as one batch of
    `N * grid**2` tile images (a siamese network: one set of weights for every tile position);
    the `N` rows of concatenated tile features feed the permutation classifier.

    How the encoder sees tiles: the encoder you pass is the one that is exported and that embeds
    whole images afterwards, so it keeps its full-image input. For the tiles, the model builds a
    second functional view of the *same layers* (the same weights) on a tile-sized input
    (`encoders.shared_weights_at`). That works for any fully convolutional encoder that ends in
    global pooling (every `keras_ssl.encoders` image encoder), costs only the tiles' own pixels
    (a 3x3 grid of 8 px tiles is about half the work of one 32 px image), and shows the encoder
    real pixels, not blurred upsamplings. Encoders with a fixed input size (Flatten + Dense)
    cannot run on tiles; for them pass `resize_tiles=True`, which resizes each tile up to the
    encoder's input size (bilinear, compiled by XLA) at `grid**2` times the cost of one image.

    Tiles stay in [0, 1] (`make_puzzle(normalize=False)`), the range encoders take: the same
    batch-norm layers later embed whole images, so tiles standardised to zero mean and unit
    variance would leave them with statistics of another distribution.

    Args:
        encoder: image encoder to pretrain (and export).
        grid: tiles per side; every cell must be at least `pretext.MIN_CELL_SIZE` pixels.
            `None`: 3 (the paper's) for images of 64 px or more, 2 below. A 3x3 grid cuts 32 px
            images into 8 px tiles, too small to teach the encoder features of whole images:
            on CIFAR-10 its kNN accuracy barely beat random init and its linear probe fell below
            it, where a 2x2 grid (14 px tiles) gains on both (docs/results.md).
        permutations: number of permutations, the classes of the task (100 in the paper is a
            good trade-off between ambiguity and difficulty); `grid**2!` at most. `None`: 100,
            or every permutation when there are fewer (24 for a 2x2 grid).
        hidden_dim: hidden units of the classifier over the concatenated tile features.
        tile_size: tile side in pixels; `None` for 0.85 of a cell (see `pretext.make_puzzle`).
        resize_tiles: resize tiles to the encoder's input size instead of running the encoder's
            layers on tile-sized inputs (see above).
        permutation_seed: seed of the permutation set (fixed: it defines the classes).
        augmenter: an optional augmentation applied to whole images before cutting them.
        seed: seed for the puzzles (tile offsets and permutation picks).

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = keras_ssl.Jigsaw(keras_ssl.encoders.ConvNet((32, 32, 1), width=8), grid=3)
    >>> model.tile_shape
    (8, 8, 1)
    >>> model.compile(optimizer="adam")
    >>> images = np.random.randint(0, 256, (16, 32, 32, 1), dtype="uint8")
    >>> sorted(model.fit(images, batch_size=8, epochs=1, verbose=0).history)
    ['jigsaw_accuracy', 'loss']
    """

    input_kinds = ("images",)

    def __init__(self, encoder, augmenter=None, *, grid=None, permutations=None, hidden_dim=512,
                 tile_size=None, resize_tiles=False, permutation_seed=0, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        if grid is None:
            grid = 3 if min(self.image_size) >= LARGE_GRID_MIN_SIZE else 2
        if not isinstance(grid, int) or grid < 2:
            raise KerasSSLError(f"Jigsaw needs an int grid >= 2 (tiles per side), got {grid!r}.")
        if permutations is None:
            permutations = min(DEFAULT_PERMUTATIONS, math.factorial(grid * grid))
        self.grid = grid
        self.num_permutations = permutations
        self.hidden_dim = hidden_dim
        self.tile_size = tile_size
        self.resize_tiles = bool(resize_tiles)
        self.permutation_seed = permutation_seed
        self.num_tiles = grid * grid
        self.permutations = pretext.jigsaw_permutations(
            self.num_tiles, permutations, seed=permutation_seed
        )
        # Cut one blank puzzle now: an image too small for the grid (or a bad tile size) fails
        # here, when the model is built, with make_puzzle's message, not in the first step.
        height, width = self.image_size
        channels = int(self.encoder.input_shape[-1])
        probe, _ = pretext.make_puzzle(
            tf.zeros([1, height, width, channels], tf.uint8), grid, self.permutations,
            tile_size=tile_size, seed=0, normalize=False,
        )
        self.tile_shape = tuple(int(d) for d in probe.shape[2:])
        if self.resize_tiles:
            self.tile_encoder = self.encoder
        else:
            try:
                self.tile_encoder = shared_weights_at(self.encoder, self.tile_shape[:2],
                                                      needed_for="tiles")
            except KerasSSLError as err:
                raise KerasSSLError(
                    f"{err} Use a fully "
                    "convolutional encoder ending in global pooling (keras_ssl.encoders.ConvNet "
                    "needs tiles of at least 8 px: larger images or a smaller grid), or pass "
                    "resize_tiles=True to resize the tiles to the encoder's input size."
                ) from None
        self.classifier = heads.classifier_head(
            self.num_tiles * self.feature_dim, len(self.permutations), hidden_dim=hidden_dim,
            name="permutation_head",
        )
        self.accuracy_tracker = keras.metrics.Mean(name="jigsaw_accuracy")

    @classmethod
    def from_data(cls, encoder, data, **options):
        """Jigsaw for `data`, with a warning when its images carry little fine detail (upsampled
        from small sources): tiles are then told apart by cues that say nothing of the content."""
        if data.kind == "images":
            detail = images_lib.fine_detail(cls.sample_inputs(data))
            if detail < FINE_DETAIL_WARNING:
                warnings.warn(
                    f"The {data.name} images carry little detail finer than a quarter of their "
                    f"size ({detail:.2f} of their variance; photos have 0.2 or more), as images "
                    "upsampled from small sources do: Jigsaw solves such puzzles from cues that "
                    "teach little. simclr or denoising suit such images better.", stacklevel=2)
        return cls(encoder, **options)

    def method_metrics(self):
        return [self.accuracy_tracker]

    def puzzle(self, inputs, seed):
        """`(tiles [N, T, t, t, C] in [0, 1], permutation labels [N])` for a batch of images."""
        images = self.preprocess(inputs)
        if self.augmenter is not None:
            images = self.augmenter(images, training=True)
        return pretext.make_puzzle(
            images, self.grid, self.permutations, tile_size=self.tile_size, seed=seed,
            normalize=False,
        )

    def compute_ssl_loss(self, inputs, labels, training):
        tiles, targets = self.puzzle(inputs, self.seed_generator.next())
        # [N, T, t, t, C] -> [N*T, t, t, C]: one encoder pass over every tile of the batch.
        flat = tf.reshape(tiles, [-1, *self.tile_shape])
        if self.resize_tiles:
            flat = tf.image.resize(flat, self.image_size)
        features = self.tile_encoder(flat, training=training)
        # [N*T, D] -> [N, T*D]: tile features concatenated in their shuffled order.
        features = tf.reshape(features, [-1, self.num_tiles * self.feature_dim])
        logits = self.classifier(features, training=training)
        loss, accuracy = losses.pretext_classification(targets, logits, return_accuracy=True)
        self.accuracy_tracker.update_state(accuracy)
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "grid": self.grid,
            "permutations": self.num_permutations,
            "hidden_dim": self.hidden_dim,
            "tile_size": self.tile_size,
            "resize_tiles": self.resize_tiles,
            "permutation_seed": self.permutation_seed,
        }
