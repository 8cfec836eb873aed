"""RotNet (Gidaris, Singh, Komodakis 2018): learn features by telling how far an image was turned."""

from __future__ import annotations

import warnings

import keras

from keras_ssl import augment, heads, losses, pretext
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method

# Above this share of training images that look alike turned (pretext.rotation_lookalikes),
# RotNet warns: 21% of scikit-learn's digits, 8% of Fashion-MNIST, 2% of CIFAR-10 images.
ROTATION_LOOKALIKES_WARNING = 0.15


@register_method("rotnet")
@keras.saving.register_keras_serializable(package="keras_ssl")
class RotNet(SelfSupervisedModel):
    """RotNet: a 4-way classifier on the encoder's features predicts 0, 90, 180 or 270 degrees.

    Every step uses all four rotations of every image (as in the paper, which found this better
    than one random rotation per image): a batch of N images is 4N encoder inputs with balanced
    labels. Each image is first lightly augmented, so the task cannot be solved by memorising
    the training images in each orientation. To recognise how an object is turned, the encoder
    has to find the object and its parts, which is what the features are for afterwards.

    Args:
        encoder: image encoder to pretrain; it must take square images (a quarter turn of a
            non-square image has another shape).
        augmenter: the light augmentation applied before rotating; default
            `augment.weak(image_size)`. It must not flip vertically, which looks like a rotation.
        hidden_dim: hidden units of the rotation classifier; `None` for a linear classifier.
        seed: seed for the augmentation.

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = keras_ssl.RotNet(keras_ssl.encoders.ConvNet((32, 32, 1), width=8))
    >>> model.compile(optimizer="adam")
    >>> images = np.random.randint(0, 256, (16, 32, 32, 1), dtype="uint8")
    >>> sorted(model.fit(images, batch_size=8, epochs=1, verbose=0).history)
    ['loss', 'rotation_accuracy']
    """

    input_kinds = ("images",)
    colour_short_run = (100, "in a 1-minute CIFAR-10 run (33 steps) its encoder ended 0.8 points "
                             "of kNN under the random-init one (2.3 over at 135 steps)")

    def __init__(self, encoder, augmenter=None, *, hidden_dim=256, seed=None, **kwargs):
        super().__init__(encoder, augmenter, seed=seed, **kwargs)
        height, width = self.image_size
        if height != width:
            raise KerasSSLError(
                f"RotNet needs square images, but the encoder takes {height}x{width} images: a "
                f"quarter turn would make them {width}x{height}. Build the encoder for square "
                f"images, e.g. input_shape=({min(height, width)}, {min(height, width)}, "
                f"{self.encoder.input_shape[-1]}), and resize or crop the data to match "
                "(data.load(..., image_size=S) or --image-size S)."
            )
        if self.augmenter is None:
            self.augmenter = augment.weak(self.image_size, seed=seed)
        self.hidden_dim = hidden_dim
        self.classifier = heads.classifier_head(
            self.feature_dim, 4, hidden_dim=hidden_dim, name="rotation_head"
        )
        self.accuracy_tracker = keras.metrics.Mean(name="rotation_accuracy")

    @classmethod
    def from_data(cls, encoder, data, **options):
        """RotNet for `data`, with a warning when many of its images look alike turned (their
        rotation cannot be told, so predicting it teaches little)."""
        if data.kind == "images":
            alike = pretext.rotation_lookalikes(cls.sample_inputs(data))
            if alike > ROTATION_LOOKALIKES_WARNING:
                warnings.warn(
                    f"{alike:.0%} of the {data.name} images look alike turned by a quarter or half "
                    "turn (as digits 0, 1 and 8 do): RotNet cannot tell their rotation and may "
                    "learn little. simclr or denoising suit such images better.", stacklevel=2)
        return cls(encoder, **options)

    def method_metrics(self):
        return [self.accuracy_tracker]

    def compute_ssl_loss(self, inputs, labels, training):
        # Augmented in evaluation too, so that the validation loss measures the same task.
        images = self.augmenter(inputs, training=True)
        rotated, targets = pretext.four_rotations(images)
        # One pass over all 4N images: batch-norm statistics see every orientation equally.
        logits = self.classifier(self.encoder(rotated, training=training), training=training)
        loss, accuracy = losses.pretext_classification(targets, logits, return_accuracy=True)
        self.accuracy_tracker.update_state(accuracy)
        return loss

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim}
