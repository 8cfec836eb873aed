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
    collapse,
    data,
    encoders,
    evaluate,
    guards,
    heads,
    losses,
    pipeline,
    plot,
    pretext,
    serving,
    training,
)
from keras_ssl.errors import KerasSSLError  # noqa: E402
from keras_ssl.export import export_encoder, load_encoder  # noqa: E402
from keras_ssl.methods import (  # noqa: E402
    BYOL,
    DINO,
    MAE,
    METHODS,
    NNCLR,
    AutoEncoder,
    BarlowTwins,
    Forecast,
    Jigsaw,
    MaskedLanguageModel,
    MaskedSteps,
    MoCo,
    NextTokenModel,
    RotNet,
    SegmentOrder,
    SelfSupervisedModel,
    SimCLR,
    SimSiam,
    SupCon,
    Triplet,
    TS2Vec,
    VICReg,
)
from keras_ssl.pipeline import PretrainResult, pretrain  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "BYOL", "DINO", "MAE", "METHODS", "NNCLR", "AutoEncoder", "BarlowTwins", "Forecast", "Jigsaw",
    "KerasSSLError", "MaskedLanguageModel", "MaskedSteps", "MoCo", "NextTokenModel",
    "PretrainResult", "RotNet", "SegmentOrder", "SelfSupervisedModel", "SimCLR", "SimSiam",
    "SupCon", "TS2Vec", "Triplet", "VICReg", "__version__", "augment", "callbacks", "checkpoint", "collapse",
    "data", "encoders", "evaluate", "export_encoder", "guards", "heads", "load_encoder", "losses",
    "pipeline", "plot", "pretext", "pretrain", "serving", "training",
]
