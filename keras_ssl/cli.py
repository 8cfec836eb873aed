"""The `keras-ssl` command line: arguments parsed into `keras_ssl.pretrain` (and into
`keras_ssl.evaluate` for `evaluate` / `embed`), results printed. Nothing imports this module."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
examples:
  keras-ssl pretrain --method simclr --data digits --export saved_models/simclr
  keras-ssl pretrain --method simclr --data cifar10 --encoder resnet18 --epochs 100 --batch-size 512
  keras-ssl pretrain --method simclr --data ./photos --image-size 96 --minutes 30
  keras-ssl pretrain --method simclr --data digits --plots plots/simclr --logdir runs/simclr
  keras-ssl pretrain --method mlm --data pydoc --export saved_models/mlm
  keras-ssl pretrain --method next_token --data pydoc
  keras-ssl pretrain --method masked_steps --data ucr:GunPoint
  keras-ssl evaluate saved_models/simclr --data digits
  keras-ssl embed saved_models/simclr --data digits --out embeddings.npz
"""

DATA_HELP = (
    "data source: 'digits' (bundled with scikit-learn, offline), a .npz file with x (and y), a "
    "folder of class sub-folders of images, a folder of MNIST-style idx files, or a "
    "tensorflow-datasets name such as cifar10 (must already be prepared in --data-dir); "
    "'digits_vectors' or a .npz of vectors x [N, F] for vector methods; for text methods: 'pydoc' "
    "(Python's own help text, offline), a .txt file, a folder of .txt files or a "
    "tensorflow-datasets text data set such as imdb_reviews"
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a rejected argument in one line, as every other error is."""

    def error(self, message):
        self.exit(2, f"keras-ssl: error: {message} (see {self.prog} --help)\n")


def _number(kind):
    """An argparse type for finite numbers: nan and inf are refused at parse time."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        return value

    parse.__name__ = kind.__name__
    return parse


# (flags, keyword of keras_ssl.pretrain, argparse options): one row per pretrain option.
PRETRAIN_OPTIONS = [
    ("--method", "method", dict(default="simclr", metavar="NAME")),
    ("--data", "data", dict(default="digits", metavar="SOURCE", help=DATA_HELP)),
    ("--data-dir", "data_dir", dict(metavar="DIR", help="tensorflow-datasets data_dir")),
    ("--download", "download", dict(action="store_true",
                                    help="let tensorflow-datasets download and prepare the set")),
    ("--epochs", "epochs", dict(type=int, metavar="N", help="training epochs; 0 exports the "
                                "random-init encoder as a baseline (default: sized to the data)")),
    ("--minutes", "minutes", dict(type=_number(float), metavar="T", help="train for T minutes: "
                                  "a few steps are timed, the learning-rate schedule is fitted to "
                                  "the steps that fit, and training stops on time")),
    ("--batch-size", "batch_size", dict(type=int, metavar="B", help="global batch (default 256, "
                                        "32 for text; contrastive methods need at least 2)")),
    ("--learning-rate", "learning_rate", dict(type=_number(float), metavar="LR", help="peak "
                                              "AdamW learning rate after a warm-up, then cosine "
                                              "decay (default 2e-3)")),
    ("--encoder", "encoder", dict(metavar="NAME", help="backbone (default: convnet below 64 px, "
                                  "resnet18 from 64 px, mlp for vectors, transformer for text)")),
    ("--width", "width", dict(type=int, metavar="W", help="channels of the encoder's first stage")),
    ("--image-size", "image_size", dict(type=int, metavar="PX", help="resize every image to PX x "
                                        "PX when loading (needed for folders of mixed sizes)")),
    ("--vocab-size", "vocab_size", dict(type=int, default=5000, metavar="V",
                                        help="text: token ids, padding, OOV and [mask] included")),
    ("--sequence-length", "sequence_length", dict(type=int, default=64, metavar="L",
                                                  help="text: token ids per example")),
    ("--seed", "seed", dict(type=int, default=0, metavar="S", help="random seed (default 0)")),
    ("--max-examples", "max_examples", dict(type=int, metavar="N",
                                            help="train on at most N examples")),
    ("--eval-examples", "eval_examples", dict(type=int, default=10000, metavar="N", help="labelled "
                                              "examples in the kNN bank / probe training set")),
    ("--set", "method_options", dict(action="append", default=[], metavar="NAME=VALUE",
                                     help="a method argument over its default, e.g. "
                                     "--set temperature=0.2 (repeatable)")),
    ("--export", "export", dict(metavar="DIR", help="export the encoder to DIR/<next version>/")),
    ("--logdir", "logdir", dict(metavar="DIR", help="write TensorBoard logs to DIR")),
    ("--plots", "plots", dict(metavar="DIR", help="write PNG plots to DIR: training curves, t-SNE "
                              "before/after, augmented views, reconstructions")),
    ("--knn-every", "knn_every", dict(type=int, metavar="N", help="held-out kNN accuracy every N "
                                      "epochs (default: ~10 times per run; 0: never)")),
    ("--online-probe", "online_probe", dict(action="store_true", help="train a linear classifier "
                                            "on detached features while pretraining")),
    ("--checkpoint-dir", "checkpoint_dir", dict(metavar="DIR", help="save the full training state "
                                                "in DIR; the same command resumes after a crash")),
    ("--checkpoint-every", "checkpoint_every", dict(type=int, default=100, metavar="STEPS",
                                                    help="steps between checkpoints")),
    ("--verbose", "verbose", dict(type=int, default=1, choices=(0, 1, 2),
                                  help="0 silent, 1 progress bar, 2 one line per epoch")),
    ("--precision", "precision_policy", dict(default="auto", choices=(
        "auto", "float32", "mixed_float16", "mixed_bfloat16"), help="auto: float32 on CPU, "
        "mixed_float16 with a GPU (losses and augmentation stay float32)")),
    ("--xla", "xla", dict(default="auto", choices=("auto", "on", "off"), help="compile the step "
                          "with XLA; auto: on with a GPU and one device")),
    ("--strategy", "strategy", dict(default="none", choices=("none", "mirrored", "multi_worker"),
                                    help="mirrored: every GPU here; multi_worker: TF_CONFIG")),
    ("--sync-batchnorm", "sync_batchnorm", dict(action="store_true", help="batch-norm statistics "
                                                "over the global batch")),
    ("--cpu-devices", "cpu_devices", dict(type=int, metavar="N", help="split the CPU into N "
                                          "devices for --strategy mirrored")),
]


def _parser() -> argparse.ArgumentParser:
    from keras_ssl.methods import METHODS

    parser = _Parser(prog="keras-ssl", epilog=EXAMPLES,
                     description="Self-supervised pretraining of Keras encoders, exported for "
                     "TF Serving.", formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)
    pretrain = commands.add_parser(
        "pretrain", help="train an encoder without labels, score it before and after, export it",
        description="Pretrain an encoder with a self-supervised method, print the held-out kNN "
        "and linear-probe accuracy of the random-init and the trained encoder side by side, and "
        "export the encoder as a TF Serving SavedModel.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, dest, options in PRETRAIN_OPTIONS:
        if flag == "--method":
            options = {**options, "help": f"one of {', '.join(sorted(METHODS))} (default simclr)"}
        pretrain.add_argument(flag, dest=dest, **options)
    for name, verb in (("evaluate", "kNN and linear-probe accuracy of an exported encoder"),
                       ("embed", "write the embeddings (and labels) of a data set to a .npz")):
        sub = commands.add_parser(name, help=verb, description=verb[0].upper() + verb[1:] + ".",
                                  epilog=f"example:\n  keras-ssl {name} saved_models/simclr "
                                  "--data digits" + (" --out emb.npz" if name == "embed" else ""),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("path", help="a model folder (newest version) or a version folder")
        sub.add_argument("--data", default="digits", metavar="SOURCE", help=DATA_HELP)
        sub.add_argument("--data-dir", metavar="DIR", help="tensorflow-datasets data_dir")
        sub.add_argument("--eval-examples", type=int, default=10000, metavar="N",
                         help="labelled training examples used")
        if name == "embed":
            sub.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
    return parser


def pretrain_cmd(args) -> int:
    from keras_ssl.pipeline import parse_method_options, pretrain

    options = {dest: getattr(args, dest) for _, dest, _ in PRETRAIN_OPTIONS}
    options["method_options"] = parse_method_options(options["method_options"])
    result = pretrain(**options)
    print()
    print(result.table())
    if result.budget is not None and result.budget.stopped_at_step is not None:
        print(f"Stopped after {result.budget.stopped_at_step} steps ({result.budget.spent:.0f} s "
              f"of the {args.minutes:g}-minute budget).")
    print(f"Training time: {result.train_seconds:.1f} s")
    return 0


def _load_for(args):
    """The data of `evaluate` / `embed`, checked against the exported encoder first."""
    from keras_ssl import data as data_lib
    from keras_ssl.serving import check_fits, resolve_version

    resolve_version(args.path)  # a wrong path fails before the data are read
    data = data_lib.load(args.data, data_dir=args.data_dir)
    check_fits(args.path, data.input_shape, data.kind)
    return data


def _labelled(args):
    from keras_ssl.errors import KerasSSLError
    from keras_ssl.validate import check_int

    check_int(args.eval_examples, "--eval-examples", least=1)
    data = _load_for(args)
    split = data.evaluation_arrays(args.eval_examples)
    if split is None:
        raise KerasSSLError(f"{args.data!r} has no labelled held-out split to evaluate on.")
    return data, split


def evaluate_cmd(args) -> int:
    from keras_ssl import evaluate

    _, split = _labelled(args)
    print(f"{'encoder':<28}{'kNN accuracy':>14}{'linear probe':>14}")
    scores = evaluate.evaluate_encoder(args.path, *split)
    print(f"{str(args.path)[-28:]:<28}{scores['knn_accuracy']:>14.4f}"
          f"{scores['linear_probe_accuracy']:>14.4f}")
    return 0


def embed_cmd(args) -> int:
    from pathlib import Path

    import numpy as np

    from keras_ssl import evaluate
    from keras_ssl.errors import KerasSSLError

    out = Path(args.out)
    if not out.parent.is_dir():  # before computing anything
        raise KerasSSLError(f"--out {args.out!r}: the folder {str(out.parent)!r} does not exist.")
    data = _load_for(args)
    embed = evaluate.embedding_function(args.path)
    arrays = {"embeddings": evaluate.embed_with(embed, data.x_train)}
    if data.y_train is not None:
        arrays["labels"] = data.y_train
    if data.x_test is not None:
        arrays["test_embeddings"] = evaluate.embed_with(embed, data.x_test)
        if data.y_test is not None:
            arrays["test_labels"] = data.y_test
    np.savez_compressed(out, **arrays)
    print(f"Wrote {', '.join(f'{k} {v.shape}' for k, v in arrays.items())} to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help, or an argument argparse rejected (one line, above)
        return done.code
    from keras_ssl.errors import KerasSSLError

    command = {"pretrain": pretrain_cmd, "evaluate": evaluate_cmd, "embed": embed_cmd}
    try:
        return command[args.command](args)
    except KerasSSLError as err:
        print(f"keras-ssl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-ssl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
