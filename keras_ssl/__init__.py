"""keras-ssl: self-supervised representation learning for Keras 3 / TensorFlow."""

from keras_ssl._backend import require_tensorflow_backend

require_tensorflow_backend()

from keras_ssl.errors import KerasSSLError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["KerasSSLError", "__version__"]
