"""SimSiam (Chen & He, CVPR 2021): a predictor and a stop-gradient, no negatives, no momentum.

Differences from the reference (facebookresearch/simsiam): the projector has 2 layers (the
paper's CIFAR-10 variant) and is narrower (512 hidden, 128 out, not 2048/2048); the predictor's
bottleneck is `projection_dim // 4` as in the paper. The projector's output BatchNorm is kept.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_ssl import augment, heads, losses
from keras_ssl.methods.base import TWO_VIEWS_ON_FEW_SERIES, SelfSupervisedModel
from keras_ssl.methods.byol import two_views
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_int


def projector_with_output_bn(input_dim, output_dim, hidden_dim, name):
    """SimSiam's / Barlow Twins' projector: Dense-BN-ReLU, Dense, BN (no affine at the end)."""
    inputs = keras.Input(shape=(int(input_dim),), name="features")
    x = layers.Dense(hidden_dim, use_bias=False, name="dense1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.Dense(output_dim, use_bias=False, name="dense2")(x)
    x = layers.BatchNormalization(center=False, scale=False, name="bn2")(x)
    return keras.Model(inputs, x, name=name)


@register_method("simsiam")
@keras.saving.register_keras_serializable(package="keras_ssl")
class SimSiam(SelfSupervisedModel):
    """SimSiam: each view's prediction regresses the other view's projection, stop-gradient.

    Encoder + projector (f) give z, a bottleneck predictor (h) gives p; the loss is
    `losses.simsiam(p1, p2, z1, z2)`, the symmetric negative cosine with stop-gradient on z (the
    one thing that keeps it from collapsing, section 4.1 of the paper).

    Args:
        encoder: image, series or vector encoder to pretrain.
        augmenter: view maker; default `augment.simclr(image_size)` (`augment.series()` for series,
            `augment.vectors()` for feature vectors).
        projection_dim: output size of the projector (2048 in the paper).
        hidden_dim: hidden size of the projector (2048 in the paper).
        predictor_dim: bottleneck of the predictor (None: projection_dim // 4, as the paper's
            512 for 2048).
        seed: seed for the views.
    """

    input_kinds = ("images", "vectors", "series")
    few_series, few_series_evidence, few_series_advice = TWO_VIEWS_ON_FEW_SERIES
    short_run_steps = 1000
    short_run_evidence = ("in 2.5-minute CIFAR-10 runs (178 steps) its encoder ended below the "
                          "random-init one, and on the digits at 16 px it still was after 1,800 "
                          "steps")
    min_batch_size = 2

    def __init__(self, encoder, augmenter=None, *, projection_dim=128, hidden_dim=512,
                 predictor_dim=None, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        self.projection_dim = check_int(projection_dim, "projection_dim", least=1)
        self.hidden_dim = check_int(hidden_dim, "hidden_dim", least=1)
        self.predictor_dim = (max(1, projection_dim // 4) if predictor_dim is None
                              else check_int(predictor_dim, "predictor_dim", least=1))
        if self.augmenter is None:
            self.augmenter = self.default_views(augment.simclr, seed)
        self.projector = projector_with_output_bn(self.feature_dim, projection_dim, hidden_dim,
                                                  "projection_head")
        self.predictor = heads.projection_head(projection_dim, projection_dim, self.predictor_dim,
                                               name="prediction_head")

    def compute_ssl_loss(self, inputs, labels, training):
        views = two_views(self, inputs)
        z = self.projector(self.encoder(views, training=training), training=training)
        p = self.predictor(z, training=training)
        z1, z2 = keras.ops.split(z, 2, axis=0)
        p1, p2 = keras.ops.split(p, 2, axis=0)
        return losses.simsiam(p1, p2, z1, z2)

    def get_config(self):
        return {
            **super().get_config(),
            "projection_dim": self.projection_dim,
            "hidden_dim": self.hidden_dim,
            "predictor_dim": self.predictor_dim,
        }
