"""Self-supervised methods as `keras.Model` subclasses sharing `SelfSupervisedModel`.

Importing this package registers every method under its CLI name (see `registry.METHODS`).
"""

from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import METHODS, get_method, register_method
from keras_ssl.methods.simclr import SimCLR

__all__ = ["METHODS", "SelfSupervisedModel", "SimCLR", "get_method", "register_method"]
