"""Guards against faults: a non-finite loss, and a disk that fills up while writing.

`keras.callbacks.TerminateOnNaN` only prints "Batch 3: Invalid loss, terminating training" and
returns normally, so a script goes on to evaluate and export NaN weights. `StopOnNonFiniteLoss`
raises `NonFiniteLossError` (a `KerasSSLError`: the CLI prints it as one line and exits non-zero)
naming the epoch, the step, the loss value, the last good checkpoint, and the usual fixes.

`disk_full_reason` recognises a write that failed because the disk (or the quota, or the file-size
limit) is full, whether Python (`OSError`) or TensorFlow (`tf.errors.OpError`, whose message
carries the system's wording) reported it; checkpoints and exports turn it into `DiskFullError`.
"""

from __future__ import annotations

import errno
import math

import keras
import numpy as np

from keras_ssl.errors import KerasSSLError

__all__ = ["DiskFullError", "NonFiniteLossError", "StopOnNonFiniteLoss", "disk_full_reason"]

FIXES = (
    "To fix it: lower the learning rate (--learning-rate, e.g. 10x lower), check the data for NaN "
    "or infinite values, and train in float32 (float16 overflows more easily)."
)


class NonFiniteLossError(KerasSSLError):
    """The training loss became NaN or infinite.

    Attributes:
        epoch: 1-based epoch of the step whose loss was not finite.
        step: 1-based step within that epoch.
        value: the loss value (the epoch's running mean, which a single NaN step poisons).
    """

    def __init__(self, message: str, epoch: int, step: int, value: float):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.value = value


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise `NonFiniteLossError` at the end of the first step whose loss is NaN or infinite.

    Args:
        monitor: the log entry to watch.
        checkpoint: the run's `checkpoint.TrainingCheckpoint`, if any: its position numbers the
            step within a resumed epoch, and its last save is named in the message. List it before
            this callback. (It never saves a non-finite state, so that checkpoint stays good.)

    Example:
    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(1e30), loss="mse")
    >>> x = np.ones((8, 2), "float32") * 1e5
    >>> model.fit(x, x[:, :1], batch_size=4, epochs=3, verbose=0,
    ...           callbacks=[StopOnNonFiniteLoss()])
    Traceback (most recent call last):
    ...
    keras_ssl.guards.NonFiniteLossError: The training loss became inf at epoch 1, step 2 of 2, ...
    """

    def __init__(self, monitor: str = "loss", checkpoint=None):
        super().__init__()
        self.monitor = monitor
        self.checkpoint = checkpoint
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not logs or self.monitor not in logs:
            return
        value = float(np.asarray(logs[self.monitor]))
        if math.isfinite(value):
            return
        self.model.stop_training = True
        if self.checkpoint is not None and self.checkpoint.position.epoch == self._epoch:
            step = self.checkpoint.position.step
        else:
            step = batch + 1
        steps = self.params.get("steps") if self.params else None
        where = f"epoch {self._epoch + 1}, step {step}" + (f" of {steps}" if steps else "")
        raise NonFiniteLossError(
            f"The training loss became {value} at {where}, so training stopped. "
            f"{self._checkpoint_note()} {FIXES}",
            epoch=self._epoch + 1, step=step, value=value,
        )

    def _checkpoint_note(self) -> str:
        checkpoint = self.checkpoint
        if checkpoint is None:
            return "No checkpoint was being written (pass --checkpoint-dir to keep one)."
        if checkpoint.last_saved is None:
            return f"No good checkpoint was saved in {checkpoint.directory} yet."
        return (
            f"The last good checkpoint ({checkpoint.last_saved.describe()}) in "
            f"{checkpoint.directory} is kept; rerun with the fix and the same checkpoint folder "
            "to resume from it."
        )


# ----- a full disk ------------------------------------------------------------------------------
class DiskFullError(KerasSSLError):
    """A checkpoint or an export could not be written: no space left, quota or file-size limit.

    What was there before (the previous checkpoint, the published export versions) is unchanged,
    and the half-written files are removed; the message says so and what to do.
    """


_DISK_FULL_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large",
                     errno.EDQUOT: "disk quota exceeded"}
# How TensorFlow's C++ file system words the same errors in an OpError's message.
_DISK_FULL_WORDS = {"No space left on device": errno.ENOSPC, "File too large": errno.EFBIG,
                    "Disk quota exceeded": errno.EDQUOT}


def disk_full_reason(err: BaseException) -> str | None:
    """'no space left on the device', 'file too large' or 'disk quota exceeded' when `err` (or an
    exception it was raised from) is a write that failed for lack of space; else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _DISK_FULL_ERRNOS:
            return _DISK_FULL_ERRNOS[err.errno]
        message = getattr(err, "message", None) or str(err)
        for words, number in _DISK_FULL_WORDS.items():
            if words in message:
                return _DISK_FULL_ERRNOS[number]
        err = err.__cause__ or err.__context__
    return None
