"""What `keras-ssl pretrain` trains with when it is not told, chosen from the data's shape.

`choose(input_shape)` picks the encoder and its width; `BATCH_SIZE` and `LEARNING_RATE` are the
batch and the peak learning rate for every shape, and the time the user gives (`--minutes`) sets
the length of the warm-up and cosine learning-rate schedule (`training.plan_budget`). The choices
were measured on a 2-core CPU with `benchmarks/quality.py` and `benchmarks/train_step.py` on 28 px
gray images (Fashion-MNIST), 32 px colour images (CIFAR-10) and 96 px images; docs/results.md
("How the defaults were chosen") has the runs. Settings that belong to a method and depend on the
image size live with the method: SimCLR's colour strength (`augment.simclr`), Jigsaw's grid.

>>> choose((32, 32, 3))
Defaults(encoder='convnet', width=32, kind='images')
>>> choose((96, 96, 3)).encoder
'resnet18'
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_ssl import encoders

# Below this side the ConvNet (no downsampling stem: small images keep their detail); from it a
# ResNet-18 with the ImageNet stem, faster than the ConvNet there and the bigger model
# (docs/results.md, "How the defaults were chosen").
SMALL_IMAGES = 64
BATCH_SIZE = 256
LEARNING_RATE = 2e-3
# Text on a CPU: a 64-wide Transformer in batches of 32 gets past predicting the most frequent
# word within a few thousand steps.
TEXT_BATCH_SIZE = 32
TEXT_WIDTH = 64
# A run given neither epochs nor minutes: about this many steps (a few minutes on 2 CPU cores for
# the default encoders); images count examples (90,000 ~ 350 steps of 256), text steps.
IMAGE_EXAMPLES_PER_RUN = 90_000
TEXT_STEPS_PER_RUN = 3500


@dataclass(frozen=True)
class Defaults:
    """The encoder `choose` picked and its width (`None`: the encoder's own default)."""

    encoder: str
    width: int | None
    kind: str = "images"

    def build_encoder(self, input_shape, **options) -> keras.Model:
        return encoders.build(self.encoder, input_shape, width=self.width, kind=self.kind,
                              **options)

    def epochs(self, num_examples: int, steps_per_epoch: int) -> int:
        """Epochs of a run given neither epochs nor minutes: a few minutes on 2 CPU cores."""
        if self.kind == "text":
            return int(min(200, max(1, round(TEXT_STEPS_PER_RUN / max(steps_per_epoch, 1)))))
        return int(min(100, max(5, round(IMAGE_EXAMPLES_PER_RUN / max(num_examples, 1)))))


def choose(input_shape, kind: str | None = None) -> Defaults:
    """The defaults for examples of `input_shape` and `kind`: (height, width, channels) images,
    (features,) vectors, (length,) token ids with kind "text", (steps, features) series."""
    if kind == "text":
        return Defaults("transformer", TEXT_WIDTH, "text")
    if kind == "series":
        return Defaults("resnet1d", None, "series")
    if len(input_shape) == 1:
        return Defaults("mlp", None, "vectors")
    if min(input_shape[:2]) < SMALL_IMAGES:
        return Defaults("convnet", 32)
    return Defaults("resnet18", 64)


__all__ = ["BATCH_SIZE", "LEARNING_RATE", "TEXT_BATCH_SIZE", "TEXT_WIDTH", "Defaults", "choose"]
