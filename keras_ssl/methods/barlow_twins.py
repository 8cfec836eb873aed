"""Barlow Twins (Zbontar et al., ICML 2021): the views' cross-correlation towards the identity.

Differences from the reference (facebookresearch/barlowtwins): the projector is 3 layers of 512
(not 8192) for small encoders and CPU runs; lambda stays at the paper's 5e-3 (its ablation found
the loss insensitive to lambda around that value); the cross-correlation is computed over the
global batch by gathering every replica's projections (the reference all-reduces C).
"""

from __future__ import annotations

import keras

from keras_ssl import augment, heads, losses
from keras_ssl.methods.base import TWO_VIEWS_ON_FEW_SERIES, SelfSupervisedModel
from keras_ssl.methods.byol import two_views
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_int, check_number


@register_method("barlow_twins")
@keras.saving.register_keras_serializable(package="keras_ssl")
class BarlowTwins(SelfSupervisedModel):
    """Barlow Twins: make the cross-correlation of the two views' projections the identity.

    Encoder + 3-layer projector on both views; `losses.barlow_twins` batch-normalises each
    projection dimension over the global batch and pushes the diagonal of the cross-correlation
    to 1 (invariance) and the off-diagonal to 0, weighted by `lambda_` (redundancy reduction).

    Args:
        encoder: image, series or vector encoder to pretrain.
        augmenter: view maker; default `augment.simclr(image_size)` (`augment.series()` for series,
            `augment.vectors()` for feature vectors).
        projection_dim: output size of the projector (8192 in the paper).
        hidden_dim: hidden size of the projector (8192 in the paper).
        lambda_: off-diagonal weight (5e-3).
        seed: seed for the views.
    """

    input_kinds = ("images", "vectors", "series")
    few_series, few_series_evidence, few_series_advice = TWO_VIEWS_ON_FEW_SERIES
    min_batch_size = 2
    short_run_steps = 500
    short_run_evidence = ("in runs of 71 and 212 steps on the digits, 178 on CIFAR-10 and 300 on "
                          "Fashion-MNIST its encoder ended below or level with the random-init one")

    def __init__(self, encoder, augmenter=None, *, projection_dim=512, hidden_dim=512,
                 lambda_=5e-3, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        self.projection_dim = check_int(projection_dim, "projection_dim", least=1)
        self.hidden_dim = check_int(hidden_dim, "hidden_dim", least=1)
        self.lambda_ = check_number(lambda_, "lambda_", least=0.0)
        if self.augmenter is None:
            self.augmenter = self.default_views(augment.simclr, seed)
        self.projector = heads.projection_head(self.feature_dim, projection_dim, hidden_dim,
                                               num_layers=3)

    def compute_ssl_loss(self, inputs, labels, training):
        views = two_views(self, inputs)
        z = self.projector(self.encoder(views, training=training), training=training)
        z1, z2 = keras.ops.split(z, 2, axis=0)
        return losses.barlow_twins(z1, z2, self.lambda_)

    def get_config(self):
        return {
            **super().get_config(),
            "projection_dim": self.projection_dim,
            "hidden_dim": self.hidden_dim,
            "lambda_": self.lambda_,
        }
