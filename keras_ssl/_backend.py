"""Fail at import time, with a fix, when Keras is set to a backend other than TensorFlow."""

import os


def require_tensorflow_backend() -> None:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise ImportError(
            f"keras_ssl needs the TensorFlow backend of Keras, but KERAS_BACKEND={backend!r}. "
            "Fix: unset KERAS_BACKEND or run `export KERAS_BACKEND=tensorflow` before importing "
            "keras_ssl (training steps, augmentation and SavedModel export are written in TensorFlow)."
        )
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # TensorFlow's C++ start-up chatter hides the messages users need to read.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
