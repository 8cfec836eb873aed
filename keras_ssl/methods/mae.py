"""MAE (He et al., CVPR 2022) on a ViT: the encoder sees only the visible patches.

Differences from the reference (facebookresearch/mae): the decoder is light for CPU runs (1 block
of width 64, not 8 blocks of 512) and its position embedding is learned, not fixed sin-cos (so is
the encoder's, as keras_hub's ViT); the exported encoder mean-pools the patch tokens.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from keras_ssl import losses
from keras_ssl.augment.multicrop import mae as mae_views
from keras_ssl.encoders.vit import PatchEmbedding, ViTTransformer
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_fraction, check_int


def patchify(images, patch_size: int):
    """`[N, H, W, C]` -> `[N, (H/p)(W/p), p*p*C]`, patches in row-major order (as the ViT's)."""
    n, height, width, channels = images.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    x = tf.reshape(images, [-1, grid_h, patch_size, grid_w, patch_size, channels])
    x = tf.transpose(x, [0, 1, 3, 2, 4, 5])
    return tf.reshape(x, [-1, grid_h * grid_w, patch_size * patch_size * channels])


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


@register_method("mae")
@keras.saving.register_keras_serializable(package="keras_ssl")
class MAE(SelfSupervisedModel):
    """Masked autoencoder on a ViT encoder (`keras_ssl.encoders.vit`).

    Per image, a random `mask_ratio` of the patches is dropped (argsort of uniform noise, so
    every image keeps the same number of patches: static shapes); the ViT's `patch_embedding`
    embeds all patches and its `transformer` runs on the visible ones only. A light decoder maps
    them to its width, puts a shared learned mask token at every dropped position (unshuffled
    back into patch order), adds its own position embedding, runs `decoder_depth` transformer
    blocks and predicts each patch's pixels. The loss (`losses.masked_reconstruction`) is the
    mean squared error on the masked patches only, against each patch's pixels normalised by
    their own mean and standard deviation (`norm_pix_loss`, MAE's default).

    The exported encoder is the ViT itself over all patches, pooled.

    Args:
        encoder: a ViT from `keras_ssl.encoders.ViT` (or `encoders.build("vit_tiny", ...)`).
        augmenter: view maker; default `augment.multicrop.mae(image_size)` (crop + flip).
        mask_ratio: fraction of patches dropped (0.75).
        decoder_dim, decoder_depth, decoder_heads: the decoder's width, blocks and heads.
        norm_pix_loss: normalise each target patch.
        seed: seed for the views and the masks.
    """

    min_batch_size = 1
    # The encoder to build when none is given (a ViT: MAE drops patches from its input).
    default_encoder = "vit_tiny"
    short_run_steps = 800
    short_run_evidence = ("in 1-minute runs on the digits (249 steps) its ViT ended 24 points of "
                          "kNN below its random init (29 points above it at 808 steps)")
    colour_short_run = (500, "in a 1-minute CIFAR-10 run (262 steps) its ViT ended 0.4 points of "
                             "kNN above its random init; 717 steps gained 5.1")

    def __init__(self, encoder, augmenter=None, *, mask_ratio=0.75, decoder_dim=64,
                 decoder_depth=1, decoder_heads=2, norm_pix_loss=True, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        if not (isinstance(self.patch_embedding, PatchEmbedding)
                and isinstance(self.transformer, ViTTransformer)):
            raise KerasSSLError(
                "MAE needs a ViT encoder with 'patch_embedding' and 'transformer' layers: build "
                "it with keras_ssl.encoders.ViT(...) or encoders.build('vit_tiny', input_shape)."
            )
        self.mask_ratio = check_fraction(mask_ratio, "mask_ratio", "MAE drops 0.75")
        self.decoder_dim = check_int(decoder_dim, "decoder_dim", least=1)
        self.decoder_depth = check_int(decoder_depth, "decoder_depth", least=1)
        self.decoder_heads = check_int(decoder_heads, "decoder_heads", least=1)
        self.norm_pix_loss = bool(norm_pix_loss)
        if self.augmenter is None:
            self.augmenter = mae_views(self.image_size, seed=seed)
        self.patch_size = self.patch_embedding.patch_size
        self.num_patches = self.patch_embedding.num_patches
        self.num_visible = self.num_patches - int(math.floor(mask_ratio * self.num_patches + 0.5))
        if not 1 <= self.num_visible < self.num_patches:
            raise KerasSSLError(
                f"mask_ratio={mask_ratio} of {self.num_patches} patches leaves {self.num_visible} "
                "visible; it must leave at least one and mask at least one."
            )
        channels = encoder.input_shape[-1]
        width = self.patch_embedding.hidden_dim
        self.decoder_embed = layers.Dense(decoder_dim, name="decoder_embed")
        self.decoder_embed.build((None, None, width))
        self.decoder = ViTTransformer(decoder_depth, decoder_heads, 4 * decoder_dim,
                                      cls_token=False, name="decoder")
        self.decoder.build((None, None, decoder_dim))
        self.decoder_pred = layers.Dense(self.patch_size**2 * channels, name="decoder_pred")
        self.decoder_pred.build((None, None, decoder_dim))
        self.mask_token = self.add_weight(
            shape=(1, 1, decoder_dim), initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="mask_token")
        self.decoder_position = self.add_weight(
            shape=(1, 1 + self.num_patches, decoder_dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="decoder_position_embedding")

    # The encoder's own layers (properties, not attributes: Keras would track their weights twice).
    @property
    def patch_embedding(self):
        return _layer(self.encoder, "patch_embedding")

    @property
    def transformer(self):
        return _layer(self.encoder, "transformer")

    # ----- the pieces ---------------------------------------------------------------------------
    def random_masking(self, batch_size):
        """Per image: (keep_ids [N, visible], restore_ids [N, P], mask [N, P] 1 = dropped)."""
        noise = keras.random.uniform([batch_size, self.num_patches], seed=self.seed_generator)
        shuffle = tf.argsort(noise, axis=1)
        restore = tf.argsort(shuffle, axis=1)
        keep = shuffle[:, : self.num_visible]
        mask = tf.cast(restore >= self.num_visible, tf.float32)
        return keep, restore, mask

    def encode_visible(self, images, keep_ids, training=False):
        """The encoder's tokens `[N, 1 + visible, D]` from the visible patches only."""
        tokens = self.patch_embedding(images)
        visible = tf.gather(tokens, keep_ids, batch_dims=1)
        return self.transformer(visible, training=training)

    def decode(self, latent, restore_ids, training=False):
        """Pixel predictions `[N, P, p*p*C]` of every patch, in patch order."""
        x = self.decoder_embed(latent)
        batch = tf.shape(x)[0]
        masked = self.num_patches - self.num_visible
        mask_tokens = tf.tile(tf.cast(self.mask_token, x.dtype), [batch, masked, 1])
        patches = tf.concat([x[:, 1:], mask_tokens], axis=1)
        patches = tf.gather(patches, restore_ids, batch_dims=1)
        x = tf.concat([x[:, :1], patches], axis=1) + tf.cast(self.decoder_position, x.dtype)
        x = self.decoder(x, training=training)
        return self.decoder_pred(x[:, 1:])

    def targets(self, images):
        target = patchify(tf.cast(images, tf.float32), self.patch_size)
        if self.norm_pix_loss:
            mean, variance = tf.nn.moments(target, axes=[-1], keepdims=True)
            target = (target - mean) / tf.sqrt(variance + 1e-6)
        return target

    def compute_ssl_loss(self, inputs, labels, training):
        images = self.augmenter(inputs, training=True)
        batch = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        keep, restore, mask = self.random_masking(batch)
        prediction = self.decode(self.encode_visible(images, keep, training), restore, training)
        return losses.masked_reconstruction(self.targets(images), prediction, mask[..., None])

    def get_config(self):
        return {
            **super().get_config(),
            "mask_ratio": self.mask_ratio,
            "decoder_dim": self.decoder_dim,
            "decoder_depth": self.decoder_depth,
            "decoder_heads": self.decoder_heads,
            "norm_pix_loss": self.norm_pix_loss,
        }
