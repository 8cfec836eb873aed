"""BYOL (Grill et al., NeurIPS 2020): an online network predicts an EMA target's projection.

Differences from the reference (deepmind-research/byol): the default views are SimCLR's
(`augment.simclr`) for both branches; BYOL's asymmetric blur/solarize pair is `augment.byol`
(pass it as `augmenter`). The projector and predictor are narrower (512 hidden, 128 out, not
4096/256) to suit small encoders and CPU runs. The projector ends in a batch norm without scale
or shift (`output_bn=True`; `False` gives the paper's head): the paper's target projections at
random init share a direction, so a constant prediction already scores well and short runs
collapsed onto it (docs/results.md, "BYOL's projector ends in batch norm").
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl import augment, heads, losses
from keras_ssl.methods._momentum import (
    MomentumTargetMixin,
    check_momentum,
    check_total_steps,
    momentum_copy,
)
from keras_ssl.methods.base import TWO_VIEWS_ON_FEW_SERIES, SelfSupervisedModel
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_int


def two_views(model, inputs):
    """Two random views of every input from `model.augmenter`, stacked: `[2N, ...]`.

    An augmenter that makes pairs itself (`augment.ViewPair`, e.g. `augment.byol`) is called
    once; any other is called twice.
    """
    # Views are random in evaluation too: the validation loss measures the same task.
    if getattr(model.augmenter, "makes_pairs", False):
        return model.augmenter(inputs, training=True)
    return tf.concat([model.augmenter(inputs, training=True),
                      model.augmenter(inputs, training=True)], axis=0)


@register_method("byol")
@keras.saving.register_keras_serializable(package="keras_ssl")
class BYOL(MomentumTargetMixin, SelfSupervisedModel):
    """BYOL: the online encoder + projector + predictor regresses the target's projection.

    Both views go through the online network (encoder, projection MLP, prediction MLP) and the
    target network (EMA copies of the encoder and projector, `momentum_copy`); the loss is the
    symmetric `losses.byol` (2 - 2 cos per direction). After every optimizer step the target moves
    towards the online weights with momentum tau, which follows BYOL's cosine schedule from
    `momentum` to 1 over training (see `keras_ssl.methods._momentum`: the number of steps comes
    from a `training.WarmupCosine` learning-rate schedule, else from `total_steps`).

    Args:
        encoder: image, series or vector encoder to pretrain; functional or Sequential (it is
            cloned).
        augmenter: view maker; default `augment.simclr(image_size)` (`augment.series()` for series,
            `augment.vectors()` for feature vectors);
            `augment.byol(image_size)` gives the paper's asymmetric pair.
        projection_dim: output size of the projector and predictor (256 in the paper).
        hidden_dim: hidden size of the projector and predictor MLPs (4096 in the paper).
        momentum: base tau of the target's moving average (0.996 in the paper; 0.99 suits short
            runs).
        total_steps: training steps of the momentum schedule when the optimizer's learning rate
            is not a `WarmupCosine` (None: tau stays at `momentum`).
        output_bn: end the projector (and its target copy) in a batch norm without scale or
            shift, centring the targets on the batch (False: the paper's projector).
        seed: seed for the views.

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = keras_ssl.BYOL(keras_ssl.encoders.ConvNet((16, 16, 1), width=4), projection_dim=8)
    >>> model.compile(optimizer="adam")
    >>> images = np.random.randint(0, 256, (16, 16, 16, 1), dtype="uint8")
    >>> sorted(model.fit(images, batch_size=8, epochs=1, verbose=0).history)
    ['loss']
    """

    input_kinds = ("images", "vectors", "series")
    few_series, few_series_evidence, few_series_advice = TWO_VIEWS_ON_FEW_SERIES
    short_run_steps = 1000
    min_batch_size = 2

    def __init__(self, encoder, augmenter=None, *, projection_dim=128, hidden_dim=512,
                 momentum=0.99, total_steps=None, output_bn=True, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        self.projection_dim = check_int(projection_dim, "projection_dim", least=1)
        self.hidden_dim = check_int(hidden_dim, "hidden_dim", least=1)
        self.momentum = check_momentum(momentum)
        self.total_steps = check_total_steps(total_steps)
        self.output_bn = bool(output_bn)
        if self.augmenter is None:
            self.augmenter = self.default_views(augment.simclr, seed)
        self.projector = heads.projection_head(self.feature_dim, projection_dim, hidden_dim,
                                               output_bn=self.output_bn)
        self.predictor = heads.projection_head(projection_dim, projection_dim, hidden_dim,
                                               name="prediction_head")
        self.target_encoder = momentum_copy(self.encoder, f"target_{self.encoder.name}")
        self.target_projector = momentum_copy(self.projector, "target_projection_head")

    def _target_pairs(self):
        return ((self.target_encoder, self.encoder), (self.target_projector, self.projector))

    def compute_ssl_loss(self, inputs, labels, training):
        views = two_views(self, inputs)
        online = self.predictor(
            self.projector(self.encoder(views, training=training), training=training),
            training=training,
        )
        target = tf.stop_gradient(self.target_projector(
            self.target_encoder(views, training=training), training=training))
        p1, p2 = tf.split(online, 2, axis=0)
        z1, z2 = tf.split(target, 2, axis=0)
        return losses.byol(p1, p2, z1, z2)

    def get_config(self):
        return {
            **super().get_config(),
            "projection_dim": self.projection_dim,
            "hidden_dim": self.hidden_dim,
            "momentum": self.momentum,
            "total_steps": self.total_steps,
            "output_bn": self.output_bn,
        }

    @classmethod
    def from_config(cls, config):
        # Configs saved before `output_bn` existed describe the paper's projector.
        return super().from_config({"output_bn": False, **config})
