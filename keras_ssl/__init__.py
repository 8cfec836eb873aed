"""keras-ssl: self-supervised representation learning for Keras 3 / TensorFlow.

Methods are `keras.Model` subclasses trained with `model.fit`; augmentation runs in the graph, per
image; trained encoders are exported as TF Serving SavedModels.

>>> import keras_ssl
>>> data = keras_ssl.data.load("digits")
>>> model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet(data.input_shape))
>>> model.compile(optimizer="adam")
>>> model.fit(data.train_dataset(256), epochs=1, verbose=0)   # doctest: +SKIP
>>> keras_ssl.export_encoder(model, "saved_models/simclr")    # doctest: +SKIP
"""

from keras_ssl._backend import require_tensorflow_backend

require_tensorflow_backend()

# The public API.
from keras_ssl import (  # noqa: E402
    augment,
    callbacks,
    checkpoint,
    data,
    encoders,
    evaluate,
    guards,
    heads,
    losses,
    plot,
    pretext,
    serving,
    training,
)
from keras_ssl.errors import KerasSSLError  # noqa: E402
from keras_ssl.export import export_encoder, load_encoder  # noqa: E402
from keras_ssl.methods import (  # noqa: E402
    METHODS,
    AutoEncoder,
    Jigsaw,
    MaskedLanguageModel,
    MoCo,
    RotNet,
    SelfSupervisedModel,
    SimCLR,
    SupCon,
    Triplet,
)
from keras_ssl.pipeline import PretrainResult, pretrain  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "METHODS",
    "AutoEncoder",
    "Jigsaw",
    "KerasSSLError",
    "PretrainResult",
    "MaskedLanguageModel",
    "MoCo",
    "RotNet",
    "SelfSupervisedModel",
    "SimCLR",
    "SupCon",
    "Triplet",
    "augment",
    "callbacks",
    "checkpoint",
    "data",
    "encoders",
    "evaluate",
    "guards",
    "export_encoder",
    "heads",
    "load_encoder",
    "losses",
    "plot",
    "pretext",
    "pretrain",
    "serving",
    "training",
    "__version__",
]

# Autoregressive text and time-series methods.
from keras_ssl.methods import Forecast, MaskedSteps, NextTokenModel, SegmentOrder  # noqa: E402

__all__ += ["Forecast", "MaskedSteps", "NextTokenModel", "SegmentOrder"]

# Methods without negatives, and NNCLR.
from keras_ssl.methods import BYOL, NNCLR, BarlowTwins, SimSiam, VICReg  # noqa: E402

__all__ += ["BYOL", "NNCLR", "BarlowTwins", "SimSiam", "VICReg"]

from keras_ssl.methods import MAE  # noqa: E402

__all__ += ["MAE"]

from keras_ssl.methods import DINO  # noqa: E402

__all__ += ["DINO"]
