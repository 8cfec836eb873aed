"""Pretext methods on time series `[N, T, F]`: masked steps and forecasting, and their base.

Each one trains a series encoder (`encoders.ResNet1D`, `encoders.SeriesTransformer`, or any
`keras.Model` from `[N, T, F]` to `[N, D]`) through a small head that is dropped at export:

| name | class | task |
| --- | --- | --- |
| `masked_steps` | `MaskedSteps` | rebuild spans of hidden steps (zeroed) from the rest (as TST, Zerveas et al. 2021) |
| `forecast` | `Forecast` | see a series up to a random step, predict the next `horizon` steps |

`_SeriesMethod` is what every series method shares (input checks, the `series` export, the
warning before a run on a few dozen series); segment-order prediction (`segment_order`) is in
`methods.segment_order`, TS2Vec in `methods.ts2vec`.

Contrastive and other two-view methods take series too (`SimCLR(encoder)`, `VICReg(encoder)`,
...: their default views are `augment.series()`).
The corruptions are drawn per series in the graph from stateless seeds (XLA compiles them; under
`tf.distribute` each replica draws its own). The exported SavedModel maps `series` (float32
`[None, T, F]`) to `embeddings`.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from keras_ssl import losses
from keras_ssl.encoders.series import is_series_encoder, serving_model
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method
from keras_ssl.pretext._common import batch_size, seed_tensor, uniform_int
from keras_ssl.validate import check_fraction, check_int

__all__ = ["Forecast", "MaskedSteps", "forecast_mask", "series_decoder", "series_lengths",
           "step_mask"]


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

    >>> import numpy as np
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


def series_decoder(feature_dim: int, output_shape, hidden_dim: int = 256,
                   name: str = "series_decoder") -> keras.Model:
    """An MLP from `[N, D]` features to series `[N, T, F]` (linear output: series are unbounded)."""
    steps, channels = (int(d) for d in output_shape)
    inputs = keras.Input((int(feature_dim),), name="features")
    x = layers.Dense(hidden_dim, activation="gelu", name="dense1")(inputs)
    x = layers.Dense(steps * channels, name="steps")(x)
    return keras.Model(inputs, layers.Reshape((steps, channels), name="series")(x), name=name)


# The UCR sets of a few dozen training series where the pretext tasks lost kNN (docs/series.md).
SMALL_SETS = "on ArrowHead's 36, BasicMotions' 40 and GunPoint's 50 series its encoder ended"


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

    # The pretext tasks and TS2Vec ended under, or within 2 points of, the random-init encoder's
    # kNN on the UCR sets of 36-67 training series (docs/series.md).
    few_series = 100
    few_series_advice = ("use simclr or vicreg, which gained 6 points of kNN on GunPoint's 50 "
                         "(under 40, keep the random-init encoder)")

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

    few_series_evidence = (f"{SMALL_SETS} 3-17 points of kNN under the random-init one; on "
                           "JapaneseVowels' 270 it gained 6.1 (on OSULeaf's 200, 2.3)")

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
    few_series_evidence = (f"{SMALL_SETS} 5-18 points of kNN under the random-init one, on "
                           "ItalyPowerDemand's 67 within 1 point; on JapaneseVowels' 270 it "
                           "gained 5.0 (on OSULeaf's 200, 1.4)")

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
