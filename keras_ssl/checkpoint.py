"""Resumable training: the whole training state saved every N steps, and data that resume in place.

A run killed at any moment (SIGKILL, preemption, power cut of the process) and started again with
the same arguments continues from its last checkpoint and ends with exactly the weights of a run
that was never interrupted (bit for bit on CPU). Three pieces make that hold:

- `TrainingCheckpoint`, a callback that writes every variable that influences the rest of the run
  with `tf.train.CheckpointManager`: the model's weights (batch-norm statistics, MoCo's queue,
  pointer and key encoder included), the state of every `keras.random.SeedGenerator` (the
  augmentation's and the method's random draws), the optimizer's slots and step counter (so the
  learning-rate schedule continues), the metrics' running sums, and the position (epoch, step).
  TensorFlow writes a checkpoint's files first and then swaps the small `checkpoint` index file
  atomically, so a kill during a save leaves the previous checkpoint as the latest one. A state
  holding NaN or infinite values is never saved: the last good checkpoint survives a diverged run.
  A save that fails for lack of space (full disk, quota, file-size limit) removes its half-written
  files and stops training with `guards.DiskFullError`, one line saying which checkpoint is kept;
  the files of a save killed midway are removed when training starts again.
- `resumable_dataset`, the training batches of every epoch as one stream in which epoch `e` is
  shuffled by a permutation that depends only on `(seed, e)`, never on how many times the
  process iterated the data, and which can start at any (epoch, step).
- `fit_resumable`, which reads where the last checkpoint stopped, builds the stream from there and
  runs `model.fit`; the callback ends the first, partial epoch after its remaining steps.

`keras.callbacks.BackupAndRestore` (Keras 3.15) is not enough for this: it saves the weights and
the optimizer but not the seed generators' states, restarts an interrupted epoch from its first
batch (mid-epoch checkpoints record the batch but restoring ignores it), leaves the data order to
`tf.data`'s per-iteration reshuffling (a restarted process replays epoch 0's order), overwrites its
one weights file in place (a kill during the write corrupts it), saves NaN weights like any others,
and refuses models that are not built before `fit`, as `SelfSupervisedModel`s are not.

Example:
>>> import numpy as np, keras_ssl
>>> from keras_ssl import checkpoint
>>> images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 1), dtype="uint8")
>>> model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((16, 16, 1), width=4), seed=0)
>>> model.compile(optimizer="adam")
>>> history = checkpoint.fit_resumable(model, images, batch_size=8, epochs=2, seed=0,
...                                    checkpoint_dir="runs/simclr", save_every_steps=2,
...                                    verbose=0)                      # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.data import Position, resumable_dataset, steps_per_epoch
from keras_ssl.errors import KerasSSLError
from keras_ssl.guards import DiskFullError, StopOnNonFiniteLoss, disk_full_reason

__all__ = ["TrainingCheckpoint", "fit_resumable"]

RUN_FILE = "run.json"
_CHECKPOINT_NAME = "ckpt"


# ----- the callback -----------------------------------------------------------------------------
class TrainingCheckpoint(keras.callbacks.Callback):
    """Save the full training state every `save_every_steps` steps and at each epoch's end;
    restore the latest one when training starts again.

    What is saved: `model.variables` (weights, batch-norm statistics, non-trainable state such as
    MoCo's queue and key encoder, and every `SeedGenerator` state), `model.optimizer.variables`
    (slots and the step counter that drives the learning-rate schedule), `model.metrics_variables`
    (so the resumed epoch reports the same averages) and the position (epoch, step). A
    `run.json` beside the checkpoints records the run's shape (model class, variable shapes, steps
    per epoch, and `run_info`); a checkpoint from a different run is refused, never overwritten.

    On `fit`'s start, a checkpoint in `directory` is restored and `fit` continues from its epoch;
    when it was taken mid-epoch, that epoch stops after its remaining steps. The batches must then
    continue where the checkpoint stopped, which `resumable_dataset` / `fit_resumable` provide; with
    any other dataset the restored run is a valid continuation but not the uninterrupted run's twin.

    Args:
        directory: folder of the checkpoints (created when needed).
        save_every_steps: also save every this many steps (None: at epoch ends only).
        max_to_keep: checkpoints kept; an older one is the fallback when the latest cannot be read.
        run_info: JSON-able facts that must match to resume (e.g. seed and batch size).
        verbose: print one line when resuming.

    Attributes:
        resumed_from: the `Position` restored at the start of `fit`, or None.
        last_saved: the `Position` of the newest checkpoint on disk, or None.
        position: the current `Position` while training.
    """

    def __init__(self, directory, save_every_steps: int | None = None, max_to_keep: int = 2,
                 run_info: dict | None = None, verbose: int = 1):
        super().__init__()
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise KerasSSLError(
                f"Checkpoint path {str(self.directory)!r} is an existing file; give a folder."
            )
        if save_every_steps is not None and (
            isinstance(save_every_steps, bool) or not isinstance(save_every_steps, int)
            or save_every_steps < 1
        ):
            raise KerasSSLError(
                f"save_every_steps must be a positive integer or None, got {save_every_steps!r}."
            )
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise KerasSSLError(f"max_to_keep must be a positive integer, got {max_to_keep!r}.")
        self.save_every_steps = save_every_steps
        self.max_to_keep = max_to_keep
        self.run_info = dict(run_info or {})
        self.verbose = verbose
        self.resumed_from: Position | None = None
        self.last_saved: Position | None = None
        self.position = Position()
        self._epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._manager = None
        self._resume_path = None
        self._saved_metrics = None
        self._first_epoch = None
        self._partial_epoch_stop = False
        self.skipped_nonfinite: Position | None = None

    # ----- reading the directory ---------------------------------------------------------------
    def saved_position(self) -> Position | None:
        """The position of the newest readable checkpoint in `directory`, or None (no restore)."""
        self._resume_path = None
        if not self.directory.is_dir():
            return None
        state = tf.train.get_checkpoint_state(str(self.directory))
        if state is None:
            return None
        paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        if state.model_checkpoint_path not in paths:
            paths.append(state.model_checkpoint_path)
        for path in reversed(paths):
            try:
                reader = tf.train.load_checkpoint(path)
                position = Position(
                    int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")),
                    int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")),
                )
            except (tf.errors.OpError, ValueError) as err:
                warnings.warn(f"Skipping unreadable checkpoint {path}: {err}", stacklevel=2)
                continue
            self._resume_path = path
            return position
        raise KerasSSLError(
            f"The checkpoints in {self.directory} cannot be read (all of {len(paths)} are "
            "damaged). Move the folder away to start over, or point at another --checkpoint-dir."
        )

    # ----- what is saved ----------------------------------------------------------------------
    def _tracked(self):
        model = self.model
        optimizer = model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        return {
            "model": list(model.variables),
            "optimizer": list(optimizer.variables) if optimizer is not None else [],
            "metrics": list(model.metrics_variables),
        }

    def _fingerprint(self, tracked, steps) -> dict:
        shapes = [
            f"{group}:{tuple(v.shape)}:{v.dtype}" for group in ("model", "optimizer")
            for v in tracked[group]
        ]
        return {
            "model": type(self.model).__name__,
            "variables": len(shapes),
            "state_digest": hashlib.sha256("\n".join(shapes).encode()).hexdigest()[:16],
            "steps_per_epoch": steps,
            **self.run_info,
        }

    def _check_run(self, fingerprint) -> None:
        path = self.directory / RUN_FILE
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise KerasSSLError(
                f"{path} is unreadable ({err}); move the folder away to start over."
            ) from err
        different = [
            "other variable shapes" if key == "state_digest"
            else f"{key} {saved.get(key)!r} there, {value!r} here"
            for key, value in fingerprint.items() if saved.get(key) != value
        ]
        if different:
            raise KerasSSLError(
                f"The checkpoints in {self.directory} belong to another run ({'; '.join(different)}). "
                "Nothing was changed there: point at a new checkpoint folder, or rerun with that "
                "run's settings to resume it."
            )

    def _write_run_file(self, fingerprint) -> None:
        path = self.directory / RUN_FILE
        if path.exists() and (self.resumed_from is not None or self.last_saved is not None):
            return
        # A fresh run writes it (again): a run.json without checkpoints protects nothing.
        temporary = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(fingerprint, indent=2))
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    # ----- Keras hooks ------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        steps = self.params.get("steps") if self.params else None
        tracked = self._tracked()
        self._steps = steps
        self._fingerprint_dict = self._fingerprint(tracked, steps)
        position = self.saved_position()
        if position is not None:
            self._check_run(self._fingerprint_dict)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise KerasSSLError(
                f"Cannot create the checkpoint folder {str(self.directory)!r}: {err.strerror}."
            ) from err
        checkpoint = tf.train.Checkpoint(epoch=self._epoch_var, step=self._step_var, **tracked)
        self._manager = tf.train.CheckpointManager(
            checkpoint, str(self.directory), max_to_keep=self.max_to_keep,
            checkpoint_name=_CHECKPOINT_NAME,
        )
        self._remove_unfinished()
        # Compiled once: checks every floating variable before a save.
        floats = [v for v in tracked["model"] + tracked["optimizer"]
                  if v.dtype in ("float16", "bfloat16", "float32", "float64")]
        self._all_finite = tf.function(
            lambda: tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in floats])
            if floats else tf.constant(True)
        )
        self.resumed_from = None
        self.position = Position()
        if position is not None:
            try:
                checkpoint.restore(self._resume_path).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as err:
                raise KerasSSLError(
                    f"Could not restore {self._resume_path} into this model ({_first_line(err)}). "
                    "It was written by a different model or configuration: point at a new "
                    "checkpoint folder."
                ) from err
            self.resumed_from = self.last_saved = self.position = position
            self._saved_metrics = [v.numpy() for v in tracked["metrics"]]
            self.model._initial_epoch = position.epoch
            if self.verbose:
                epochs = self.params.get("epochs") if self.params else None
                done = f" ({position.epoch * steps + position.step} steps done)" if steps else ""
                finished = (
                    " Training had already finished." if epochs is not None
                    and position.epoch >= epochs else ""
                )
                print(f"Resuming from checkpoint {self._resume_path}: "
                      f"{position.describe(epochs, steps)}{done}.{finished}", flush=True)
        self._tracked_metrics = tracked["metrics"]
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        resumed = self.resumed_from
        if self._first_epoch and resumed is not None and resumed.step > 0:
            # fit reset the metrics just before this call: give the epoch its running sums back.
            for variable, value in zip(self._tracked_metrics, self._saved_metrics, strict=True):
                variable.assign(value)
            self.position = Position(epoch, resumed.step)
        else:
            self.position = Position(epoch, 0)
        self._offset = self.position.step
        self._first_epoch = False

    def on_train_batch_end(self, batch, logs=None):
        step = self._offset + batch + 1
        self.position = Position(self.position.epoch, step)
        if self._steps and self._offset and step >= self._steps:
            # The resumed epoch has run its remaining steps: end it here, as fit would have.
            self.model.stop_training = True
            self._partial_epoch_stop = True
        at_epoch_end = bool(self._steps) and step >= self._steps
        if (self.save_every_steps and self._global_step() % self.save_every_steps == 0
                and not at_epoch_end):
            # At an epoch's last step the epoch-end save follows at once, with the same number:
            # saving here too would write that checkpoint twice, the second time over the first.
            self._save(logs)

    def on_epoch_end(self, epoch, logs=None):
        # An epoch cut short by another callback (stop_training mid-epoch) is saved as the
        # mid-epoch position it is, so that resuming runs the rest of it.
        if not self._steps or self.position.step >= self._steps:
            self.position = Position(epoch + 1, 0)
        self._save(logs)
        if self._partial_epoch_stop:
            self._partial_epoch_stop = False
            self.model.stop_training = False

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None

    # ----- saving -----------------------------------------------------------------------------
    def _global_step(self) -> int:
        return self.position.epoch * (self._steps or 0) + self.position.step

    def _save(self, logs) -> None:
        if self.last_saved == self.position:
            return
        loss = (logs or {}).get("loss")
        finite_loss = loss is None or bool(np.all(np.isfinite(np.asarray(loss))))
        if not finite_loss or not bool(self._all_finite()):
            # Keep the last good checkpoint: a diverged state is not worth resuming from.
            self.skipped_nonfinite = self.position
            return
        try:
            self._write_run_file(self._fingerprint_dict)
            self._epoch_var.assign(self.position.epoch)
            self._step_var.assign(self.position.step)
            # Numbered by global step when the epoch length is known; else by the save counter,
            # so that a number never names two checkpoints.
            self._manager.save(checkpoint_number=self._global_step() if self._steps else None)
        except (OSError, tf.errors.OpError) as err:
            reason = disk_full_reason(err)
            if reason is None:
                raise
            self._remove_unfinished()
            kept = (
                f"The last checkpoint ({self.last_saved.describe()}) is kept"
                if self.last_saved is not None else "No earlier checkpoint was there to keep"
            )
            raise DiskFullError(
                f"Could not write the checkpoint of {self.position.describe()} in "
                f"{self.directory}: {reason}, so training stopped. {kept} and the half-written "
                "files were removed. Free some space (or raise the file-size limit, ulimit -f), "
                "then run the same command again to resume."
            ) from err
        self.last_saved = self.position

    def _remove_unfinished(self) -> list[Path]:
        """Delete the files of checkpoints that a failed or killed save left unfinished.

        A checkpoint counts once the `checkpoint` state file names it; TensorFlow's temporary
        folders (`ckpt-N_temp`), data and index files of a number it does not name, and temporary
        state and run files are leftovers. Returns the deleted paths.
        """
        state = tf.train.get_checkpoint_state(str(self.directory))
        named = set()
        if state is not None:
            named = {Path(p).name for p in [*state.all_model_checkpoint_paths,
                                            state.model_checkpoint_path] if p}
        pattern = re.compile(rf"(?P<prefix>{_CHECKPOINT_NAME}-\d+)"
                             r"(?:_temp|\.index|\.data-\d+-of-\d+)")
        removed = []
        for path in self.directory.iterdir() if self.directory.is_dir() else []:
            match = pattern.fullmatch(path.name)
            leftover = (
                # Without a state file, unnamed checkpoint files may be someone's: leave them.
                (match is not None and (path.name.endswith("_temp")
                                        or (state is not None and match["prefix"] not in named)))
                or path.name.startswith("checkpoint.tmp")
                or (path.name.startswith(f".{RUN_FILE}.") and path.name.endswith(".tmp"))
            )
            if leftover:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def _first_line(err) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


# ----- the one-call API ---------------------------------------------------------------------------
def fit_resumable(model: keras.Model, x, y=None, *, batch_size: int, epochs: int, seed: int = 0,
                  labels: bool = False,
                  checkpoint_dir=None, save_every_steps: int | None = None, callbacks=None,
                  verbose="auto", validation_data=None) -> keras.callbacks.History:
    """`model.fit` on shuffled batches of `x` (and `y`) that resumes where a killed run stopped.

    With `checkpoint_dir`, the full training state is saved there every `save_every_steps` steps
    and at each epoch's end (see `TrainingCheckpoint`), and a later call with the same arguments
    continues from the newest checkpoint: it prints where it resumed and ends with the weights an
    uninterrupted call would have given. Without it, nothing is saved; the batches (and so the
    weights) are the same either way. A loss that turns NaN or infinite stops training with
    `guards.NonFiniteLossError`, and the last good checkpoint is kept.

    Args:
        model: a compiled model (e.g. a `keras_ssl` method).
        x: training examples (uint8 images, float vectors, token ids), or a data container
            (`keras_ssl.data.SSLData` or a streamed source) that makes the resumable batches
            itself; `y`: optional labels for arrays.
        labels: with a data container, train on `(inputs, labels)` batches.
        batch_size, epochs, seed: batches per step, epochs in total, seed of the epochs' orders.
        checkpoint_dir: folder of the checkpoints, or None.
        save_every_steps: save every this many steps too (None: at epoch ends only).
        callbacks: more Keras callbacks; they run after the checkpoint and the NaN guard.
        verbose, validation_data: as for `model.fit`.

    Returns:
        The `History` of this call (the epochs it ran).
    """
    source = x if hasattr(x, "resumable_dataset") else None
    if source is not None and y is not None:
        raise KerasSSLError("Pass labels through the data container (labels=True), not as y.")
    steps = steps_per_epoch(source.num_train if source else len(x), batch_size)
    checkpoint = None
    start = Position()
    own = []
    if checkpoint_dir is not None:
        checkpoint = TrainingCheckpoint(
            checkpoint_dir, save_every_steps=save_every_steps,
            run_info={"seed": int(seed), "batch_size": int(batch_size)},
            verbose=1,  # say where it resumed even when fit itself is silent
        )
        start = checkpoint.saved_position() or Position()
        own.append(checkpoint)
    own.append(StopOnNonFiniteLoss(checkpoint=checkpoint))
    initial_epoch = min(start.epoch, epochs)
    if start.epoch >= epochs:
        # Nothing left to train: fit still builds the model from one batch and restores the
        # checkpoint (on_train_begin), then runs no epoch.
        start = Position(max(epochs - 1, 0), 0)
    if source is not None:
        dataset = source.resumable_dataset(batch_size, epochs=max(epochs, 1), seed=seed,
                                           start=start, labels=labels)
    else:
        dataset = resumable_dataset(x, y, batch_size=batch_size, epochs=max(epochs, 1),
                                    seed=seed, start=start)
    return model.fit(
        dataset, epochs=epochs, steps_per_epoch=steps, initial_epoch=initial_epoch,
        callbacks=[*own, *(callbacks or [])], verbose=verbose, validation_data=validation_data,
        shuffle=False,  # the stream is shuffled already; Keras would only warn
    )
