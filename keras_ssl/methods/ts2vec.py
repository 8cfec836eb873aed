"""TS2Vec (Yue et al., AAAI 2022): per-step features that agree across overlapping crops.

Each series gives two crops that share a span of time stamps; every step is hidden at random in
each crop (timestamp masking, after the input projection); the encoder's per-step features of the
shared span are contrasted instance-wise and over time, at every time scale
(`losses.hierarchical_contrastive`). The exported encoder max-pools the per-step features of the
whole series, as TS2Vec's `encoding_window="full_series"` does.

Where this differs from the reference code (github.com/yuezhihan/ts2vec): shapes are fixed, so
XLA compiles the step. TS2Vec slices each crop out of the series; here each crop is moved to step
0 of a series as long as the original, and the steps after its end are zero after the input
projection (TS2Vec's own value for a hidden step), so the convolutions see zeros beyond a crop's
end at the first layer, and the features of those zeros deeper in. Those steps take no part in the
loss. The crop lengths are drawn once per batch and the crops' positions per series, as in TS2Vec.
Zero-padded series are cropped across their padding, as in TS2Vec's code; `within_length=True`
crops each within its own length (`methods.series.series_lengths`), its shared steps alone in the
loss.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_ssl import losses
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.registry import register_method
from keras_ssl.methods.series import _SeriesMethod, series_lengths
from keras_ssl.pretext._common import batch_size, seed_tensor, split_seed, uniform_int
from keras_ssl.replicas import replica_rows
from keras_ssl.validate import check_fraction, check_int

__all__ = ["Crops", "TS2Vec", "contextual_crops"]

_DRAW_RANGE = 2**30


class Crops(NamedTuple):
    """Two overlapping crops of a batch of series, each moved to step 0 (zeros after its end).

    `keep1`, `keep2`: float `[N, T]`, 1.0 within each crop. The shared span of series i starts
    at step `start[i]` of `view1` and step 0 of `view2` and is `overlap[i]` steps long (int32
    `[N]`: the same for every series of one length).
    """

    view1: tf.Tensor
    view2: tf.Tensor
    keep1: tf.Tensor
    keep2: tf.Tensor
    start: tf.Tensor
    overlap: tf.Tensor


def _shifted(x, first, length):
    """Steps first_i .. first_i + length_i - 1 of each series i at steps 0 .. length_i - 1;
    zeros after."""
    steps = x.shape[1]
    t = tf.range(steps)[None]
    index = tf.minimum(first[:, None] + t, steps - 1)
    keep = tf.cast(t < length[:, None], x.dtype)
    return tf.gather(x, index, batch_dims=1) * keep[..., None], keep


def contextual_crops(x, seed=None, min_overlap: int = 2, lengths=None) -> Crops:
    """TS2Vec's random cropping: per batch an overlap length l >= `min_overlap` and where the
    crops extend beyond it; per series where the pair lies in the series.

    Crop 1 covers steps [o + a1, o + b) and crop 2 [o + a, o + b2), with a1 <= a, b = a + l <= b2:
    they share [o + a, o + b). Series of `lengths[i]` valid steps (zero padding after them; default
    all T) are cropped within them: the batch's random draws are taken modulo each series' own
    ranges, so series of one length share l, a, a1 and b2, and full-length series are cropped as
    without `lengths`. Under `tf.distribute` every replica draws the same batch-wide numbers and
    keeps its rows of the global batch's positions.

    >>> import numpy as np
    >>> x = np.arange(20, dtype="float32").reshape(2, 10, 1)
    >>> crops = contextual_crops(x, seed=1)
    >>> s, l = int(crops.start[0]), int(crops.overlap[0])
    >>> bool(np.array_equal(crops.view1[:, s:s + l], crops.view2[:, :l]))
    True
    """
    x = tf.convert_to_tensor(x)
    steps = int(x.shape[1])
    if not 1 <= min_overlap <= steps:
        raise KerasSSLError(f"min_overlap must lie in 1..{steps} (the steps), got {min_overlap}.")
    n = batch_size(x)
    length = (tf.fill([n], steps) if lengths is None
              else tf.reshape(tf.cast(lengths, tf.int32), [-1]))
    s_length, s_left, s_front, s_back, s_offset = split_seed(seed_tensor(seed), 5)
    draw = lambda s: uniform_int([], s, 0, _DRAW_RANGE)  # noqa: E731 - one number per batch
    least = tf.minimum(min_overlap, length)              # a shorter series: all of it
    overlap = draw(s_length) % (length - least + 1) + least
    left = draw(s_left) % (length - overlap + 1)
    right = left + overlap
    front = draw(s_front) % (left + 1)                   # crop 1 starts here (a1 <= a)
    back = right + draw(s_back) % (length - right + 1)   # crop 2 ends here (b2 >= b)
    offset = replica_rows(lambda m: uniform_int([m], s_offset, 0, _DRAW_RANGE), n)
    offset = offset % (length - back + front + 1) - front
    view1, keep1 = _shifted(x, offset + front, right - front)
    view2, keep2 = _shifted(x, offset + left, back - left)
    return Crops(view1, view2, keep1, keep2, left - front, overlap)


@register_method("ts2vec")
@keras.saving.register_keras_serializable(package="keras_ssl")
class TS2Vec(_SeriesMethod):
    """TS2Vec: contextual consistency of per-step features, contrasted at every time scale.

    Args:
        encoder: an `encoders.DilatedConv1D` (or any model with its named parts:
            `input_projection`, a per-step `steps` model, and pooling to `[N, D]`).
        alpha: weight of the instance-wise term (TS2Vec: 0.5; the temporal term gets 1 - alpha).
        mask_rate: share of the steps hidden in each crop (TS2Vec's binomial masking: 0.5).
        min_overlap: fewest steps two crops share.
        within_length: crop each zero-padded series within its own length, its shared span
            alone in the loss (True), or across its padding, as TS2Vec's code does (False: where
            the padding starts tells a series' length, which helped kNN on JapaneseVowels).
        augmenter: optional augmentation of the series before cropping (default none: the crops
            and the masks are TS2Vec's augmentation).

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = TS2Vec(keras_ssl.encoders.DilatedConv1D((24, 2), width=8, depth=2))
    >>> model.compile(optimizer="adam")
    >>> sorted(model.fit(np.random.rand(8, 24, 2), batch_size=4, verbose=0).history)
    ['loss']
    """

    default_encoder = "dilated_conv1d"
    few_series_evidence = ("in one run on ArrowHead's 36 and GunPoint's 50 series its encoder "
                           "ended 15 and 4 points of kNN under its random-init one, 2 above on "
                           "ItalyPowerDemand's 67; on JapaneseVowels' 270, its kNN gained 1.7")
    min_batch_size = 2

    def __init__(self, encoder, augmenter=None, *, alpha: float = 0.5, mask_rate: float = 0.5,
                 min_overlap: int = 2, within_length: bool = False, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        names = {layer.name for layer in encoder.layers}
        if not {"input_projection", "steps"} <= names:
            raise KerasSSLError(
                "TS2Vec contrasts per-step features: its encoder needs an `input_projection` "
                "layer and a per-step `steps` model, as encoders.DilatedConv1D builds "
                f"(--encoder dilated_conv1d); {encoder.name!r} has neither."
            )
        self.projection = encoder.get_layer("input_projection")
        self.per_step = encoder.get_layer("steps")
        self.alpha = float(alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise KerasSSLError(f"alpha must lie in [0, 1], got {alpha!r}.")
        self.mask_rate = check_fraction(mask_rate, "mask_rate")
        self.min_overlap = check_int(min_overlap, "min_overlap", least=1, most=self.steps)
        self.within_length = bool(within_length)

    def step_features(self, view, keep, seed, training):
        """Per-step features `[N, T, D]` of a crop, its steps outside `keep` or drawn for masking
        set to zero after the input projection."""
        n = batch_size(view)
        draw = lambda m: uniform_int([m, self.steps], seed, 0, _DRAW_RANGE)  # noqa: E731
        shown = tf.cast(replica_rows(draw, n) >= int(self.mask_rate * _DRAW_RANGE), tf.float32)
        hidden = self.projection(view)  # the policy's compute dtype (bfloat16 under mixed)
        hidden = hidden * tf.cast((keep * shown)[..., None], hidden.dtype)
        return self.per_step(hidden, training=training)

    def compute_ssl_loss(self, inputs, labels, training):
        x = self.views(inputs)
        crops = contextual_crops(x, self.seed_generator.next_shared(), self.min_overlap,
                                 lengths=series_lengths(x) if self.within_length else None)
        mask1, mask2 = split_seed(self.seed_generator.next_shared(), 2)
        z1 = self.step_features(crops.view1, crops.keep1, mask1, training)
        z2 = self.step_features(crops.view2, crops.keep2, mask2, training)
        # The shared span to step 0 of both.
        index = tf.minimum(crops.start[:, None] + tf.range(self.steps)[None], self.steps - 1)
        z1 = tf.gather(z1, index, batch_dims=1)
        return losses.hierarchical_contrastive(z1, z2, crops.overlap, alpha=self.alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "mask_rate": self.mask_rate,
                "min_overlap": self.min_overlap, "within_length": self.within_length}
