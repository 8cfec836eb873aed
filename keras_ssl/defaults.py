"""What `keras-ssl pretrain` trains with when it is not told, chosen from the data's shape.

`choose(input_shape)` picks the encoder and its width; `BATCH_SIZE` and `LEARNING_RATE` are the
batch and the peak learning rate for every shape, and the time the user gives (`--minutes`) sets
the length of the warm-up and cosine learning-rate schedule (`training.plan_budget`). The choices
were measured on a 2-core CPU with `benchmarks/quality.py` and `benchmarks/train_step.py` on 28 px
gray images (Fashion-MNIST), 32 px colour images (CIFAR-10) and 96 px images; docs/results.md
("How the defaults were chosen") has the runs. Settings that belong to a method and depend on the
image size live with the method: SimCLR's colour strength (`augment.simclr`), Jigsaw's grid.

>>> choose((32, 32, 3))
Defaults(encoder='convnet', width=32)
>>> choose((96, 96, 3)).encoder
'resnet18'
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_ssl import encoders

# Below this side the ConvNet (no downsampling stem: small images keep their detail); from it a
# ResNet-18 with the ImageNet stem, which at 96 px trains 1.8x as many images per second as the
# ConvNet on a 2-core CPU (68.9 against 38.0 img/s, SimCLR at batch 64) and is the bigger model.
SMALL_IMAGES = 64
BATCH_SIZE = 256
LEARNING_RATE = 2e-3


@dataclass(frozen=True)
class Defaults:
    """The encoder `choose` picked and its width (`None`: the encoder's own default)."""

    encoder: str
    width: int | None

    def build_encoder(self, input_shape) -> keras.Model:
        return encoders.build(self.encoder, input_shape, width=self.width)


def choose(input_shape) -> Defaults:
    """The defaults for inputs of `input_shape`: (height, width, channels) for images,
    (features,) for vectors."""
    if len(input_shape) == 1:
        return Defaults("mlp", None)
    if min(input_shape[:2]) < SMALL_IMAGES:
        return Defaults("convnet", 32)
    return Defaults("resnet18", 64)


__all__ = ["BATCH_SIZE", "LEARNING_RATE", "Defaults", "choose"]
