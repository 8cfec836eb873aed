"""Numeric precision of training: float32 or Keras mixed precision, chosen for the hardware.

`set_precision(name)` sets Keras' global dtype policy, which layers read when they are *created*:
call it before building the encoder and the method. What each part computes in:

- encoders and heads: the policy's compute dtype (float16 / bfloat16 under a mixed policy), with
  float32 variables;
- augmentation layers: always float32 (they are built with `dtype="float32", autocast=False`);
- losses (`keras_ssl.losses`) and the methods' own cross-entropies: float32 (logits are cast);
- the optimizer: `model.compile` wraps it in a `keras.optimizers.LossScaleOptimizer` under
  `mixed_float16` (dynamic loss scaling, so small float16 gradients do not underflow; the base
  `train_step` scales the loss through `optimizer.scale_loss`). bfloat16 has float32's range and
  needs no scaling.

`"auto"` picks float32 on CPU-only machines and `mixed_float16` where a GPU is visible (tensor
cores; every CUDA GPU since Volta). On a CPU without bfloat16 units mixed precision is several
times slower; on one with them (AVX512_BF16, AMX) `mixed_bfloat16` runs most methods' steps
faster, and a run started with `"auto"` says so (`bfloat16_hint`) without switching: float32
results then match from one CPU to another (docs/performance.md, "Precision").

>>> import keras_ssl
>>> keras_ssl.precision.set_precision("float32")
'float32'
>>> keras_ssl.precision.resolve_precision("auto") in ("float32", "mixed_float16")
True
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from keras_ssl.errors import KerasSSLError

__all__ = [
    "PRECISIONS",
    "bfloat16_hint",
    "cpu_computes_bfloat16",
    "current_precision",
    "resolve_precision",
    "set_precision",
]

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def resolve_precision(precision: str = "auto") -> str:
    """The policy name `precision` stands for: `"auto"` becomes float32 or mixed_float16.

    Raises `KerasSSLError` for names other than `PRECISIONS`.
    """
    if not isinstance(precision, str) or precision.lower() not in PRECISIONS:
        raise KerasSSLError(
            f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)} (auto: "
            "float32 on CPU, mixed_float16 on GPU)."
        )
    precision = precision.lower()
    if precision != "auto":
        return precision
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


def set_precision(precision: str = "auto") -> str:
    """Set Keras' global dtype policy for the models built afterwards; returns the policy name.

    Args:
        precision: `"float32"`, `"mixed_float16"`, `"mixed_bfloat16"`, or `"auto"` (float32 on
            CPU-only machines, where mixed precision is several times slower; mixed_float16
            where a GPU is visible).

    Build the encoder and the method *after* this call (layers take the policy in force when
    they are created), then `compile`: under mixed_float16 Keras wraps the optimizer in a
    `LossScaleOptimizer`.

    Example:
    >>> import keras, keras_ssl
    >>> set_precision("mixed_bfloat16")
    'mixed_bfloat16'
    >>> keras_ssl.encoders.MLP(4, hidden=(8,)).layers[1].compute_dtype
    'bfloat16'
    >>> set_precision("float32")
    'float32'
    """
    name = resolve_precision(precision)
    keras.mixed_precision.set_dtype_policy(name)
    return name


# Linux's /proc/cpuinfo flags of x86 CPUs that compute bfloat16 natively (AMD Zen 4 and later,
# Intel Cooper Lake and later); oneDNN's bfloat16 convolutions and matmuls use them.
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_computes_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 units, read from the `flags` lines of `cpuinfo`.

    False where the file does not exist (other systems) or names no flag of `BFLOAT16_FLAGS`.
    """
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return False
    flags = {flag for line in lines if line.startswith("flags") for flag in line.split()}
    return bool(flags & BFLOAT16_FLAGS)


def bfloat16_hint(requested: str, policy: str) -> str | None:
    """A line suggesting mixed_bfloat16 where `auto` chose float32 on a CPU with bfloat16 units.

    float32 stays the default on CPUs (results then match across machines); where the CPU
    computes bfloat16, mixed_bfloat16 is the faster choice (docs/performance.md, "Precision").
    """
    if str(requested).lower() != "auto" or policy != "float32" or not cpu_computes_bfloat16():
        return None
    return ("This CPU computes bfloat16 natively: --precision mixed_bfloat16 (precision_policy="
            "'mixed_bfloat16') ran most methods' steps 1.2-1.4x faster (docs/performance.md).")


def current_precision() -> str:
    """The name of Keras' global dtype policy (e.g. `"float32"` or `"mixed_float16"`)."""
    return keras.mixed_precision.dtype_policy().name
