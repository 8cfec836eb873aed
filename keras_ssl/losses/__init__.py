"""Self-supervised losses: plain functions of tensors, computed in float32, cross-replica aware.

Every function casts its inputs to float32 and returns a scalar float32 loss; those with a natural
accuracy return `(loss, accuracy)` when called with `return_accuracy=True`. They only use ops with static shapes, so they compile under XLA (`jit_compile=True`).

Contrastive losses whose negatives come from the batch (`nt_xent`, `supcon`) gather the other
replicas' embeddings when they run inside a `tf.distribute` replica context with more than one
replica, so every anchor sees the negatives of the *global* batch, as in google-research/simclr
(`tf2/objective.py`). The gather is differentiable: its gradient sums the contributions of every
replica's loss. The loss returned on each replica is the mean over its *local* anchors, so, with
equal per-replica batches, the mean of the replicas' losses equals the loss of one device on the
global batch, and the gradients summed across replicas of `loss / num_replicas` (what
`SelfSupervisedModel.train_step` applies) equal that device's gradients.

| function | paper | returns |
| --- | --- | --- |
| `nt_xent(z1, z2, temperature)` | SimCLR, Chen et al. 2020 | loss [, accuracy] |
| `info_nce(query, key, queue, temperature)` | MoCo, He et al. 2020 | loss [, accuracy] |
| `supcon(z1, z2, labels, temperature)` | SupCon, Khosla et al. 2020 | loss |
| `triplet_loss(embeddings, labels, margin, mining)` | Hermans et al. 2017; FaceNet, Schroff et al. 2015 | loss |
| `pretext_classification(labels, logits)` | RotNet, Gidaris et al. 2018; Jigsaw, Noroozi and Favaro 2016 | loss [, accuracy] |
| `masked_reconstruction(target, prediction, mask)` | MAE, He et al. 2022 | loss |
| `masked_token_loss(labels, logits, mask)` | BERT, Devlin et al. 2019 | loss [, accuracy] |
| `hierarchical_contrastive(z1, z2, valid_steps)` | TS2Vec, Yue et al. 2022 | loss |

>>> import numpy as np
>>> from keras_ssl import losses
>>> z1 = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
>>> z2 = z1 + 0.1 * np.random.default_rng(1).normal(size=(8, 16)).astype("float32")
>>> loss, accuracy = losses.nt_xent(z1, z2, temperature=0.5, return_accuracy=True)
>>> float(accuracy)
1.0
"""

from keras_ssl.losses._common import TRIPLET_MINING, check_margin, check_mining, check_temperature
from keras_ssl.losses.classification import pretext_classification
from keras_ssl.losses.contrastive import info_nce, nt_xent, supcon
from keras_ssl.losses.reconstruction import masked_reconstruction, masked_token_loss
from keras_ssl.losses.triplet import triplet_loss

__all__ = [
    "TRIPLET_MINING",
    "check_margin",
    "check_mining",
    "check_temperature",
    "info_nce",
    "masked_reconstruction",
    "masked_token_loss",
    "nt_xent",
    "pretext_classification",
    "supcon",
    "triplet_loss",
]

# Losses without negatives (BYOL, SimSiam, Barlow Twins, VICReg, DINO) and NNCLR's.
from keras_ssl.losses import noncontrastive  # noqa: E402
from keras_ssl.losses.contrastive import nearest_neighbour, nnclr  # noqa: E402
from keras_ssl.losses.noncontrastive import (  # noqa: E402
    barlow_twins,
    byol,
    dino,
    dino_center,
    simsiam,
    vicreg,
)

__all__ += ["barlow_twins", "byol", "dino", "dino_center", "nearest_neighbour", "nnclr",
            "noncontrastive", "simsiam", "vicreg"]

# TS2Vec's loss on per-step features of time series.
from keras_ssl.losses.hierarchical import hierarchical_contrastive  # noqa: E402

__all__ += ["hierarchical_contrastive"]
