"""The `keras-ssl` command line: pretrain an encoder, evaluate or embed with an exported one.

Nothing in keras_ssl imports this module; it only wires the library together for the shell.
"""

from __future__ import annotations

import argparse
import sys
import time

EXAMPLES = """\
examples:
  keras-ssl pretrain --method simclr --data digits --export saved_models/simclr
  keras-ssl pretrain --method simclr --data cifar10 --encoder resnet18 --epochs 100 --batch-size 512
  keras-ssl pretrain --method simclr --data ./photos --image-size 96 --epochs 0 --export saved_models/baseline
  keras-ssl pretrain --method simclr --data digits --plots plots/simclr --logdir runs/simclr
  keras-ssl pretrain --method mlm --data pydoc --export saved_models/mlm
  keras-ssl pretrain --method simclr --data digits_vectors --export saved_models/simclr_vectors
  keras-ssl evaluate saved_models/simclr --data digits
  keras-ssl embed saved_models/simclr --data digits --out embeddings.npz
"""

DATA_HELP = (
    "data source: 'digits' (bundled with scikit-learn, offline), a .npz file with x (and y), a "
    "folder of class sub-folders of images, a folder of MNIST-style idx files, or a "
    "tensorflow-datasets name such as cifar10 (must already be prepared in --data-dir); "
    "'digits_vectors' or a .npz of vectors x [N, F] for vector methods; for --method mlm: 'pydoc' "
    "(Python's own help text, offline), a .txt file, a folder of .txt files or a "
    "tensorflow-datasets text data set such as imdb_reviews"
)


def _parser() -> argparse.ArgumentParser:
    from keras_ssl.encoders import ENCODERS, names
    TEXT_ENCODERS = names("text")
    from keras_ssl.methods import METHODS

    parser = argparse.ArgumentParser(
        prog="keras-ssl",
        description="Self-supervised pretraining of Keras encoders, exported for TF Serving.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    pretrain = commands.add_parser(
        "pretrain",
        help="train an encoder without labels, report kNN / linear-probe accuracy, export it",
        description=(
            "Pretrain an encoder with a self-supervised method on unlabelled data, print the kNN "
            "and linear-probe accuracy of the random-init and the trained encoder on held-out "
            "labelled data side by side, and export the encoder as a TF Serving SavedModel."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  keras-ssl pretrain --method simclr --data digits --epochs 30 "
        "--export saved_models/simclr",
    )
    pretrain.add_argument("--method", default="simclr", metavar="NAME",
                          help=f"self-supervised method: {', '.join(sorted(METHODS))} (default simclr)")
    pretrain.add_argument("--data", default="digits", metavar="SOURCE", help=DATA_HELP)
    pretrain.add_argument("--data-dir", default=None, metavar="DIR",
                          help="tensorflow-datasets data_dir for tfds names (default ~/tensorflow_datasets)")
    pretrain.add_argument("--download", action="store_true",
                          help="let tensorflow-datasets download and prepare a tfds source first")
    pretrain.add_argument("--epochs", type=int, default=None, metavar="N",
                          help="training epochs; 0 exports the random-init encoder as a baseline "
                          "(default: sized to the data, 60 on digits)")
    pretrain.add_argument("--minutes", type=float, default=None, metavar="T",
                          help="train for T minutes instead of a number of epochs: a few steps are "
                          "timed first, the learning-rate schedule is fitted to the steps that "
                          "fit, and training stops on time (evaluations between epochs do not "
                          "count)")
    pretrain.add_argument("--batch-size", type=int, default=None, metavar="B",
                          help="examples per step (default 256, 32 for text; contrastive methods "
                          "need at least 2)")
    pretrain.add_argument("--learning-rate", type=float, default=None, metavar="LR",
                          help="peak AdamW learning rate, reached after a warm-up, then cosine decay "
                          "(default 2e-3)")
    pretrain.add_argument("--encoder", default=None, metavar="NAME",
                          help=f"backbone: {', '.join(ENCODERS)} (default: convnet below 64 px, "
                          "resnet18 from 64 px, mlp for vectors); for text: "
                          f"{', '.join(TEXT_ENCODERS)} (default transformer)")
    pretrain.add_argument("--width", type=int, default=None, metavar="W",
                          help="channels of the encoder's first stage (default 32 convnet, 64 resnet)")
    pretrain.add_argument("--image-size", type=int, default=None, metavar="PX",
                          help="side of the square views the encoder sees (default: the data's size)")
    pretrain.add_argument("--vocab-size", type=int, default=5000, metavar="V",
                          help="text: the most token ids, padding, OOV and [mask] included "
                          "(default 5000)")
    pretrain.add_argument("--sequence-length", type=int, default=64, metavar="L",
                          help="text: token ids per example (default 64)")
    pretrain.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    pretrain.add_argument("--max-examples", type=int, default=None, metavar="N",
                          help="train on at most N examples (quick runs)")
    pretrain.add_argument("--eval-examples", type=int, default=10000, metavar="N",
                          help="labelled examples used as the kNN memory bank / probe training set "
                          "(default 10000)")
    pretrain.add_argument("--export", default=None, metavar="DIR",
                          help="export the encoder to DIR/<next version>/ (e.g. saved_models/simclr)")
    pretrain.add_argument("--logdir", default=None, metavar="DIR",
                          help="write TensorBoard logs (losses, metrics, val_knn_accuracy) to DIR")
    pretrain.add_argument("--plots", default=None, metavar="DIR",
                          help="write PNG plots to DIR: training curves, t-SNE of held-out "
                          "embeddings before and after training, augmented views, reconstructions")
    pretrain.add_argument("--knn-every", type=int, default=None, metavar="N",
                          help="held-out kNN accuracy every N epochs during training, shown as "
                          "val_knn_accuracy (default: about 10 times per run; 0: never)")
    pretrain.add_argument("--online-probe", action="store_true",
                          help="train a linear classifier on detached features during "
                          "pretraining and report probe_accuracy (needs labelled data)")
    pretrain.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                          help="save the full training state in DIR (every --checkpoint-every "
                          "steps and each epoch); after a crash, the same command resumes where "
                          "it stopped and ends with the same weights")
    pretrain.add_argument("--checkpoint-every", type=int, default=100, metavar="STEPS",
                          help="steps between checkpoints, besides one per epoch (default 100)")
    pretrain.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                          help="Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch")
    speed = pretrain.add_argument_group(
        "speed and scale", "see docs/performance.md and docs/distributed.md")
    speed.add_argument("--precision", default="auto",
                       choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
                       help="numeric precision of the encoder and heads (losses and augmentation "
                       "stay float32); auto: float32 on CPU, mixed_float16 with a GPU")
    speed.add_argument("--xla", default="auto", choices=("auto", "on", "off"),
                       help="compile the whole training step with XLA (jit_compile); auto: on "
                       "with a GPU and no strategy, off on CPU (there XLA's convolutions made "
                       "training steps 2-3x slower than TensorFlow's oneDNN kernels)")
    speed.add_argument("--strategy", default="none", choices=("none", "mirrored", "multi_worker"),
                       help="none: one device; mirrored: every GPU of this machine (or the "
                       "--cpu-devices); multi_worker: the machines in TF_CONFIG, one process each. "
                       "--batch-size is the global batch, split across replicas")
    speed.add_argument("--sync-batchnorm", action="store_true",
                       help="batch-norm statistics over the global batch (all-reduced across "
                       "replicas) instead of each replica's share")
    speed.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                       help="split the CPU into N logical devices, one replica each under "
                       "--strategy mirrored (to try multi-device training without GPUs)")

    evaluate = commands.add_parser(
        "evaluate", help="kNN and linear-probe accuracy of an exported encoder",
        description="Embed a labelled data set with an exported encoder and report kNN (k=200, "
        "cosine, t=0.1) and linear-probe accuracy on its held-out split.",
        epilog="example:\n  keras-ssl evaluate saved_models/simclr --data digits",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("path", help="a model folder (newest version is used) or a version folder")
    evaluate.add_argument("--data", default="digits", metavar="SOURCE", help=DATA_HELP)
    evaluate.add_argument("--data-dir", default=None, metavar="DIR", help="tensorflow-datasets data_dir")
    evaluate.add_argument("--eval-examples", type=int, default=10000, metavar="N",
                          help="labelled training examples used (default 10000)")

    embed = commands.add_parser(
        "embed", help="write the embeddings (and labels) of a data set to a .npz file",
        epilog="example:\n  keras-ssl embed saved_models/simclr --data digits --out emb.npz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    embed.add_argument("path", help="a model folder (newest version is used) or a version folder")
    embed.add_argument("--data", default="digits", metavar="SOURCE", help=DATA_HELP)
    embed.add_argument("--data-dir", default=None, metavar="DIR", help="tensorflow-datasets data_dir")
    embed.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
    return parser


def _default_epochs(num_examples: int) -> int:
    """About 1500 steps-worth of images: a few minutes on 2 CPU cores for small encoders."""
    return int(min(100, max(5, round(90_000 / max(num_examples, 1)))))


def _print_table(rows: list[tuple[str, dict]]) -> None:
    print(f"\n{'encoder':<28}{'kNN accuracy':>14}{'linear probe':>14}")
    for label, scores in rows:
        print(f"{label:<28}{scores['knn_accuracy']:>14.4f}{scores['linear_probe_accuracy']:>14.4f}")


def _evaluation_split(data, eval_examples: int):
    if not data.has_labels or data.x_test is None:
        return None
    n = min(eval_examples, len(data.x_train))
    return data.x_train[:n], data.y_train[:n], data.x_test, data.y_test


def _check_pretrain_args(args, cls) -> None:
    from keras_ssl.errors import KerasSSLError

    if args.epochs is not None and args.epochs < 0:
        raise KerasSSLError(f"--epochs must be 0 or more, got {args.epochs}.")
    if args.minutes is not None:
        if args.minutes <= 0:
            raise KerasSSLError(f"--minutes must be positive, got {args.minutes}.")
        if args.epochs is not None:
            raise KerasSSLError("Give --epochs or --minutes, not both.")
        if args.checkpoint_dir:
            raise KerasSSLError(
                "--minutes plans the run from measured step times, which differ when a run "
                "resumes; with --checkpoint-dir give --epochs instead."
            )
        if getattr(args, "strategy", "none") == "multi_worker":
            raise KerasSSLError(
                "--minutes plans and stops the run by each worker's own clock, so workers could "
                "stop at different steps and wait for each other forever; with --strategy "
                "multi_worker give --epochs instead."
            )
    if args.batch_size < max(2, getattr(cls, "min_batch_size", 1)):
        raise KerasSSLError(
            f"--batch-size {args.batch_size} is too small: {cls.__name__} needs at least "
            f"{max(2, cls.min_batch_size)} examples per batch (contrastive negatives come from the "
            "batch); use 64 or more."
        )
    if args.learning_rate <= 0:
        raise KerasSSLError(f"--learning-rate must be positive, got {args.learning_rate}.")
    if args.knn_every is not None and args.knn_every < 0:
        raise KerasSSLError(f"--knn-every must be 0 (never) or more, got {args.knn_every}.")
    if args.logdir:
        import importlib.util

        # TensorFlow no longer brings TensorBoard, and tf.summary fails mid-fit without it.
        if importlib.util.find_spec("tensorboard") is None:
            raise KerasSSLError(
                "--logdir writes TensorBoard logs, but TensorBoard is not installed: "
                "pip install 'keras-ssl[tensorboard]' (or pip install tensorboard)."
            )
    if args.image_size is not None and args.image_size < 8:
        raise KerasSSLError(f"--image-size must be at least 8 pixels, got {args.image_size}.")
    if args.checkpoint_every < 1:
        raise KerasSSLError(f"--checkpoint-every must be 1 or more steps, got {args.checkpoint_every}.")
    if args.checkpoint_dir:
        from pathlib import Path

        if Path(args.checkpoint_dir).is_file():
            raise KerasSSLError(
                f"--checkpoint-dir {args.checkpoint_dir!r} is an existing file; give a folder."
            )
    if args.export:
        from pathlib import Path

        if Path(args.export).is_file():
            raise KerasSSLError(
                f"--export {args.export!r} is an existing file; give a folder (versions are "
                "written inside it)."
            )
        from keras_ssl.export import check_export_path

        check_export_path(args.export)  # before training, not after it


def pretrain(args) -> int:
    import keras

    from keras_ssl import checkpoint, defaults, encoders, evaluate, training
    from keras_ssl import data as data_lib
    from keras_ssl.errors import KerasSSLError
    from keras_ssl.export import export_encoder
    from keras_ssl.methods import get_method
    from keras_ssl.methods.base import MIN_IMAGE_SIZE

    cls, preset = get_method(args.method)
    if args.batch_size is None:  # the default global batch must split over the replicas too
        args.batch_size = TEXT_BATCH_SIZE if "text" in cls.input_kinds else defaults.BATCH_SIZE
        _check_global_batch(args.batch_size, getattr(args, "replicas", 1))
    if args.learning_rate is None:
        args.learning_rate = defaults.LEARNING_RATE
    _check_pretrain_args(args, cls)
    keras.utils.set_random_seed(args.seed)
    if "text" in cls.input_kinds:
        return _pretrain_text(args, cls, preset)
    from keras_ssl.data.text import is_text_source

    if is_text_source(args.data):
        raise KerasSSLError(
            f"{args.data!r} holds text, but --method {args.method} learns from "
            f"{' or '.join(cls.input_kinds)}. Use --method mlm for text."
        )
    data = data_lib.load(args.data, seed=args.seed, data_dir=args.data_dir,
                         max_examples=args.max_examples, download=args.download)
    if data.kind not in cls.input_kinds:
        raise KerasSSLError(
            f"--method {args.method} learns from {' or '.join(cls.input_kinds)}, but {args.data!r} "
            f"holds {data.kind}. Choose a method that supports {data.kind}."
        )
    if cls.needs_labels and not data.has_labels:
        raise KerasSSLError(
            f"--method {args.method} needs class labels, but {args.data!r} has none. Use a labelled "
            "source or a method that needs no labels (e.g. simclr)."
        )
    input_shape = data.input_shape
    if data.kind == "images" and min(input_shape[:2]) < MIN_IMAGE_SIZE:
        raise KerasSSLError(
            f"The images of {args.data!r} are {input_shape[0]}x{input_shape[1]} px, smaller than "
            f"the {MIN_IMAGE_SIZE} px minimum crop. Upsample them before training."
        )
    if args.image_size and data.kind == "images":
        input_shape = (args.image_size, args.image_size, input_shape[-1])
    if args.online_probe and not data.has_labels:
        raise KerasSSLError(
            f"--online-probe trains a classifier on labels, but {args.data!r} has none. Drop "
            "--online-probe or use a labelled source."
        )
    probe = {"probe_classes": data.num_classes} if args.online_probe else {}
    epochs = _default_epochs(len(data.x_train)) if args.epochs is None else args.epochs
    labels = data.y_train if cls.needs_labels or args.online_probe else None
    if args.encoder:  # --width then sizes it, or the encoder's own default does
        name, width = args.encoder, args.width
    else:
        chosen = defaults.choose(input_shape)
        name, width = chosen.encoder, args.width or chosen.width
    with _strategy_scope(args):  # variables of the model and the optimizer on every replica
        encoder = encoders.build(name, input_shape, width=width)
        # The model first: its checks (e.g. images too small for a puzzle) say more than the
        # batch-size check below when both fail.
        model = _sync_batchnorm(cls(encoder, seed=args.seed, **probe, **preset), args)
        # Each epoch's batches depend only on (seed, epoch): a resumed run sees the same batches.
        steps = data_lib.steps_per_epoch(len(data.x_train), args.batch_size)
        model.compile(optimizer=training.default_optimizer(args.learning_rate, steps * epochs),
                      jit_compile=getattr(args, "jit_compile", "auto"))
    budget = []
    if args.minutes:
        budget = [training.plan_budget(model, data.x_train, labels,
                                       batch_size=args.batch_size, minutes=args.minutes)]
        epochs = budget[0].epochs

    split = _evaluation_split(data, args.eval_examples)
    rows = []
    if split:
        rows.append(("random init", evaluate.evaluate_encoder(model, *split)))
    print(
        f"Pretraining {encoder.name} ({encoder.count_params():,} parameters) with {cls.__name__} "
        f"on {len(data.x_train):,} {data.name} examples: {epochs} epochs of {steps} steps"
        + (f" (what fits in {args.minutes:g} minutes)." if budget else ".")
    )
    if args.plots and split:
        before = evaluate.embed(model, split[2][:PLOT_POINTS])
    callbacks, monitor = _callbacks(args, split, epochs)
    start = time.perf_counter()
    history = None
    if epochs:
        history = checkpoint.fit_resumable(
            model, data.x_train, labels, batch_size=args.batch_size, epochs=epochs,
            seed=args.seed, checkpoint_dir=_worker_dir(args, args.checkpoint_dir),
            save_every_steps=args.checkpoint_every, callbacks=[*budget, *callbacks],
            verbose=args.verbose,
        )
    seconds = time.perf_counter() - start
    if budget and budget[0].stopped_at_step is not None:
        print(f"Stopped after {budget[0].stopped_at_step} steps ({budget[0].spent:.0f} s of the "
              f"{args.minutes:g}-minute budget).")
    if budget and history is not None:  # the epochs that ran, not the ones planned
        epochs = len(history.history.get("loss", [])) or epochs
    if split:
        rows.append((f"trained ({epochs} epochs)", evaluate.evaluate_encoder(model, *split)))
        _print_table(rows)
    else:
        print("No labelled held-out data: skipping kNN / linear-probe evaluation.")
    print(f"Training time: {seconds:.1f} s")
    if args.plots and _is_chief(args):
        knn = {0: rows[0][1]["knn_accuracy"], **monitor.scores} if monitor else {}
        _write_plots(args.plots, model, data, split, history, knn,
                     before if split else None)
    if args.export and _is_chief(args):
        version = export_encoder(model, args.export)
        print(f"Exported encoder to {version} (serving_default: "
              f"{'images uint8' if data.kind == 'images' else 'features float32'} -> embeddings)")
    return 0


# Text (--method mlm) on a CPU: a 64-wide Transformer in batches of 32 gets past predicting the
# most frequent word within a few thousand steps; the held-out text is masked several times over,
# for an accuracy over more masked tokens.
TEXT_BATCH_SIZE = 32
TEXT_WIDTH = 64
TEXT_STEPS = 3500
TEXT_EVAL_PASSES = 4


def _default_text_epochs(steps_per_epoch: int) -> int:
    """About TEXT_STEPS steps: 100 epochs of the pydoc corpus, a few minutes on 2 CPU cores."""
    return int(min(200, max(1, round(TEXT_STEPS / max(steps_per_epoch, 1)))))


def _most_frequent_token_accuracy(data) -> float:
    """Masked-token accuracy of always guessing the training text's most frequent word."""
    import numpy as np

    train = data.x_train[data.x_train >= data.first_token_id]
    held_out = data.x_test[data.x_test >= data.first_token_id]
    return float(np.mean(held_out == np.bincount(train).argmax())) if held_out.size else 0.0


def _pretrain_text(args, cls, preset) -> int:
    """--method mlm: text -> token ids; masked-token accuracy on held-out text before and after."""
    import keras

    from keras_ssl import checkpoint, encoders, training
    from keras_ssl import data as data_lib
    from keras_ssl.data import text
    from keras_ssl.errors import KerasSSLError
    from keras_ssl.export import export_encoder

    if args.online_probe:
        raise KerasSSLError(
            "--online-probe trains a classifier on class labels, and text has none; drop it for "
            f"--method {args.method}."
        )
    if args.image_size:
        raise KerasSSLError("--image-size applies to images; text is sized by --sequence-length.")
    data = text.load(args.data, vocab_size=args.vocab_size, sequence_length=args.sequence_length,
                     seed=args.seed, max_examples=args.max_examples, data_dir=args.data_dir,
                     download=args.download)
    steps = data_lib.steps_per_epoch(len(data.x_train), args.batch_size)
    epochs = _default_text_epochs(steps) if args.epochs is None else args.epochs
    with _strategy_scope(args):  # variables of the model and the optimizer on every replica
        encoder = encoders.build(args.encoder or "transformer", (data.sequence_length,), kind="text",
                                      vocab_size=data.vocab_size, width=args.width or TEXT_WIDTH)
        model = cls(encoder, vocab_size=data.vocab_size, mask_token_id=data.mask_token_id,
                    first_token_id=data.first_token_id, vectorizer=data.vectorizer,
                    seed=args.seed, **preset)
        model.compile(optimizer=training.default_optimizer(args.learning_rate, steps * epochs),
                      jit_compile=getattr(args, "jit_compile", "auto"))
    budget = []
    if args.minutes:
        budget = [training.plan_budget(model, data.x_train, batch_size=args.batch_size,
                                       minutes=args.minutes)]
        epochs = budget[0].epochs

    def held_out_scores():
        passes = data.test_dataset(256).repeat(TEXT_EVAL_PASSES)
        return model.evaluate(passes, verbose=0, return_dict=True)

    rows = [("random init", held_out_scores())] if data.x_test is not None else []
    print(
        f"Pretraining {encoder.name} ({encoder.count_params():,} parameters) with {cls.__name__} "
        f"on {len(data.x_train):,} {data.name} examples of up to {data.sequence_length} tokens "
        f"(vocabulary {data.vocab_size:,}): {epochs} epochs of {steps} steps."
    )
    callbacks = list(budget)
    if args.logdir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=_worker_dir(args, args.logdir)))
    start = time.perf_counter()
    history = None
    if epochs:
        history = checkpoint.fit_resumable(
            model, data.x_train, None, batch_size=args.batch_size, epochs=epochs,
            seed=args.seed, checkpoint_dir=_worker_dir(args, args.checkpoint_dir),
            save_every_steps=args.checkpoint_every, callbacks=callbacks, verbose=args.verbose,
        )
    seconds = time.perf_counter() - start
    if budget and history is not None:  # the epochs that ran, not the ones planned
        epochs = len(history.history.get("loss", [])) or epochs
    if rows:
        rows.append((f"trained ({epochs} epochs)", held_out_scores()))
        print(f"\nHeld-out text: {len(data.x_test):,} examples, each masked "
              f"{TEXT_EVAL_PASSES} times")
        print(f"{'model':<28}{'masked-token accuracy':>23}{'loss':>10}")
        print(f"{'most frequent token':<28}{_most_frequent_token_accuracy(data):>23.4f}{'-':>10}")
        for label, scores in rows:
            print(f"{label:<28}{scores['masked_token_accuracy']:>23.4f}{scores['loss']:>10.3f}")
    else:
        print("No held-out text: skipping the masked-token evaluation.")
    print(f"Training time: {seconds:.1f} s")
    if args.plots and history is not None and history.history and _is_chief(args):
        from pathlib import Path

        from keras_ssl import plot

        path = plot.plot_history(history, Path(args.plots) / "history.png",
                                 title=f"{cls.__name__} / {encoder.name} on {data.name}")
        print(f"Wrote {path}")
    if args.export and _is_chief(args):
        version = export_encoder(model, args.export)
        print(f"Exported encoder to {version} (serving_default: text string -> embeddings)")
    return 0


PLOT_POINTS = 2000


def _distribution(args):
    """Set the precision and build the tf.distribute strategy of a pretrain run; print them.

    Also decides `args.jit_compile`. Runs before anything else touches TensorFlow.
    """
    from keras_ssl import distribute, precision
    from keras_ssl.errors import KerasSSLError

    if args.cpu_devices is not None:
        if args.strategy != "mirrored":
            raise KerasSSLError("--cpu-devices only applies to --strategy mirrored.")
        distribute.use_logical_cpus(args.cpu_devices)
    strategy = distribute.make_strategy(args.strategy)
    policy = precision.set_precision(args.precision)
    replicas = args.replicas = strategy.num_replicas_in_sync
    if args.batch_size is not None:
        _check_global_batch(args.batch_size, replicas)
    import tensorflow as tf

    on_cpu = not tf.config.list_physical_devices("GPU")
    if args.xla == "on" and replicas > 1 and on_cpu:
        raise KerasSSLError(
            "--xla on does not work under a strategy on CPU: XLA fails to compile the "
            "cross-replica collectives there (TensorFlow 2.21). Use --xla off (or auto)."
        )
    # On CPU, TensorFlow's own (oneDNN) convolutions beat XLA's: see docs/performance.md.
    args.jit_compile = args.xla == "on" or (
        args.xla == "auto" and args.strategy == "none" and not on_cpu)
    workers = distribute.num_workers(strategy)
    # Read here, from the strategy: outside its scope every process looks like worker 0.
    args.worker = distribute.worker_index(strategy)
    where = f", worker {args.worker} of {workers}" if workers > 1 else ""
    print(f"Precision {policy}, XLA {'on' if args.jit_compile else 'off'}, strategy "
          f"{args.strategy} ({replicas} replica{'s' if replicas > 1 else ''}{where})"
          + (", synchronised batch norm" if args.sync_batchnorm else ""))
    return strategy


def _check_global_batch(batch_size: int, replicas: int) -> None:
    from keras_ssl.errors import KerasSSLError

    if batch_size % replicas:
        raise KerasSSLError(
            f"--batch-size {batch_size} (the global batch) does not split evenly over "
            f"{replicas} replicas; use a multiple of {replicas}."
        )


def _strategy_scope(args):
    """The scope to build and compile models in (a no-op without a strategy)."""
    import contextlib

    scope = getattr(args, "strategy_scope", None)
    return scope() if scope is not None else contextlib.nullcontext()


def _sync_batchnorm(model, args):
    if args.sync_batchnorm:
        from keras_ssl.distribute import sync_batchnorm

        sync_batchnorm(model)
    return model


def _is_chief(args) -> bool:
    """Whether this process writes the shared outputs (exports, plots): worker 0, or alone."""
    return getattr(args, "worker", 0) == 0


def _worker_dir(args, directory):
    """`directory` for the chief; `directory/worker-<i>` for the other workers. Every worker saves
    checkpoints (the save reads variables collectively) and TensorBoard logs; the others keep
    theirs in a sub-folder of their own."""
    if directory is None or _is_chief(args):
        return directory
    from pathlib import Path

    return str(Path(directory) / f"worker-{args.worker}")


def _callbacks(args, split, epochs):
    """The fit callbacks, KNNMonitor first: the ones after it (TensorBoard, then Keras' own
    progress bar and History) read the val_knn_accuracy it writes into the epoch's logs."""
    import keras

    from keras_ssl.callbacks import KNNMonitor

    callbacks, monitor = [], None
    every = max(1, epochs // 10) if args.knn_every is None else args.knn_every
    if split and epochs and every:
        x_train, y_train, x_test, y_test = split
        monitor = KNNMonitor((x_train, y_train), (x_test, y_test), every_n_epochs=every)
        callbacks.append(monitor)
    if args.logdir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=_worker_dir(args, args.logdir)))
    return callbacks, monitor


def _write_plots(folder, model, data, split, history, knn, before) -> None:
    """Training curves, t-SNE maps before/after, augmented views and reconstructions as PNGs."""
    from pathlib import Path

    from keras_ssl import evaluate, plot

    folder = Path(folder)
    name = f"{type(model).__name__} / {model.encoder.name}"
    written = []
    if history is not None and history.history:
        written.append(plot.plot_history(history, folder / "history.png", knn=knn,
                                         title=f"{name} on {data.name}"))
    if split:
        labels = split[3][:PLOT_POINTS]
        for file, embeddings, when in (
            ("tsne_random_init.png", before, "random init"),
            ("tsne.png", evaluate.embed(model, split[2][:PLOT_POINTS]), "trained"),
        ):
            written.append(plot.plot_embeddings_tsne(
                embeddings, labels, folder / file, class_names=data.class_names,
                title=f"{name} ({when}): t-SNE of {len(labels)} held-out {data.name} examples"))
    images = data.x_test if data.x_test is not None else data.x_train
    if data.kind == "images" and getattr(model, "augmenter", None) is not None:
        written.append(plot.plot_augmented_views(model.augmenter, images,
                                                 folder / "augmented_views.png"))
    if data.kind == "images" and hasattr(model, "reconstruct") and hasattr(
        plot, "save_reconstructions"
    ):
        written.append(plot.save_reconstructions(model, images, folder / "reconstructions.png"))
    print(f"Wrote {', '.join(str(p) for p in written)}")


def evaluate_cmd(args) -> int:
    from keras_ssl import data as data_lib
    from keras_ssl import evaluate
    from keras_ssl.errors import KerasSSLError

    data = data_lib.load(args.data, data_dir=args.data_dir)
    split = _evaluation_split(data, args.eval_examples)
    if split is None:
        raise KerasSSLError(f"{args.data!r} has no labelled held-out split to evaluate on.")
    _print_table([(str(args.path)[-28:], evaluate.evaluate_encoder(args.path, *split))])
    return 0


def embed_cmd(args) -> int:
    import numpy as np

    from keras_ssl import data as data_lib
    from keras_ssl import evaluate

    data = data_lib.load(args.data, data_dir=args.data_dir)
    arrays = {"embeddings": evaluate.embed(args.path, data.x_train)}
    if data.y_train is not None:
        arrays["labels"] = data.y_train
    if data.x_test is not None:
        arrays["test_embeddings"] = evaluate.embed(args.path, data.x_test)
        if data.y_test is not None:
            arrays["test_labels"] = data.y_test
    np.savez_compressed(args.out, **arrays)
    print(f"Wrote {', '.join(f'{k} {v.shape}' for k, v in arrays.items())} to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from keras_ssl.errors import KerasSSLError

    command = {"pretrain": pretrain, "evaluate": evaluate_cmd, "embed": embed_cmd}[args.command]
    try:
        if args.command == "pretrain":
            # Before anything else touches TensorFlow: a multi-worker strategy must be created
            # first. Models are built and compiled inside its scope (args.strategy_scope).
            args.strategy_scope = _distribution(args).scope
        return command(args)
    except KerasSSLError as err:
        print(f"keras-ssl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-ssl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
