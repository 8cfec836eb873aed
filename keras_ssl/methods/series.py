"""Pretext methods on time series `[N, T, F]`: masked steps, forecasting, segment order.

Each one trains a series encoder (`encoders.ResNet1D`, `encoders.SeriesTransformer`, or any
`keras.Model` from `[N, T, F]` to `[N, D]`) through a small head that is dropped at export:

| name | class | task |
| --- | --- | --- |
| `masked_steps` | `MaskedSteps` | rebuild spans of hidden steps (zeroed) from the rest (as TST, Zerveas et al. 2021) |
| `forecast` | `Forecast` | see a series up to a random step, predict the next `horizon` steps |
| `segment_order` | `SegmentOrder` | which permutation shuffled the series' `segments` segments |

Contrastive and other two-view methods take series too (`SimCLR(encoder)`, `VICReg(encoder)`,
...: their default views are `augment.series()`).
The corruptions are drawn per series in the graph from stateless seeds (XLA compiles them; under
`tf.distribute` each replica draws its own). The exported SavedModel maps `series` (float32
`[None, T, F]`) to `embeddings`.
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from keras_ssl import heads, losses
from keras_ssl.augment.series import resample_steps
from keras_ssl.encoders.series import is_series_encoder, serving_model
from keras_ssl.encoders.shared import shared_weights_at
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method
from keras_ssl.pretext._common import batch_size, seed_tensor, split_seed, uniform_int
from keras_ssl.validate import check_fraction, check_int

__all__ = ["Forecast", "MaskedSteps", "SegmentOrder", "cut_segments", "forecast_mask",
           "permute_segments", "series_decoder", "series_lengths", "step_mask"]


# ----- pretext label makers ---------------------------------------------------------------------
def step_mask(shape, mask_ratio: float, span: int, seed=None) -> tf.Tensor:
    """float32 `[N, T]`: 1.0 on `round(mask_ratio * ceil(T / span))` spans of `span` steps
    chosen at random in each series (exactly that many per series), 0.0 elsewhere.

    >>> m = step_mask((4, 20), 0.5, 2, seed=0).numpy()
    >>> m.shape, m.sum(axis=1).tolist()
    ((4, 20), [10.0, 10.0, 10.0, 10.0])
    """
    n, steps = shape[0], int(shape[1])
    spans = math.ceil(steps / span)
    count = min(spans - 1, max(1, round(mask_ratio * spans))) if spans > 1 else 1
    scores = uniform_int([n, spans], seed_tensor(seed), 0, 2**31 - 1)
    chosen = tf.math.top_k(scores, k=count, sorted=False).indices
    span_mask = tf.reduce_max(tf.one_hot(chosen, spans, dtype=tf.float32), axis=1)  # [N, spans]
    return tf.repeat(span_mask, span, axis=1)[:, :steps]


def series_lengths(x) -> tf.Tensor:
    """int32 `[N]`: the steps of each series before its zero padding, that is up to its last step
    with a non-zero channel (`data.series` pads shorter series with zeros at the end). A series of
    zeros only counts as whole.

    >>> x = np.zeros((2, 5, 1), "float32"); x[0, :3] = 1.0; x[1, 4] = -2.0
    >>> series_lengths(x).numpy().tolist()
    [3, 5]
    """
    x = tf.convert_to_tensor(x)
    nonzero = tf.cast(tf.reduce_any(tf.not_equal(x, 0), axis=-1), tf.int32)  # [N, T]
    steps = tf.shape(x)[1]
    trailing = tf.argmax(tf.reverse(nonzero, axis=[1]), axis=1, output_type=tf.int32)
    return tf.where(tf.reduce_any(nonzero > 0, axis=1), steps - trailing, steps)


def _lengths(n, steps: int, lengths) -> tf.Tensor:
    """int32 `[N, 1]` valid steps per series (all `steps` when `lengths` is None)."""
    if lengths is None:
        return tf.fill([n, 1], steps)
    return tf.reshape(tf.cast(lengths, tf.int32), [-1, 1])


def forecast_mask(shape, horizon: int, min_context: int, seed=None, lengths=None):
    """`(visible, target)` float32 `[N, T]`: each series is seen up to a random step c and
    predicts steps c .. c + horizon - 1 (target 1.0 there). c lies in
    [min_context, T - horizon]; a series of `lengths[i] < T` valid steps scales both ends to its
    length (c in [min_context * L / T, L - horizon]), so its forecast never reaches the padding.

    >>> visible, target = forecast_mask((3, 10), 2, 4, seed=0)
    >>> (visible.numpy().sum(1) >= 4).all(), target.numpy().sum(1).tolist()
    (np.True_, [2.0, 2.0, 2.0])
    """
    n, steps = shape[0], int(shape[1])
    length = _lengths(n, steps, lengths)
    low = tf.maximum(1, min_context * length // steps)
    high = tf.maximum(low, length - horizon)  # inclusive
    cut = low + uniform_int([n, 1], seed_tensor(seed), 0, 2**30) % (high - low + 1)
    t = tf.range(steps)[None]
    visible = tf.cast(t < cut, tf.float32)
    target = tf.cast((t >= cut) & (t < cut + horizon) & (t < length), tf.float32)
    return visible, target


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


def series_decoder(feature_dim: int, output_shape, hidden_dim: int = 256,
                   name: str = "series_decoder") -> keras.Model:
    """An MLP from `[N, D]` features to series `[N, T, F]` (linear output: series are unbounded)."""
    steps, channels = (int(d) for d in output_shape)
    inputs = keras.Input((int(feature_dim),), name="features")
    x = layers.Dense(hidden_dim, activation="gelu", name="dense1")(inputs)
    x = layers.Dense(steps * channels, name="steps")(x)
    return keras.Model(inputs, layers.Reshape((steps, channels), name="series")(x), name=name)


# ----- the shared base ----------------------------------------------------------------------------
class _SeriesMethod(SelfSupervisedModel):
    """What the series methods share: series input checks, float32 inputs, the `series` export."""

    input_kinds = ("series",)

    def __init__(self, encoder, augmenter=None, *, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        if not is_series_encoder(encoder):
            raise KerasSSLError(
                f"{type(self).__name__} takes a series encoder (float [N, T, F] -> [N, D]), but "
                f"its input shape is {encoder.input_shape}. Use encoders.ResNet1D or "
                "encoders.SeriesTransformer (--encoder resnet1d or series_transformer)."
            )
        if any(d is None for d in encoder.input_shape[1:]):
            raise KerasSSLError(
                f"{type(self).__name__} needs an encoder of a fixed input shape (T, F), got "
                f"{encoder.input_shape[1:]}."
            )
        self.steps, self.channels = (int(d) for d in encoder.input_shape[1:])

    @property
    def input_kind(self) -> str:
        return "series"

    def preprocess(self, inputs):
        return tf.cast(inputs, "float32")

    def check_inputs(self, inputs, labels) -> None:
        name = type(self).__name__
        shape, dtype = inputs.shape, tf.as_dtype(inputs.dtype)
        if not (dtype.is_floating or dtype.is_integer):
            raise KerasSSLError(f"{name} takes float series [N, T, F], got dtype {dtype.name}.")
        if shape.rank == 2 and self.channels == 1:
            raise KerasSSLError(
                f"{name} takes series [N, T, F], got [N, T] = {shape}: add the channel axis "
                "(x[..., None]), as keras_ssl.data.series.load does."
            )
        if shape.rank != 3:
            raise KerasSSLError(
                f"{name} takes batches of series [N, T, F], got shape {shape}. Load series with "
                "keras_ssl.data.series.load."
            )
        if shape[2] is not None and shape[2] != self.channels:
            fix = (
                "Build the encoder with input_shape=data.input_shape"
                if shape[2] > 1 or self.channels == 1 else
                f"Build the encoder with input_shape=({self.steps}, 1), or repeat the one "
                f"channel (np.repeat(x, {self.channels}, axis=-1)) if that is meant"
            )
            raise KerasSSLError(
                f"The encoder takes {self.channels}-channel series but the data have {shape[2]} "
                f"channel(s). {fix}."
            )
        if shape[1] is not None and shape[1] != self.steps:
            raise KerasSSLError(
                f"The encoder takes series of {self.steps} steps but the data have {shape[1]}. "
                f"Load them with keras_ssl.data.series.load(..., length={self.steps}) or build "
                f"the encoder with input_shape=({shape[1]}, {self.channels})."
            )
        if labels is None and self.needs_labels:
            super().check_inputs(inputs, labels)
        if shape[0] is not None and shape[0] < self.min_batch_size:
            raise KerasSSLError(
                f"{name} needs batches of at least {self.min_batch_size} series, got {shape[0]}."
            )

    def serving_model(self) -> keras.Model:
        return serving_model(self.encoder)

    def views(self, inputs):
        """The clean series the pretext task corrupts (augmented when an augmenter is set)."""
        x = self.preprocess(inputs)
        if self.augmenter is not None:
            x = self.augmenter(x, training=True)
        return x


# ----- the methods ------------------------------------------------------------------------------
class _StepReconstruction(_SeriesMethod):
    """Base of the methods that hide some steps (zeroed) and rebuild others from the encoder's
    feature vector with `decoder`; the loss is the mean squared error over the target steps."""

    metric_name = "reconstruction_error"

    def __init__(self, encoder, augmenter=None, *, decoder=None, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        self.decoder = decoder or series_decoder(self.feature_dim, (self.steps, self.channels))
        if tuple(self.decoder.output_shape[1:]) != (self.steps, self.channels):
            raise KerasSSLError(
                f"The decoder outputs {self.decoder.output_shape[1:]}, the series are "
                f"{(self.steps, self.channels)}."
            )
        self.error_tracker = keras.metrics.Mean(name=self.metric_name)

    def visible_and_target(self, x):
        """Per-step masks `[N, T]` of the series `x` (1 = seen by the encoder; 1 = scored), set
        by each method; steps in a series' zero padding are never scored."""
        raise NotImplementedError

    def method_metrics(self):
        return [self.error_tracker]

    def compute_ssl_loss(self, inputs, labels, training):
        x = self.views(inputs)
        visible, target = self.visible_and_target(x)
        prediction = self.decoder(self.encoder(x * visible[..., None], training=training),
                                  training=training)
        loss = losses.masked_reconstruction(x, prediction, target[..., None])
        self.error_tracker.update_state(loss)
        return loss

    def get_config(self):
        return {**super().get_config(),
                "decoder": keras.saving.serialize_keras_object(self.decoder)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return super().from_config(config)


@register_method("masked_steps")
@keras.saving.register_keras_serializable(package="keras_ssl")
class MaskedSteps(_StepReconstruction):
    """Masked-step reconstruction: hide random spans of steps (set to 0, every channel) and
    rebuild them from the encoder's feature vector; the loss is the mean squared error over the
    hidden steps only (`losses.masked_reconstruction`), as MAE scores only hidden patches;
    hidden steps in a series' zero padding are not scored.

    Args:
        encoder: a series encoder `[N, T, F] -> [N, D]`.
        mask_ratio: share of the spans hidden in each series.
        span: steps per hidden span (default `max(1, T // 16)`).
        decoder: a model `[N, D] -> [N, T, F]`; default `series_decoder`.
        augmenter: optional augmentation of the clean series (default none).

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = MaskedSteps(keras_ssl.encoders.ResNet1D((32, 2), width=4))
    >>> model.compile(optimizer="adam")
    >>> sorted(model.fit(np.random.rand(8, 32, 2), batch_size=4, verbose=0).history)
    ['loss', 'reconstruction_error']
    """

    def __init__(self, encoder, augmenter=None, *, mask_ratio: float = 0.5,
                 span: int | None = None, decoder=None, seed=None, **kwargs):
        super().__init__(encoder, augmenter, decoder=decoder, seed=seed, **kwargs)
        self.mask_ratio = check_fraction(mask_ratio, "mask_ratio")
        self.span = max(1, self.steps // 16) if span is None else check_int(span, "span", least=1)
        if self.span > self.steps:
            raise KerasSSLError(f"span={span} is longer than the series ({self.steps} steps).")

    def visible_and_target(self, x):
        hidden = step_mask((batch_size(x), self.steps), self.mask_ratio, self.span,
                           seed=self.seed_generator.next())
        valid = tf.cast(tf.range(self.steps)[None] < series_lengths(x)[:, None], tf.float32)
        return 1.0 - hidden, hidden * valid

    def get_config(self):
        return {**super().get_config(), "mask_ratio": self.mask_ratio, "span": self.span}


@register_method("forecast")
@keras.saving.register_keras_serializable(package="keras_ssl")
class Forecast(_StepReconstruction):
    """Next-step forecasting as a pretext task: the encoder sees each series up to a random step
    c (later steps zeroed, as the padding of a shorter series) and a head predicts steps
    c .. c + horizon - 1 from its feature vector; mean squared error over those steps. In a
    zero-padded series c is drawn within its own length (`series_lengths`), so the forecast
    is of the series, not of its padding.

    Args:
        encoder: a series encoder `[N, T, F] -> [N, D]`.
        horizon: steps to predict (default `max(1, T // 10)`).
        min_context: the fewest steps seen (default `T // 2`).
        decoder: a model `[N, D] -> [N, T, F]` (the loss reads the forecast steps of its
            output); default `series_decoder`.

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = Forecast(keras_ssl.encoders.ResNet1D((32, 1), width=4))
    >>> model.compile(optimizer="adam")
    >>> sorted(model.fit(np.random.rand(8, 32, 1), batch_size=4, verbose=0).history)
    ['forecast_error', 'loss']
    """

    metric_name = "forecast_error"

    def __init__(self, encoder, augmenter=None, *, horizon: int | None = None,
                 min_context: int | None = None, decoder=None, seed=None, **kwargs):
        super().__init__(encoder, augmenter, decoder=decoder, seed=seed, **kwargs)
        self.horizon = (max(1, self.steps // 10) if horizon is None
                        else check_int(horizon, "horizon", least=1))
        self.min_context = (max(1, self.steps // 2) if min_context is None
                            else check_int(min_context, "min_context", least=1))
        if self.min_context + self.horizon > self.steps:
            raise KerasSSLError(
                f"min_context={self.min_context} + horizon={self.horizon} exceed the "
                f"{self.steps} steps of a series; lower them."
            )

    def visible_and_target(self, x):
        return forecast_mask((batch_size(x), self.steps), self.horizon, self.min_context,
                             seed=self.seed_generator.next(), lengths=series_lengths(x))

    def get_config(self):
        return {**super().get_config(), "horizon": self.horizon, "min_context": self.min_context}


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

