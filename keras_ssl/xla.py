"""Did the training step really run under XLA? Read it off the step Keras traced.

`model.compile(jit_compile=True)` is a request, not a promise: Keras sets `model.jit_compile` back
to False, with only a warning, when a layer says it cannot compile (`RandomZoom`, `RandomCrop`, a
`TextVectorization`...) or when op determinism is enabled, and `jit_compile="auto"` is False on
CPU-only machines and under any `tf.distribute` strategy. `model.jit_compile` tells what Keras
*meant* to do; `xla_compiled(model)` tells what the traced step *is*: it looks through the
function Keras ran (`model.train_function`, after `fit`) for the one-step function and reports
whether TensorFlow marked it `_XlaMustCompile` (what `tf.function(jit_compile=True)` sets, and
what makes the runtime compile the whole step with XLA or fail).

It reads Keras 3 internals (the closure of `model.train_function`); where their shape is not the
expected one it returns False, so a check built on it fails rather than passes silently.

>>> import numpy as np, keras_ssl
>>> model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((16, 16, 1), width=4))
>>> model.compile(optimizer="adam", jit_compile=True)
>>> _ = model.fit(np.zeros((8, 16, 16, 1), "uint8"), batch_size=8, verbose=0)  # doctest: +SKIP
>>> xla_compiled(model)                                                      # doctest: +SKIP
True
"""

from __future__ import annotations

from keras_ssl._compat import concrete_functions, traced_functions
from keras_ssl.errors import KerasSSLError

__all__ = ["require_xla", "step_functions", "xla_compiled"]

_STEP_NAME = "one_step_on_data"
_KINDS = ("train", "test", "predict")


def step_functions(model, kind: str = "train") -> dict[str, bool]:
    """The traced one-step functions of `model`'s `kind` step and whether each must use XLA.

    Returns a dict from function name (e.g. `__inference_one_step_on_data_1234`) to the value of
    its `_XlaMustCompile` attribute. Empty when the step has not been traced yet (call `fit`,
    `evaluate` or `predict` first) or Keras' internals are not the expected ones.
    """
    if kind not in _KINDS:
        raise KerasSSLError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}.")
    function = getattr(model, f"{kind}_function", None)
    if function is None:
        return {}
    result = {}
    for traced in traced_functions(function):
        for concrete in concrete_functions(traced):
            graph_def = concrete.graph.as_graph_def()
            candidates = [(concrete.name, concrete.function_def.attr)] if hasattr(
                concrete, "function_def") else []
            candidates += [(f.signature.name, f.attr) for f in graph_def.library.function]
            for name, attrs in candidates:
                name = name.decode() if isinstance(name, bytes) else str(name)
                if _STEP_NAME in name:
                    must = attrs["_XlaMustCompile"].b if "_XlaMustCompile" in attrs else False
                    result[name] = result.get(name, False) or bool(must)
    return result


def xla_compiled(model, kind: str = "train") -> bool:
    """True when the traced `kind` step of `model` is compiled with XLA as a whole.

    Requires the step to have run once (`fit` for "train"). False when it has not been traced,
    when Keras fell back to graph mode, or when any traced variant of the step lacks XLA.
    """
    functions = step_functions(model, kind)
    return bool(functions) and all(functions.values())


def require_xla(model, kind: str = "train") -> None:
    """Raise `KerasSSLError` unless `model`'s traced `kind` step is XLA-compiled.

    The message says what Keras did instead and the usual reasons.
    """
    if xla_compiled(model, kind):
        return
    functions = step_functions(model, kind)
    if not functions:
        raise KerasSSLError(
            f"No traced {kind} step to inspect: run model.{'fit' if kind == 'train' else kind}() "
            "once first."
        )
    raise KerasSSLError(
        f"The {kind} step of {type(model).__name__} is not XLA-compiled (model.jit_compile="
        f"{getattr(model, 'jit_compile', None)!r}). Compile with jit_compile=True outside any "
        "tf.distribute strategy, with op determinism off, and without layers that cannot compile "
        "(RandomZoom, RandomTranslation, RandomCrop, TextVectorization in the model)."
    )
