"""Per-series random augmentation of time series `[N, T, F]`, as Keras layers, and a recipe.

Each layer draws its random parameters independently per series, for the whole batch at once (no
Python loop, no `tf.map_fn`), so it compiles into a `jit_compile=True` training step; under
`tf.distribute` each replica keeps its rows of the global batch's draws (`replica_rows`), as the
image layers do. Each takes float (or integer) series `[N, T, F]` and returns float32 `[N, T, F]`:
the warping and cropping layers resample back to the same T. `training=False` returns the input
unchanged. Each layer applies to a series with probability `p` (default 1).

| layer | what it does (Um et al. 2017; Le Guennec et al. 2016; Iwana & Uchida 2021) |
| --- | --- |
| `Jitter(stddev)` | adds Gaussian noise to every value |
| `Scaling(stddev)` | multiplies each channel by one factor ~ N(1, stddev^2) |
| `MagnitudeWarp(stddev, knots)` | multiplies by a smooth random curve through `knots` points ~ N(1, stddev^2) |
| `TimeWarp(stddev, knots)` | resamples along a smooth random time axis (local speeds ~ N(1, stddev^2)) |
| `WindowCrop(scale)` | a random window of `scale` of the steps, stretched back to T (window slicing) |
| `SegmentPermutation(max_segments)` | cuts at random points into 2..max segments and shuffles them |
| `ChannelMask(rate)` | sets each channel to 0 with probability `rate` (one channel always kept) |

Padding: variable-length series are zero-padded at the end (`keras_ssl.data.series`); the layers
treat the padding as part of the series (warps and crops may stretch a little of it in).

>>> import numpy as np
>>> from keras_ssl import augment
>>> aug = augment.series(seed=0)
>>> aug(np.zeros((4, 50, 3), "float32"), training=True).shape
TensorShape([4, 50, 3])
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.augment.pipeline import Augmenter
from keras_ssl.errors import KerasSSLError
from keras_ssl.images import as_tensor as _as_tensor
from keras_ssl.images import dtype_name as _dtype_name
from keras_ssl.replicas import replica_rows
from keras_ssl.validate import check_probability

__all__ = [
    "ChannelMask",
    "Jitter",
    "MagnitudeWarp",
    "Scaling",
    "SegmentPermutation",
    "SeriesAugmentation",
    "TimeWarp",
    "WindowCrop",
    "resample_steps",
    "series",
    "validate_series",
]


def validate_series(x) -> None:
    """Check, on the static shape and dtype, that `x` is a batch of series `[N, T, F]`."""
    shape = tf.TensorShape(x.shape)
    if shape.rank == 2:
        raise KerasSSLError(
            f"got shape {tuple(shape)}, but series augmentation takes a batch [N, T, F]. For a "
            "batch of one-channel series add a channel axis: x[..., None]."
        )
    if shape.rank != 3:
        raise KerasSSLError(
            f"series must be [N, T, F] (T steps of F channels), got shape "
            f"{tuple(shape) if shape.rank is not None else shape}."
        )
    if shape[1] is not None and shape[1] < 2:
        raise KerasSSLError(f"series need at least 2 steps to augment, got {shape[1]}.")
    dtype = tf.as_dtype(x.dtype)
    if not (dtype.is_floating or dtype.is_integer):
        raise KerasSSLError(f"series have dtype {_dtype_name(dtype)}; they must be numbers.")


def resample_steps(x, positions):
    """Linear interpolation of `x` `[N, T, F]` at float `positions` `[N, T']` in [0, T - 1].

    >>> import numpy as np
    >>> x = np.arange(4, dtype="float32").reshape(1, 4, 1)
    >>> resample_steps(x, np.array([[0.0, 1.5, 3.0]], "float32"))[0, :, 0].numpy().tolist()
    [0.0, 1.5, 3.0]
    """
    x = tf.convert_to_tensor(x)
    steps = tf.shape(x)[1]
    positions = tf.clip_by_value(positions, 0.0, tf.cast(steps - 1, tf.float32))
    low = tf.floor(positions)
    weight = (positions - low)[..., None]
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, steps - 1)
    return (tf.gather(x, low, batch_dims=1) * (1.0 - weight)
            + tf.gather(x, high, batch_dims=1) * weight)


def _smooth_curve(knot_values, steps: int):
    """Knot values `[N, K, C]` (evenly spread over the steps) -> a curve `[N, steps, C]`."""
    knots = knot_values.shape[1]
    positions = tf.linspace(0.0, float(knots - 1), steps)
    positions = tf.broadcast_to(positions[None], [tf.shape(knot_values)[0], steps])
    return resample_steps(knot_values, positions)


class SeriesAugmentation(keras.layers.Layer):
    """Base class: input checks, float32 output, per-series probability `p` and the seed.

    A subclass implements `transform(x, draw)`: `x` float32 `[N, T, F]`, `draw(shape, kind)` gives
    this batch's per-series random numbers `[N, *shape]` ("uniform" in [0, 1) or "normal").
    """

    def __init__(self, p: float = 1.0, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.p = check_probability(p)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _draw(self, x, shape, kind="uniform"):
        batch = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        sample = keras.random.uniform if kind == "uniform" else keras.random.normal
        return replica_rows(
            lambda n: sample([n, *shape], dtype="float32", seed=self.seed_generator), batch
        )

    def call(self, x, training=True):
        x = _as_tensor(x)
        validate_series(x)
        x = tf.cast(x, tf.float32)
        if not training or self.p == 0.0:
            return x
        out = self.transform(x, lambda shape, kind="uniform": self._draw(x, shape, kind))
        if self.p < 1.0:
            apply = self._draw(x, [1, 1]) < self.p
            out = tf.where(apply, out, x)
        return out

    def transform(self, x, draw):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, x, training=None):
        validate_series(x)
        return keras.KerasTensor(tuple(x.shape), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "p": self.p, "seed": self.seed}


def _non_negative(name, value):
    if isinstance(value, bool) or not float(value) >= 0.0:
        raise KerasSSLError(f"{name} must be a number >= 0, got {value!r}.")
    return float(value)


def _knots(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KerasSSLError(f"knots must be a positive integer (e.g. 4), got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="keras_ssl")
class Jitter(SeriesAugmentation):
    """Add Gaussian noise N(0, stddev^2) to every value (in the series' own units).

    >>> import numpy as np
    >>> Jitter(0.1, seed=1)(np.zeros((2, 10, 1), "float32")).shape
    TensorShape([2, 10, 1])
    """

    def __init__(self, stddev: float = 0.03, p: float = 1.0, seed=None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.stddev = _non_negative("Jitter stddev", stddev)

    def transform(self, x, draw):
        if self.stddev == 0.0:
            return x
        return x + self.stddev * draw(x.shape[1:], "normal")

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="keras_ssl")
class Scaling(SeriesAugmentation):
    """Multiply each channel of each series by one factor ~ N(1, stddev^2)."""

    def __init__(self, stddev: float = 0.1, p: float = 1.0, seed=None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.stddev = _non_negative("Scaling stddev", stddev)

    def transform(self, x, draw):
        return x * (1.0 + self.stddev * draw([1, x.shape[2]], "normal"))

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="keras_ssl")
class MagnitudeWarp(SeriesAugmentation):
    """Multiply each channel by a smooth random curve through `knots + 2` evenly spread values
    ~ N(1, stddev^2), interpolated between them (Um et al. 2017)."""

    def __init__(self, stddev: float = 0.2, knots: int = 4, p: float = 1.0, seed=None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.stddev = _non_negative("MagnitudeWarp stddev", stddev)
        self.knots = _knots(knots)

    def transform(self, x, draw):
        values = 1.0 + self.stddev * draw([self.knots + 2, x.shape[2]], "normal")
        return x * _smooth_curve(values, x.shape[1])

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "knots": self.knots}


@keras.saving.register_keras_serializable(package="keras_ssl")
class TimeWarp(SeriesAugmentation):
    """Resample each series along a smooth random time axis: the local speed follows a curve
    through `knots + 2` values ~ N(1, stddev^2) (kept >= 0.1), integrated and rescaled so that the
    warped series starts at step 0 and ends at step T - 1 (Um et al. 2017)."""

    def __init__(self, stddev: float = 0.2, knots: int = 4, p: float = 1.0, seed=None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.stddev = _non_negative("TimeWarp stddev", stddev)
        self.knots = _knots(knots)

    def transform(self, x, draw):
        steps = x.shape[1]
        speeds = tf.maximum(1.0 + self.stddev * draw([self.knots + 2, 1], "normal"), 0.1)
        speed = _smooth_curve(speeds, steps)[..., 0]  # [N, T]
        time = tf.cumsum(speed, axis=1) - speed[:, :1]
        time = time / tf.maximum(time[:, -1:], 1e-6) * float(steps - 1)
        return resample_steps(x, time)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "knots": self.knots}


@keras.saving.register_keras_serializable(package="keras_ssl")
class WindowCrop(SeriesAugmentation):
    """A random window of a fraction ~ U(scale) of the steps, at a random place, stretched back
    to T steps by linear interpolation (window slicing, Le Guennec et al. 2016)."""

    def __init__(self, scale=(0.5, 1.0), p: float = 1.0, seed=None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        try:
            low, high = (float(s) for s in scale)
        except (TypeError, ValueError):
            low, high = -1.0, -1.0
        if not 0.0 < low <= high <= 1.0:
            raise KerasSSLError(
                f"WindowCrop scale must be (low, high) with 0 < low <= high <= 1 (the share of "
                f"the steps kept), got {scale!r}."
            )
        self.scale = (low, high)

    def transform(self, x, draw):
        steps = x.shape[1]
        u = draw([2])
        size = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, :1]  # [N, 1]
        start = (1.0 - size) * u[:, 1:]
        fraction = tf.linspace(0.0, 1.0, steps)[None]
        return resample_steps(x, (start + fraction * size) * float(steps - 1))

    def get_config(self):
        return {**super().get_config(), "scale": list(self.scale)}


@keras.saving.register_keras_serializable(package="keras_ssl")
class SegmentPermutation(SeriesAugmentation):
    """Cut each series at random steps into 2 to `max_segments` segments (the count drawn per
    series) and put the segments in a random order (Um et al. 2017)."""

    def __init__(self, max_segments: int = 5, p: float = 1.0, seed=None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 2:
            raise KerasSSLError(
                f"SegmentPermutation max_segments must be an integer >= 2, got {max_segments!r}."
            )
        self.max_segments = max_segments

    def transform(self, x, draw):
        steps, most = x.shape[1], self.max_segments
        u = draw([2 * most])
        count = 2 + tf.cast(tf.floor(u[:, :1] * (most - 1)), tf.int32)  # [N, 1] in 2..most
        # Cut points in 1..T-1; cuts beyond the series' segment count move past the end.
        cuts = 1 + tf.cast(tf.floor(u[:, 1:most] * (steps - 1)), tf.int32)  # [N, most - 1]
        active = tf.range(most - 1)[None] < count - 1
        cuts = tf.where(active, cuts, steps)
        t = tf.range(steps)[None, :, None]
        segment = tf.reduce_sum(tf.cast(cuts[:, None, :] <= t, tf.int32), axis=2)  # [N, T]
        rank = tf.argsort(tf.argsort(u[:, most:], axis=1), axis=1)  # a random order of segments
        key = tf.gather(rank, segment, batch_dims=1) * steps + tf.range(steps)[None]
        source = tf.argsort(key, axis=1, stable=True)
        return tf.gather(x, source, batch_dims=1)

    def get_config(self):
        return {**super().get_config(), "max_segments": self.max_segments}


@keras.saving.register_keras_serializable(package="keras_ssl")
class ChannelMask(SeriesAugmentation):
    """Set each channel of each series to 0 with probability `rate`; the channel with the
    largest draw is always kept, so no series goes blank. One-channel series pass unchanged."""

    def __init__(self, rate: float = 0.2, p: float = 1.0, seed=None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.rate = check_probability(rate, "ChannelMask rate")

    def transform(self, x, draw):
        if x.shape[2] == 1 or self.rate == 0.0:
            return x
        u = draw([1, x.shape[2]])
        keep = (u >= self.rate) | (u >= tf.reduce_max(u, axis=2, keepdims=True))
        return tf.where(keep, x, 0.0)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def series(crop_scale=(0.8, 1.0), time_warp: float = 0.1, magnitude_warp: float = 0.1,
           scaling: float = 0.1, jitter: float = 0.03, permute_segments: int = 0,
           channel_mask: float = 0.0, seed: int | None = None) -> Augmenter:
    """Views of time series for contrastive learning: one `Augmenter` of the layers above.

    In order: `WindowCrop(crop_scale)`, `TimeWarp(time_warp)`, `MagnitudeWarp(magnitude_warp)`,
    `Scaling(scaling)`, `Jitter(jitter)`, `SegmentPermutation(permute_segments)` (the strong view
    of TS-TCC, Eldele et al. 2021) and `ChannelMask(channel_mask)`; a layer whose setting is 0 or
    None is left out. Noise levels are in the series' units: meant for standardised series (the
    UCR archive's are).

    >>> import numpy as np
    >>> views = series(seed=1)(np.random.default_rng(0).normal(size=(8, 64, 2)), training=True)
    >>> views.shape, views.dtype.name
    (TensorShape([8, 64, 2]), 'float32')
    """
    count = iter(range(100))

    def next_seed():
        # One seed per layer, so that the layers of a seeded recipe do not draw the same numbers.
        return None if seed is None else seed + next(count)

    layers = []
    if crop_scale is not None and tuple(crop_scale) != (1.0, 1.0):
        layers.append(WindowCrop(crop_scale, seed=next_seed()))
    if time_warp:
        layers.append(TimeWarp(time_warp, seed=next_seed()))
    if magnitude_warp:
        layers.append(MagnitudeWarp(magnitude_warp, seed=next_seed()))
    if scaling:
        layers.append(Scaling(scaling, seed=next_seed()))
    if jitter:
        layers.append(Jitter(jitter, seed=next_seed()))
    if permute_segments:
        layers.append(SegmentPermutation(int(permute_segments), seed=next_seed()))
    if channel_mask:
        layers.append(ChannelMask(channel_mask, seed=next_seed()))
    if not layers:
        raise KerasSSLError("augment.series(...) with every setting 0 makes no views; keep one.")
    return Augmenter(layers, name="series_augmenter")
