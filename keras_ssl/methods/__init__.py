"""Self-supervised methods as `keras.Model` subclasses sharing `SelfSupervisedModel`.

Importing this package registers every method under its CLI name (see `registry.METHODS`).
"""

from keras_ssl.methods.autoencoder import AutoEncoder
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.jigsaw import Jigsaw
from keras_ssl.methods.mlm import MaskedLanguageModel
from keras_ssl.methods.moco import MoCo
from keras_ssl.methods.registry import METHODS, get_method, register_method
from keras_ssl.methods.rotnet import RotNet
from keras_ssl.methods.simclr import SimCLR
from keras_ssl.methods.supcon import SupCon
from keras_ssl.methods.triplet import Triplet

__all__ = [
    "METHODS",
    "AutoEncoder",
    "Jigsaw",
    "MaskedLanguageModel",
    "MoCo",
    "RotNet",
    "SelfSupervisedModel",
    "SimCLR",
    "SupCon",
    "Triplet",
    "get_method",
    "register_method",
]

# Methods without negatives, and NNCLR.
from keras_ssl.methods.barlow_twins import BarlowTwins  # noqa: E402
from keras_ssl.methods.byol import BYOL  # noqa: E402
from keras_ssl.methods.nnclr import NNCLR  # noqa: E402
from keras_ssl.methods.simsiam import SimSiam  # noqa: E402
from keras_ssl.methods.vicreg import VICReg  # noqa: E402

__all__ += ["BYOL", "NNCLR", "BarlowTwins", "SimSiam", "VICReg"]

# Autoregressive text and time-series methods.
from keras_ssl.methods.next_token import NextTokenModel  # noqa: E402

__all__ += ["NextTokenModel"]
from keras_ssl.methods.segment_order import SegmentOrder  # noqa: E402
from keras_ssl.methods.series import Forecast, MaskedSteps  # noqa: E402

__all__ += ["Forecast", "MaskedSteps", "SegmentOrder"]
from keras_ssl.methods.mae import MAE  # noqa: E402

__all__ += ["MAE"]
from keras_ssl.methods.dino import DINO  # noqa: E402

__all__ += ["DINO"]
from keras_ssl.methods.ts2vec import TS2Vec  # noqa: E402

__all__ += ["TS2Vec"]
