"""Autoencoders: plain, denoising (Vincent et al. 2008) and masked (as MAE, He et al. 2022)."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl import heads, losses, pretext
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_fraction, check_number

CORRUPTIONS = (None, "noise", "mask")
# Masked pixels are filled with mid-grey: every keras_ssl image encoder centres its [0, 1] input
# to [-1, 1], so 0.5 reaches the first convolution as exactly 0, no signal. Black (0) would look
# like the background of digits or Fashion-MNIST, so the encoder could not tell hidden from empty.
IMAGE_MASK_FILL = 0.5
# Masked features of vectors are set to 0, the mean of standardised features.
VECTOR_MASK_FILL = 0.0


def default_patch_size(height: int, width: int) -> int:
    """A patch side dividing both sides, nearest to 1/8 of the shorter side (4 px for 28-32 px)."""
    import math

    common = math.gcd(height, width)
    divisors = [d for d in range(1, common + 1) if common % d == 0]
    return min(divisors, key=lambda d: (abs(d - min(height, width) / 8), d))


@register_method("autoencoder")
@register_method("denoising", corruption="noise")
@register_method("masked", corruption="mask")
@keras.saving.register_keras_serializable(package="keras_ssl")
class AutoEncoder(SelfSupervisedModel):
    """An autoencoder: the encoder's feature vector must carry enough to rebuild the input.

    - `corruption=None`: reconstruct the input from itself (mean squared error on every pixel).
    - `corruption="noise"`: a denoising autoencoder; the encoder sees the input plus Gaussian
      noise (images clipped back to [0, 1]), the loss compares the reconstruction with the clean
      input on every pixel.
    - `corruption="mask"`: masked-image modelling; a random `mask_ratio` of square patches
      (different in every image, `pretext.random_patch_mask`) is replaced by mid-grey, and the
      loss counts only the masked pixels (`losses.masked_reconstruction`), as MAE does: the
      visible pixels are not the task, so they get no gradient. For vectors a random
      `mask_ratio` of the features of each example is set to 0 and only those are scored.

    The decoder is dropped at export; the `reconstruction_error` metric is the mean squared error
    over all pixels (or features), whatever the corruption, so runs can be compared.

    Args:
        encoder: image or vector encoder to pretrain.
        decoder: a `keras.Model` from `[N, D]` features to the input shape; default
            `heads.decoder_head(D, input_shape)`.
        corruption: `None`, `"noise"` or `"mask"`.
        noise_stddev: standard deviation of the noise, in [0, 1] pixel units (or feature units).
        mask_ratio: fraction of patches (features) masked, in (0, 1).
        patch_size: side of the masked patches in pixels; must divide the image size. `None`:
            the divisor nearest to 1/8 of the image side (4 px for 32 px images).
        augmenter: optional augmentation giving the clean target (default: none).
        seed: seed for noise and masks.

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = keras_ssl.AutoEncoder(keras_ssl.encoders.ConvNet((32, 32, 1), width=8),
    ...                               corruption="mask")
    >>> model.compile(optimizer="adam")
    >>> images = np.random.randint(0, 256, (16, 32, 32, 1), dtype="uint8")
    >>> sorted(model.fit(images, batch_size=8, epochs=1, verbose=0).history)
    ['loss', 'reconstruction_error']
    """

    input_kinds = ("images", "vectors")
    colour_short_run = (400, "in a 1-minute CIFAR-10 run (86-91 steps) each autoencoder ended 7-10 "
                             "points of kNN under the random-init one (0.6-2.7 over at 337-379 "
                             "steps)")

    @classmethod
    def short_run(cls, options, colour=False):
        """On gray images the plain autoencoder gains from the first minute and never warns; the
        denoising one gained 1.0 point in 126 steps on Fashion-MNIST, the masked one ended below
        or level with its random init on the digits. On colour images every variant warns under
        `colour_short_run`'s steps."""
        corruption = options.get("corruption")
        name = {"mask": "The masked autoencoder", "noise": "The denoising autoencoder"}.get(
            corruption, "The autoencoder")
        if colour:
            fewest, _, evidence, alternative = super().short_run(options, colour=True)
            return fewest, name, evidence, alternative
        if corruption == "mask":
            return 400, name, (
                "in 1- and 3-minute runs on the digits (101 and 292 steps) its encoder ended below "
                "or level with the random-init one (2.7 points above at 379 steps on CIFAR-10)"
            ), cls.short_run_alternative
        if corruption == "noise":
            return 150, name, (
                "in a 1-minute Fashion-MNIST run (126 steps) its encoder gained 1.0 point of kNN "
                "over the random-init one (6.1 at 367 steps)"), "autoencoder"
        return super().short_run(options)

    def __init__(self, encoder, augmenter=None, *, decoder=None, corruption=None, noise_stddev=0.2,
                 mask_ratio=0.75, patch_size=None, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        if corruption not in CORRUPTIONS:
            raise KerasSSLError(
                f"AutoEncoder corruption must be None, 'noise' or 'mask', got {corruption!r}."
            )
        check_number(noise_stddev, "noise_stddev", above=0.0)
        check_fraction(mask_ratio, "mask_ratio", "the fraction masked")
        self.corruption = corruption
        self.noise_stddev = float(noise_stddev)
        self.mask_ratio = float(mask_ratio)
        input_shape = tuple(int(d) for d in self.encoder.input_shape[1:])
        if self.input_kind == "images" and patch_size is None:
            patch_size = default_patch_size(*input_shape[:2])
        self.patch_size = patch_size
        if corruption == "mask":
            # A mask of one blank batch: a patch size or ratio that does not fit fails now.
            self._mask_like(tf.zeros([1, *input_shape]), seed=0)
        if decoder is None:
            decoder = heads.decoder_head(self.feature_dim, input_shape)
        elif not isinstance(decoder, keras.Model):
            raise KerasSSLError(
                f"decoder must be a keras.Model from features to inputs, got "
                f"{type(decoder).__name__}."
            )
        if tuple(decoder.output_shape[1:]) != input_shape:
            raise KerasSSLError(
                f"The decoder outputs {decoder.output_shape[1:]} but the encoder takes "
                f"{input_shape}: the reconstruction must have the input's shape."
            )
        self.decoder = decoder
        self.error_tracker = keras.metrics.Mean(name="reconstruction_error")

    def method_metrics(self):
        return [self.error_tracker]

    # ----- corruption -------------------------------------------------------------------------
    def _mask_like(self, x, seed):
        """1.0 where hidden: square patches of images, single features of vectors."""
        if self.input_kind == "images":
            return pretext.random_patch_mask(x, self.patch_size, self.mask_ratio, seed=seed)
        # A vector is a 1 x F image with 1-pixel patches: the same exact-count, per-example mask.
        as_image = tf.reshape(x, [-1, 1, x.shape[-1], 1])
        return tf.reshape(pretext.random_patch_mask(as_image, 1, self.mask_ratio, seed=seed),
                          tf.shape(x))

    def corrupt(self, clean, seed):
        """`(corrupted, mask)`: what the encoder sees, and 1.0 where the loss looks (or None)."""
        if self.corruption == "noise":
            noisy = clean + self.noise_stddev * keras.random.normal(tf.shape(clean), seed=seed)
            if self.input_kind == "images":
                noisy = tf.clip_by_value(noisy, 0.0, 1.0)
            return noisy, None
        if self.corruption == "mask":
            if isinstance(seed, keras.random.SeedGenerator):
                seed = seed.next()
            mask = self._mask_like(clean, seed)
            fill = IMAGE_MASK_FILL if self.input_kind == "images" else VECTOR_MASK_FILL
            return clean * (1.0 - mask) + fill * mask, mask
        return clean, None

    # ----- the step ---------------------------------------------------------------------------
    def forward(self, inputs, training=False, seed=None):
        """Clean inputs, corrupted inputs, mask and reconstruction of a batch, as a dict.

        `seed`: a Python int for reproducible corruption; `None` draws from the model's seed
        generator (a new corruption every call).
        """
        clean = self.preprocess(inputs)
        if self.augmenter is not None:
            clean = self.augmenter(clean, training=True)
        corrupted, mask = self.corrupt(clean, self.seed_generator if seed is None else seed)
        reconstruction = self.decoder(self.encoder(corrupted, training=training),
                                      training=training)
        return {"clean": clean, "corrupted": corrupted, "mask": mask,
                "reconstruction": reconstruction}

    def reconstruction_loss(self, clean, reconstruction, mask=None):
        """Mean squared error, over the masked pixels only when `mask` is given (MAE)."""
        return losses.masked_reconstruction(clean, reconstruction, mask)

    def compute_ssl_loss(self, inputs, labels, training):
        out = self.forward(inputs, training=training)
        loss = self.reconstruction_loss(out["clean"], out["reconstruction"], out["mask"])
        self.error_tracker.update_state(
            losses.masked_reconstruction(out["clean"], out["reconstruction"])
        )
        return loss

    def reconstruct(self, inputs, seed=0) -> dict:
        """NumPy clean inputs, corrupted inputs and reconstructions, for looking at them."""
        out = self.forward(inputs, training=False, seed=seed)
        return {k: (None if v is None else keras.ops.convert_to_numpy(v)) for k, v in out.items()}

    def get_config(self):
        return {
            **super().get_config(),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "corruption": self.corruption,
            "noise_stddev": self.noise_stddev,
            "mask_ratio": self.mask_ratio,
            "patch_size": self.patch_size,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return super().from_config(config)
