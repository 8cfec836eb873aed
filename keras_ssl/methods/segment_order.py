"""Segment-order prediction on time series: which permutation shuffled a series' segments.

The series analogue of Jigsaw: each series is cut into K segments (within its own length, if
zero-padded), shuffled by one of the K! orders, and a classifier names the order from the
segments' features. The exported SavedModel maps `series` (float32 `[None, T, F]`) to
`embeddings`, as the other series methods' do.
"""

from __future__ import annotations

import itertools
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from keras_ssl import heads
from keras_ssl.augment.series import resample_steps
from keras_ssl.encoders.shared import shared_weights_at
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.registry import register_method
from keras_ssl.methods.series import SMALL_SETS, _lengths, _SeriesMethod, series_lengths
from keras_ssl.pretext._common import batch_size, seed_tensor, split_seed, uniform_int
from keras_ssl.validate import check_fraction, check_int

__all__ = ["SegmentOrder", "cut_segments", "permute_segments"]


def permute_segments(x, permutations, seed=None, lengths=None):
    """`(shuffled, labels)`: each series cut into K equal segments (the last steps, T mod K of
    them, stay in place) reordered by permutation `labels[i]` of `permutations` `[P, K]`. With
    `lengths` (int `[N]`), a series is cut within its first `lengths[i]` steps and its padding
    stays in place, so where the zeros are does not give the order away.

    >>> x = np.arange(6, dtype="float32").reshape(1, 6, 1)
    >>> shuffled, label = permute_segments(x, np.array([[2, 0, 1]]), seed=0)
    >>> shuffled[0, :, 0].numpy().tolist(), label.numpy().tolist()
    ([4.0, 5.0, 0.0, 1.0, 2.0, 3.0], [0])
    """
    x = tf.convert_to_tensor(x)
    permutations = np.asarray(permutations, np.int32)
    count, segments = permutations.shape
    steps = x.shape[1]
    n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
    labels = uniform_int([n], seed_tensor(seed), 0, count)
    order = tf.gather(tf.constant(permutations), labels)  # [N, K]: segment at each slot
    size = tf.maximum(1, _lengths(n, steps, lengths) // segments)  # [N, 1]
    t = tf.range(steps)[None]
    slot = tf.minimum(t // size, segments - 1)
    source = tf.gather(order, slot, batch_dims=1) * size + t % size  # [N, T]
    source = tf.where(t < segments * size, source, t)
    return tf.gather(x, source, batch_dims=1), labels


def cut_segments(x, segments: int, size: int, gap: float = 0.0, seed=None, lengths=None):
    """float32 `[N, K, size, F]`: each series' K segments in order, each a window of `1 - gap` of
    its slot (a K-th of the series' length, `lengths` when given) at a random offset within the
    slot, resampled linearly to `size` steps. Without a gap, a slot of `size` steps is copied
    as it is; a gap keeps neighbouring segments from meeting, so their ends do not give away
    which follows which.

    >>> x = np.arange(6, dtype="float32").reshape(1, 6, 1)
    >>> cut_segments(x, 3, 2)[0, :, :, 0].numpy().tolist()
    [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    """
    x = tf.convert_to_tensor(x, tf.float32)
    steps = x.shape[1]
    n = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
    length = tf.cast(_lengths(n, steps, lengths), tf.float32)  # [N, 1]
    slot = length / segments
    width = (1.0 - gap) * slot
    resolution = 2**24
    u = tf.cast(uniform_int([n, segments], seed_tensor(seed), 0, resolution), tf.float32)
    start = tf.range(segments, dtype=tf.float32)[None] * slot + u / resolution * (slot - width)
    stride = tf.maximum(width - 1.0, 0.0) / max(size - 1, 1)  # [N, 1]
    position = start[..., None] + stride[..., None] * tf.range(size, dtype=tf.float32)
    position = tf.clip_by_value(position, 0.0, length[..., None] - 1.0)  # [N, K, size]
    values = resample_steps(x, tf.reshape(position, [n, segments * size]))
    return tf.reshape(values, [n, segments, size, x.shape[2]])


@register_method("segment_order")
@keras.saving.register_keras_serializable(package="keras_ssl")
class SegmentOrder(_SeriesMethod):
    """Segment-order prediction: cut each series into `segments` equal segments, shuffle them by
    one of the `segments!` permutations (drawn per series) and classify which one (cross-entropy;
    `order_accuracy`). Chance is `1 / segments!`. A zero-padded series is cut within its own
    length (`series_lengths`).

    With `siamese=True` (the default) each segment goes through the encoder on its own, at its
    own length where the encoder allows (`encoders.shared_weights_at`; a Transformer with one
    position per step sees it as a series zero-padded to T steps), and the classifier reads the
    segments' features side by side through one hidden layer: Jigsaw's context-free network, so
    the order is told from what each segment holds, not from the jumps where shuffled segments
    meet (`cut_segments`). With `siamese=False` the encoder sees the whole shuffled series
    (`permute_segments`).

    Args:
        encoder: a series encoder `[N, T, F] -> [N, D]`.
        segments: segments per series, 2 to 5 (2, 6, 24 or 120 classes).
        siamese: encode the segments apart (True) or the shuffled series whole (False).
        gap: with `siamese`, the share of each segment's slot left out (`cut_segments`).
        hidden_dim: hidden units of the order classifier (None: a linear classifier).

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = SegmentOrder(keras_ssl.encoders.ResNet1D((30, 1), width=4))
    >>> model.compile(optimizer="adam")
    >>> sorted(model.fit(np.random.rand(8, 30, 1), batch_size=4, verbose=0).history)
    ['loss', 'order_accuracy']
    """

    few_series_evidence = (f"{SMALL_SETS} 5-10 points of kNN under the random-init one, on "
                           "ItalyPowerDemand's 67 within 1 point; on OSULeaf's 200 it gained 11.0")
    # Segments shorter than this gave the order away without the series' shape: on
    # JapaneseVowels (segments of 2-9 steps) the encoder ended 11 points under random init.
    short_segment_steps = 10

    def __init__(self, encoder, augmenter=None, *, segments: int = 3, siamese: bool = True,
                 gap: float = 0.0, hidden_dim: int | None = 256, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        self.segments = check_int(segments, "segments", least=2)
        if self.segments > 5 or self.steps // self.segments < 1:
            raise KerasSSLError(
                f"segments must lie in 2..{min(5, self.steps)} (at most 5: 120 orders), got "
                f"{segments!r}."
            )
        self.siamese = bool(siamese)
        self.gap = 0.0 if gap == 0 else check_fraction(gap, "gap")
        self.permutations = np.array(list(itertools.permutations(range(self.segments))), np.int32)
        inputs = self.feature_dim * (self.segments if self.siamese else 1)
        self.hidden_dim = None if hidden_dim is None else check_int(hidden_dim, "hidden_dim",
                                                                    least=1)
        self.classifier = (
            heads.classifier_head(inputs, len(self.permutations), self.hidden_dim,
                                  name="order_head") if self.hidden_dim else
            keras.Sequential([keras.Input((inputs,)), layers.Dense(len(self.permutations),
                                                                    name="order_logits")],
                             name="order_head"))
        self.accuracy_tracker = keras.metrics.Mean(name="order_accuracy")
        self.segment_steps = self.steps // self.segments
        # Kept out of Keras' tracking: it shares the encoder's weights.
        object.__setattr__(self, "_segment_encoder", shared_weights_at(
            self.encoder, (self.segment_steps,)) if self.siamese else None)

    @classmethod
    def from_data(cls, encoder, data, **options):
        """The method for `data`, with a warning when its segments are too short to order."""
        model = super().from_data(encoder, data, **options)
        if model.segment_steps < cls.short_segment_steps:
            warnings.warn(
                f"SegmentOrder cuts {data.name}'s series into {model.segments} segments of "
                f"{model.segment_steps} steps (or fewer, in shorter series): on JapaneseVowels' "
                "segments of 2-9 steps its encoder ended 11 points of kNN under the random-init "
                "one (docs/series.md). Use fewer segments (segments=2) or masked_steps or "
                "forecast, which gained 5-6 points there.", stacklevel=2)
        return model

    def encode_segments(self, segments, training):
        """`[N, K, S, F]` -> `[N, K * D]`: each segment through the encoder on its own (at its own
        length where the encoder allows, else as a series zero-padded to T steps)."""
        n, count = tf.shape(segments)[0], self.segments
        flat = tf.reshape(segments, [-1, self.segment_steps, self.channels])
        if self._segment_encoder is not None:
            features = self._segment_encoder(flat, training=training)
        else:
            flat = tf.pad(flat, [[0, 0], [0, self.steps - self.segment_steps], [0, 0]])
            features = self.encoder(flat, training=training)
        return tf.reshape(features, [n, count * self.feature_dim])

    def method_metrics(self):
        return [self.accuracy_tracker]

    def compute_ssl_loss(self, inputs, labels, training):
        x = self.views(inputs)
        if self.siamese:
            cut_seed, order_seed = split_seed(self.seed_generator.next(), 2)
            cut = cut_segments(x, self.segments, self.segment_steps, self.gap, seed=cut_seed,
                               lengths=series_lengths(x))
            order = uniform_int([batch_size(x)], order_seed, 0, len(self.permutations))
            shuffled = tf.gather(cut, tf.gather(tf.constant(self.permutations), order),
                                 batch_dims=1)
            features = self.encode_segments(shuffled, training)
        else:
            shuffled, order = permute_segments(x, self.permutations,
                                               seed=self.seed_generator.next(),
                                               lengths=series_lengths(x))
            features = self.encoder(shuffled, training=training)
        logits = tf.cast(self.classifier(features, training=training), tf.float32)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(order, logits))
        accuracy = tf.reduce_mean(tf.cast(
            tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), order), tf.float32))
        self.accuracy_tracker.update_state(accuracy)
        return loss

    def get_config(self):
        return {**super().get_config(), "segments": self.segments, "siamese": self.siamese,
                "gap": self.gap, "hidden_dim": self.hidden_dim}

    @classmethod
    def from_config(cls, config):
        # Configs saved before `siamese` and `hidden_dim` existed describe a linear classifier
        # of the whole shuffled series.
        return super().from_config({"siamese": False, "hidden_dim": None, **config})

