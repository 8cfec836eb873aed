"""The pretraining pipeline as one library call: `keras_ssl.pretrain(method, data, ...)`.

It composes the public pieces a user can also put together by hand (see the README): the data
(`keras_ssl.data`), the defaults for its shape (`keras_ssl.defaults`), a method
(`keras_ssl.methods`), the optimizer and time budget (`keras_ssl.training`), resumable training
(`keras_ssl.checkpoint.fit_resumable`), the kNN monitor (`keras_ssl.callbacks`), the evaluation
(`keras_ssl.evaluate`), plots and the atomic export. The `keras-ssl pretrain` command is this
function with its arguments parsed from the shell.

>>> result = keras_ssl.pretrain("simclr", "digits", epochs=2, batch_size=64)   # doctest: +SKIP
>>> print(result.table())                                                     # doctest: +SKIP
>>> result.model.encoder                                                      # doctest: +SKIP
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from keras_ssl import (
    augment,
    checkpoint,
    defaults,
    distribute,
    encoders,
    evaluate,
    plot,
)
from keras_ssl import data as data_lib
from keras_ssl.callbacks import KNNMonitor
from keras_ssl.collapse import CollapseMonitor
from keras_ssl.data import text
from keras_ssl.devices import RunDevices
from keras_ssl.errors import KerasSSLError
from keras_ssl.export import check_export_path, export_encoder
from keras_ssl.methods import get_method
from keras_ssl.methods.base import MIN_IMAGE_SIZE
from keras_ssl.training import default_optimizer, plan_budget
from keras_ssl.validate import check_int, check_number

# Text is scored by masking the held-out examples several times over: more masked tokens.
TEXT_EVAL_PASSES = 4
PLOT_POINTS = 2000
# Held-out examples whose embeddings the collapse monitor follows (std, effective rank).
COLLAPSE_EXAMPLES = 512
# Method options that set the views rather than the method: augment.simclr's colour strength,
# smallest crop area and whether the jitter is one colour matrix per image.
VIEW_OPTIONS = ("strength", "min_crop_area", "fused_color")
SERVING_INPUTS = {"images": "images uint8", "vectors": "features float32",
                  "text": "text string", "series": "series float32"}


@dataclasses.dataclass
class PretrainResult:
    """What `pretrain` did: the trained model, its `History`, the held-out scores before and after
    training (plus a baseline row where the method has one), and where the encoder went."""

    model: keras.Model
    history: keras.callbacks.History | None
    scores: list[tuple[str, dict]]
    export_path: Path | None
    train_seconds: float
    epochs: int
    steps_per_epoch: int
    budget: object | None = None  # the training.TimeBudget of a `minutes` run
    plots: list[Path] = dataclasses.field(default_factory=list)

    @property
    def before(self) -> dict | None:
        """The random-init encoder's held-out scores."""
        return dict(self.scores).get("random init")

    @property
    def after(self) -> dict | None:
        """The trained encoder's held-out scores."""
        return self.scores[-1][1] if self.scores and self.before is not None else None

    @property
    def steps(self) -> int:
        """The training steps that ran."""
        if self.budget is not None and self.budget.stopped_at_step is not None:
            return int(self.budget.stopped_at_step)
        ran = len(self.history.history.get("loss", [])) if self.history else 0
        return ran * self.steps_per_epoch

    def table(self) -> str:
        """The scores side by side, one row per encoder."""
        if not self.scores:
            return "No labelled held-out data: nothing to evaluate on."
        columns = list(dict.fromkeys(k for _, row in self.scores for k in row))
        names = [c.replace("_", " ").replace("knn", "kNN") for c in columns]
        width = max(14, *(len(n) + 2 for n in names))
        lines = [f"{'encoder':<28}" + "".join(f"{n:>{width}}" for n in names)]
        for label, row in self.scores:
            cells = (f"{row[c]:>{width}.4f}" if c in row else f"{'-':>{width}}" for c in columns)
            lines.append(f"{label:<28}" + "".join(cells))
        return "\n".join(lines)


def pretrain(
    method: str = "simclr",
    data="digits",
    *,
    encoder: str | keras.Model | None = None,
    width: int | None = None,
    encoder_weights=None,
    epochs: int | None = None,
    minutes: float | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    method_options: dict | None = None,
    image_size: int | None = None,
    stream: bool | None = None,
    cache=False,
    on_bad_file: str = "skip",
    max_examples: int | None = None,
    data_dir=None,
    download: bool = False,
    vocab_size: int = text.DEFAULT_VOCAB_SIZE,
    sequence_length: int = text.DEFAULT_SEQUENCE_LENGTH,
    eval_examples: int = 10_000,
    evaluate_scores: bool = True,
    knn_every: int | None = None,
    online_probe: bool = False,
    checkpoint_dir=None,
    checkpoint_every: int = 100,
    export=None,
    plots=None,
    logdir=None,
    strategy="none",
    cpu_devices: int | None = None,
    sync_batchnorm: bool = False,
    precision_policy: str = "auto",
    xla: str = "auto",
    callbacks=(),
    verbose: int = 1,
    report: bool = True,
) -> PretrainResult:
    """Pretrain an encoder on `data` with `method`, score it before and after, and export it.

    Args:
        method: a registered method name (`keras_ssl.METHODS`: "simclr", "moco", "mlm", ...).
        data: a source `keras_ssl.data.load` (or, for text methods, `data.text.load`) reads, or
            an already loaded `SSLData`.
        encoder: a registered encoder name or a built `keras.Model`; default by the data's shape
            (`keras_ssl.defaults`); `width` sizes a named one.
        encoder_weights: start the named encoder from this file instead of random init (a
            `.weights.h5` file; a keras.applications `.h5` or a keras-hub preset folder for those).
        epochs / minutes: how long to train (one of them; default: sized to the data).
        batch_size, learning_rate, seed: the global batch, the peak AdamW learning rate (warm-up
            then cosine decay), the seed of every random choice.
        method_options: keyword arguments of the method's constructor over its defaults.
        image_size: resize every image to this side when loading (folders of mixed sizes).
        stream, cache, on_bad_file: how image files are read (`keras_ssl.data.load`): streamed
            from storage when too large for memory (None decides), cached by tf.data, and what
            a file that cannot be decoded does ("skip" it, counted and named, or "raise").
        max_examples, data_dir, download: passed to the data loader; `vocab_size` and
            `sequence_length` to the text loader.
        eval_examples: labelled training examples in the kNN bank / probe training set.
        evaluate_scores: score the random-init and trained encoders on held-out data.
        knn_every: held-out kNN accuracy every N epochs while training (None: ~10 times; 0: never).
        online_probe: train a linear classifier on detached features during pretraining.
        checkpoint_dir, checkpoint_every: resumable full-state checkpoints every N steps.
        export: a model folder; the encoder is exported to its next version.
        plots, logdir: folders for PNG plots and TensorBoard logs.
        strategy: "none", "mirrored", "multi_worker" or a `tf.distribute.Strategy`;
            `cpu_devices` splits the CPU into logical devices for "mirrored";
            `sync_batchnorm`: batch statistics over the global batch.
        precision_policy, xla: "auto" picks float32 and no XLA on CPU, mixed_float16 and XLA
            on a GPU.
        callbacks: more Keras callbacks for `fit`.
        verbose: Keras' progress output: 0 silent, 1 progress bar, 2 one line per epoch.
        report: print what the run does: the devices, the plan, the export.
    """
    _check_numbers(epochs, minutes, batch_size, learning_rate, width, image_size, eval_examples,
                   knn_every, checkpoint_every, max_examples, verbose)
    _check_paths(logdir, checkpoint_dir, export)
    setup = RunDevices.create(strategy, cpu_devices, precision_policy, xla, sync_batchnorm, report)
    cls, preset = get_method(method)
    kind_is_text = "text" in cls.input_kinds
    if batch_size is None:
        batch_size = defaults.TEXT_BATCH_SIZE if kind_is_text else defaults.BATCH_SIZE
    learning_rate = defaults.LEARNING_RATE if learning_rate is None else learning_rate
    _check_run(cls, batch_size, setup, minutes, epochs, checkpoint_dir)
    keras.utils.set_random_seed(seed)
    data = _load(data, cls, method, seed=seed, image_size=image_size, max_examples=max_examples,
                 data_dir=data_dir, download=download, vocab_size=vocab_size,
                 sequence_length=sequence_length,
                 files=dict(stream=stream, cache=cache, on_bad_file=on_bad_file))
    if online_probe and not data.has_labels:
        raise KerasSSLError(
            f"--online-probe trains a classifier on class labels, but {data.name!r} has none. "
            "Drop --online-probe or use a labelled source."
        )
    with setup.scope():  # the model's and the optimizer's variables on every replica
        # The model first: its checks (an unknown encoder, images too small for a puzzle) say
        # more than the batch-size check below when both fail.
        model = build_model(method, data, encoder=encoder, width=width, seed=seed,
                            method_options=method_options, online_probe=online_probe,
                            encoder_weights=encoder_weights)
        steps = data_lib.steps_per_epoch(data.num_train, batch_size)
        if epochs is None:
            epochs = defaults.choose(data.input_shape, data.kind).epochs(data.num_train, steps)
        if sync_batchnorm:
            distribute.sync_batchnorm(model)
        model.compile(optimizer=default_optimizer(learning_rate, steps * epochs),
                      jit_compile=setup.jit_compile)
    labels = cls.needs_labels or online_probe
    budget = None
    if minutes:
        first = next(iter(data.train_dataset(batch_size, labels=labels, seed=seed).take(1)))
        batch = tuple(np.asarray(t) for t in (first if labels else (first,)))
        budget = plan_budget(model, *batch, batch_size=batch_size, minutes=minutes,
                             num_examples=data.num_train)
        epochs = budget.epochs
    # The short-run thresholds were measured on images (docs/results.md).
    if epochs and data.kind == "images" and (
            warning := cls.short_run_warning(steps * epochs, {**preset, **(method_options or {})},
                                             colour=data.input_shape[-1] == 3)):
        if budget and width is None and model.encoder.name == "convnet":
            warning += (" On a time budget a narrower encoder fits more steps: width 16 "
                        "(--width 16) fit three times those of the default ConvNet "
                        "(docs/results.md, The first run).")
        warnings.warn(warning, stacklevel=2)
    scorer = _Scorer(model, cls, data, eval_examples, seed) if evaluate_scores else None
    scores = scorer.baseline_and_random_init() if scorer else []
    if report:
        print(f"Pretraining {model.encoder.name} ({model.encoder.count_params():,} parameters) "
              f"with {cls.__name__} on {data.num_train:,} {data.name} examples: {epochs} epochs "
              f"of {steps} steps" + (f" (what fits in {minutes:g} minutes)." if budget else "."))
    before = None
    if plots and scorer and scorer.split:
        before = evaluate.embed(model, scorer.split[2][:PLOT_POINTS])
    fit_callbacks, monitor = _callbacks(scorer, epochs, knn_every, logdir, setup, callbacks)
    start = time.perf_counter()
    history = None
    if epochs:
        history = checkpoint.fit_resumable(
            model, data, labels=labels, batch_size=batch_size, epochs=epochs, seed=seed,
            checkpoint_dir=setup.worker_dir(checkpoint_dir), save_every_steps=checkpoint_every,
            callbacks=[*([budget] if budget else []), *fit_callbacks], verbose=verbose,
        )
    seconds = time.perf_counter() - start
    if budget and history is not None:  # the epochs that ran, not the ones planned
        epochs = len(history.history.get("loss", [])) or epochs
    if scorer and scores:
        scores.append((f"trained ({epochs} epochs)", scorer.score()))
    result = PretrainResult(model, history, scores, None, seconds, epochs, steps, budget)
    if plots and setup.is_chief:
        knn = {0: result.before["knn_accuracy"], **monitor.scores} if monitor else {}
        split = scorer.split if scorer else None
        examples = split[2] if split else cls.sample_inputs(data, seed=seed)
        result.plots = plot.write_run_plots(plots, model, data, split, history, knn, before,
                                            examples)
    if export and setup.is_chief:
        result.export_path = export_encoder(model, export)
        if report:
            print(f"Exported encoder to {result.export_path} (serving_default: "
                  f"{SERVING_INPUTS.get(data.kind, data.kind)} -> embeddings)")
    return result


def parse_method_options(pairs) -> dict:
    """`["temperature=0.2", "blur=false"]` (the command line's `--set`) -> keyword arguments.

    >>> parse_method_options(["temperature=0.2", "blur=false", "name=x"])
    {'temperature': 0.2, 'blur': False, 'name': 'x'}
    """
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise KerasSSLError(f"--set takes NAME=VALUE, got {pair!r}.")
        word = {"true": "True", "false": "False", "none": "None"}.get(value.lower(), value)
        try:
            options[name] = ast.literal_eval(word)
        except (ValueError, SyntaxError):
            options[name] = value
    return options


# ----- checks -------------------------------------------------------------------------------------
def _check_numbers(epochs, minutes, batch_size, learning_rate, width, image_size, eval_examples,
                   knn_every, checkpoint_every, max_examples, verbose) -> None:
    """Every number before anything is loaded or built: NaN, infinity, zero and negatives that
    would fail hours later (or silently do something else) fail here, in one line."""
    if epochs is not None:
        check_int(epochs, "--epochs", least=0)
    if minutes is not None:
        check_number(minutes, "--minutes", above=0, hint="Give a time budget such as 10.")
        if epochs is not None:
            raise KerasSSLError("Give --epochs or --minutes, not both.")
    if batch_size is not None:
        check_int(batch_size, "--batch-size", least=1)
    if learning_rate is not None:
        check_number(learning_rate, "--learning-rate", above=0, hint="The default is 2e-3.")
    if verbose not in (0, 1, 2):
        raise KerasSSLError(f"--verbose must be 0, 1 or 2, got {verbose!r}.")
    for value, name, least in ((width, "--width", 1), (image_size, "--image-size", MIN_IMAGE_SIZE),
                               (eval_examples, "--eval-examples", 1),
                               (knn_every, "--knn-every", 0),
                               (checkpoint_every, "--checkpoint-every", 1),
                               (max_examples, "--max-examples", 1)):
        if value is not None:
            check_int(value, name, least=least)


def _check_paths(logdir, checkpoint_dir, export) -> None:
    # TensorFlow no longer brings TensorBoard, and tf.summary fails mid-fit without it.
    if logdir and importlib.util.find_spec("tensorboard") is None:
        raise KerasSSLError(
            "--logdir writes TensorBoard logs, but TensorBoard is not installed: "
            "pip install 'keras-ssl[tensorboard]' (or pip install tensorboard)."
        )
    if checkpoint_dir and Path(checkpoint_dir).is_file():
        raise KerasSSLError(f"--checkpoint-dir {checkpoint_dir!r} is an existing file; give a folder.")
    if export:
        if Path(export).is_file():
            raise KerasSSLError(
                f"--export {export!r} is an existing file; give a folder (versions are written "
                "inside it)."
            )
        check_export_path(export)  # before training, not after it


def _check_run(cls, batch_size, setup, minutes, epochs, checkpoint_dir) -> None:
    if batch_size % setup.replicas:
        raise KerasSSLError(
            f"--batch-size {batch_size} (the global batch) does not split evenly over "
            f"{setup.replicas} replicas; use a multiple of {setup.replicas}."
        )
    least = max(2, cls.min_batch_size)
    if batch_size < least:
        raise KerasSSLError(
            f"--batch-size {batch_size} is too small: {cls.__name__} needs at least {least} "
            "examples per batch (contrastive negatives come from the batch); use 64 or more."
        )
    if minutes and checkpoint_dir:
        raise KerasSSLError(
            "--minutes plans the run from measured step times, which differ when a run resumes; "
            "with --checkpoint-dir give --epochs instead."
        )
    if minutes and setup.workers > 1:
        raise KerasSSLError(
            "--minutes plans and stops the run by each worker's own clock, so workers could stop "
            "at different steps and wait for each other forever; with --strategy multi_worker "
            "give --epochs instead."
        )


# ----- data and models ----------------------------------------------------------------------------
def _load(source, cls, method, *, seed, image_size, max_examples, data_dir, download, vocab_size,
          sequence_length, files):
    """The data for `cls`, loaded by the loader of the kind it learns from."""
    kinds = " or ".join(cls.input_kinds)
    if isinstance(source, data_lib.SSLData):
        data = source
    elif "text" in cls.input_kinds:
        if image_size:
            raise KerasSSLError("--image-size applies to images; text is sized by "
                                "--sequence-length.")
        data = text.load(source, vocab_size=vocab_size, sequence_length=sequence_length,
                         seed=seed, max_examples=max_examples, data_dir=data_dir,
                         download=download)
    elif text.is_text_source(source):
        raise KerasSSLError(f"{source!r} holds text, but --method {method} learns from {kinds}. "
                            "Use --method mlm for text.")
    else:
        data = data_lib.load(source, seed=seed, data_dir=data_dir, max_examples=max_examples,
                             download=download, image_size=image_size, **files)
    if data.kind not in cls.input_kinds:
        raise KerasSSLError(
            f"--method {method} learns from {kinds}, but {data.name!r} holds {data.kind}. "
            f"Choose a method that supports {data.kind}."
            + (" For text use --method mlm." if data.kind == "images" and kinds == "text" else "")
        )
    if cls.needs_labels and not data.has_labels:
        raise KerasSSLError(
            f"--method {method} needs class labels, but {data.name!r} has none. Use a labelled "
            "source or a method that needs no labels (e.g. simclr)."
        )
    shape = data.input_shape
    if data.kind == "images" and min(shape[:2]) < MIN_IMAGE_SIZE:
        raise KerasSSLError(
            f"The images of {data.name!r} are {shape[0]}x{shape[1]} px, smaller than the "
            f"{MIN_IMAGE_SIZE} px minimum crop. Pass --image-size {MIN_IMAGE_SIZE * 4} to "
            "upsample them."
        )
    return data


def build_encoder(encoder, width, data, **options) -> keras.Model:
    """The encoder `pretrain` trains on `data`: `encoder` itself when it is a `keras.Model`, the
    registered encoder of that name, or the default for the data's shape (`keras_ssl.defaults`);
    `width` sizes a built one, `options` go to its builder."""
    if isinstance(encoder, keras.Model):
        return encoder
    if data.kind == "text":
        options["vocab_size"] = data.vocab_size
    default = options.pop("default_encoder", None)
    encoder = encoder or default
    if encoder:  # a named encoder: width sizes it, or its own default does
        return encoders.build(encoder, data.input_shape, width=width, kind=data.kind, **options)
    chosen = defaults.choose(data.input_shape, data.kind)
    return encoders.build(chosen.encoder, data.input_shape, width=width or chosen.width,
                          kind=data.kind, **options)


def build_model(method, data, *, encoder=None, width=None, seed=0, method_options=None,
                online_probe=False, encoder_weights=None) -> keras.Model:
    """The method `pretrain` trains, not compiled: the registered `method` with its preset,
    `method_options` over them, on `build_encoder(encoder, width, data)`."""
    cls, preset = get_method(method)
    options = {"seed": seed, **preset, **(method_options or {})}
    if online_probe:
        options["probe_classes"] = data.num_classes
    views = {k: options.pop(k) for k in VIEW_OPTIONS if k in options}
    if views:  # SimCLR's views with another colour strength or crop area
        if data.kind != "images":
            raise KerasSSLError(f"{', '.join(views)} set the views of images; {data.name!r} "
                                f"holds {data.kind}.")
        options["augmenter"] = augment.simclr(
            data.input_shape[:2], strength=views.get("strength"),
            crop_scale=(float(views.get("min_crop_area", 0.08)), 1.0),
            fused_color=views.get("fused_color", True), seed=seed)
    if encoder_weights is not None and isinstance(encoder, keras.Model):
        raise KerasSSLError("encoder_weights loads into a named encoder; load them into a "
                            "built one yourself (encoder.load_weights).")
    weights = {} if encoder_weights is None else {"weights": encoder_weights}
    backbone = build_encoder(encoder, width, data, default_encoder=cls.default_encoder,
                             **cls.encoder_options, **weights)
    try:
        return cls.from_data(backbone, data, **options)
    except (TypeError, ValueError) as e:  # an option the method does not take
        if isinstance(e, ValueError) and "keyword argument" not in str(e):
            raise
        raise KerasSSLError(f"--method {method}: {e}. Check --set (method_options) against "
                            f"help(keras_ssl.{cls.__name__}).") from e


def knn_neighbours(bank_size: int) -> int:
    """k of the kNN scores: 200 (as in the SimCLR and MoCo papers' monitors) unless the bank is
    small (a UCR training set of 50 series), where a fifth of it, at least 5.

    >>> knn_neighbours(10_000), knn_neighbours(50)
    (200, 10)
    """
    return int(min(200, max(5, bank_size // 5)))


class _Scorer:
    """Held-out scores of the model as it is now: kNN and linear probe on labelled data, or the
    method's own held-out metrics on text."""

    def __init__(self, model, cls, data, eval_examples, seed):
        self.model, self.cls, self.data = model, cls, data
        self.split = None if data.kind == "text" else data.evaluation_arrays(eval_examples, seed)
        self.k = knn_neighbours(len(self.split[1])) if self.split else None

    def score(self) -> dict:
        if self.data.kind == "text":
            passes = self.data.test_dataset(256).repeat(TEXT_EVAL_PASSES)
            return self.model.evaluate(passes, verbose=0, return_dict=True)
        return evaluate.evaluate_encoder(self.model, *self.split, k=self.k)

    def baseline_and_random_init(self) -> list[tuple[str, dict]]:
        if self.split is None and (self.data.kind != "text" or self.data.x_test is None):
            return []
        baseline = self.cls.baseline_scores(self.data)
        rows = [(self.cls.baseline_label, baseline)] if baseline else []
        return [*rows, ("random init", self.score())]


def _callbacks(scorer, epochs, knn_every, logdir, setup, extra):
    """The fit callbacks, KNNMonitor first: the ones after it (TensorBoard, the user's, then
    Keras' own progress bar and History) read the val_knn_accuracy it writes into the logs."""
    found, monitor = [], None
    every = max(1, epochs // 10) if knn_every is None else knn_every
    if scorer and scorer.split and epochs and every:
        x_train, y_train, x_test, y_test = scorer.split
        monitor = KNNMonitor((x_train, y_train), (x_test, y_test), every_n_epochs=every,
                             k=scorer.k)
        found.append(monitor)
    if scorer and scorer.split is not None and scorer.model.encoder_output_rank == 2:
        found.append(CollapseMonitor(scorer.split[2][:COLLAPSE_EXAMPLES]))
    if logdir:
        found.append(keras.callbacks.TensorBoard(log_dir=setup.worker_dir(logdir)))
    return [*found, *extra], monitor


__all__ = ["PretrainResult", "build_encoder", "build_model", "parse_method_options", "pretrain"]
