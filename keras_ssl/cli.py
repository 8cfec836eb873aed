"""The `keras-ssl` command: arguments parsed into `keras_ssl.pretrain`, `data.prepare` and
`keras_ssl.evaluate`, results printed. Nothing imports this module."""

from __future__ import annotations

import argparse
import math
import sys

EXAMPLES = """\
examples:
  keras-ssl pretrain --method simclr --data digits --export saved_models/simclr
  keras-ssl pretrain --method simclr --data ./photos --image-size 96 --minutes 30
  keras-ssl pretrain --method simclr --data digits --plots plots/simclr --logdir runs/simclr
  keras-ssl pretrain --method next_token --data pydoc --export saved_models/next_token
  keras-ssl pretrain --method masked_steps --data ucr:GunPoint
  keras-ssl evaluate saved_models/simclr --data digits
  keras-ssl embed saved_models/simclr --data digits --out embeddings.npz
"""

DATA_HELP = (
    "'digits' (scikit-learn's, offline), a .npz with x (and y), a folder of (class folders of) "
    "images, a glob, TFRecord shards (keras-ssl prepare), a folder of idx files, a prepared "
    "tensorflow-datasets name (cifar10); 'digits_vectors'; series: a .npz with 'series', a .csv, "
    "ucr:GunPoint; text: 'pydoc', a .txt file or folder, imdb_reviews")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a rejected argument in one line, as every other error is."""

    def error(self, message):
        self.exit(2, f"keras-ssl: error: {message} (see {self.prog} --help)\n")


def finite(text: str) -> float:
    """A finite number: nan and inf are refused when the arguments are parsed."""
    value = float(text)  # not a number: argparse says "invalid finite value"
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _option(help, **options):
    return {"help": help, **options}


# (flag, keyword of keras_ssl.pretrain, argparse options): one row per pretrain option.
PRETRAIN_OPTIONS = [
    ("--method", "method", dict(default="simclr", metavar="NAME")),
    ("--data", "data", _option(DATA_HELP, default="digits", metavar="SOURCE")),
    ("--data-dir", "data_dir", _option("tensorflow-datasets data_dir", metavar="DIR")),
    ("--download", "download", _option("let tfds download the set", action="store_true")),
    ("--epochs", "epochs", _option("training epochs; 0 exports the random-init encoder "
                                   "(default: sized to the data)", type=int, metavar="N")),
    ("--minutes", "minutes", _option("train for T minutes: the learning-rate schedule is fitted "
                                     "to the steps that fit", type=finite, metavar="T")),
    ("--batch-size", "batch_size", _option("global batch (256; text 32)", type=int, metavar="B")),
    ("--learning-rate", "learning_rate", _option("peak AdamW learning rate (2e-3), warm-up, "
                                                 "cosine", type=finite, metavar="LR")),
    ("--encoder", "encoder", _option("backbone (default: by the data's shape)", metavar="NAME")),
    ("--width", "width", _option("channels of the encoder's first stage", type=int, metavar="W")),
    ("--encoder-weights", "encoder_weights", _option("weights file or preset folder", metavar="P")),
    ("--image-size", "image_size", _option("resize images to PX x PX when loading", type=int,
                                           metavar="PX")),
    ("--stream", "stream", _option("read image files batch by batch (auto: over 1 GiB decoded)",
                                   type=lambda v: {"auto": None, "on": True, "off": False}[v],
                                   metavar="auto|on|off")),
    ("--cache", "cache", _option("cache decoded streamed images in memory (or FILE)", nargs="?",
                                 const=True, default=False, metavar="FILE")),
    ("--on-bad-file", "on_bad_file", _option("an unreadable file in a stream: skip it (counted) "
                                             "or stop", default="skip", choices=("skip", "raise"))),
    ("--vocab-size", "vocab_size", _option("text: token ids", type=int, default=5000, metavar="V")),
    ("--sequence-length", "sequence_length", _option("text: token ids per example", type=int,
                                                     default=64, metavar="L")),
    ("--seed", "seed", _option("random seed (default 0)", type=int, default=0, metavar="S")),
    ("--max-examples", "max_examples", _option("at most N examples", type=int, metavar="N")),
    ("--eval-examples", "eval_examples", _option("labelled examples in the kNN bank", type=int,
                                                 default=10000, metavar="N")),
    ("--set", "method_options", _option("a method argument, e.g. --set temperature=0.2",
                                        action="append", default=[], metavar="NAME=VALUE")),
    ("--export", "export", _option("export the encoder to DIR/<next version>/", metavar="DIR")),
    ("--logdir", "logdir", _option("write TensorBoard logs to DIR", metavar="DIR")),
    ("--plots", "plots", _option("write PNG plots to DIR: curves, t-SNE before/after, views, "
                                 "reconstructions", metavar="DIR")),
    ("--knn-every", "knn_every", _option("held-out kNN every N epochs (default ~10 times; 0 "
                                         "never)", type=int, metavar="N")),
    ("--online-probe", "online_probe", _option("a linear probe trained alongside",
                                               action="store_true")),
    ("--checkpoint-dir", "checkpoint_dir", _option("save the full training state in DIR; the "
                                                   "same command resumes", metavar="DIR")),
    ("--checkpoint-every", "checkpoint_every", _option("steps between checkpoints", type=int,
                                                       default=100, metavar="STEPS")),
    ("--verbose", "verbose", _option("0 silent, 1 bar, 2 a line an epoch", type=int, default=1)),
    ("--precision", "precision_policy", _option(
        "auto: float32 on CPU, mixed_float16 on GPU (mixed_bfloat16: bf16 CPUs)", default="auto",
        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"))),
    ("--xla", "xla", _option("XLA (auto: with one GPU)", default="auto", choices=("auto", "on", "off"))),
    ("--strategy", "strategy", _option("mirrored: every GPU here; multi_worker: TF_CONFIG",
                                       default="none", choices=("none", "mirrored",
                                                                "multi_worker"))),
    ("--sync-batchnorm", "sync_batchnorm", _option("global batch-norm", action="store_true")),
    ("--cpu-devices", "cpu_devices", _option("N CPU devices (mirrored)", type=int, metavar="N")),
]


SHARED_FLAGS = ("--data", "--data-dir", "--eval-examples")  # evaluate and embed take them too


def _parser() -> argparse.ArgumentParser:
    from keras_ssl.methods import METHODS

    parser = _Parser(prog="keras-ssl", epilog=EXAMPLES, description="Self-supervised "
                     "pretraining of Keras encoders, exported for TF Serving.",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)
    what = "train an encoder without labels, score it before and after, export it"
    pretrain = commands.add_parser("pretrain", help=what, description=what[0].upper() + what[1:],
                                   epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, dest, options in PRETRAIN_OPTIONS:
        if flag == "--method":
            options = {**options, "help": f"one of {', '.join(sorted(METHODS))} (default simclr)"}
        pretrain.add_argument(flag, dest=dest, **options)
    prepare = commands.add_parser(
        "prepare", help="write images as sharded TFRecords (read fastest, shard across workers)",
        description="Write the images of SOURCE (a folder, a glob) as sharded TFRecords in OUT; "
        "train on them with --data OUT.", epilog="example:\n  keras-ssl prepare ./photos "
        "data/photos --image-size 96", formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, options in (("source", dict(help="a folder of (class folders of) images, a glob")),
                          ("out", dict(help="the output folder")),
                          ("--shards", dict(type=int, metavar="N", help="training shards")),
                          ("--image-size", dict(type=int, metavar="PX", help="store resized")),
                          ("--test-fraction", dict(type=finite, default=0.0, metavar="F",
                                                   help="share held out for evaluation")),
                          ("--seed", dict(type=int, default=0, metavar="S"))):
        prepare.add_argument(flag, **options)
    for name, verb in (("evaluate", "kNN and linear-probe accuracy of an exported encoder"),
                       ("embed", "write the embeddings (and labels) of a data set to a .npz")):
        sub = commands.add_parser(name, help=verb, description=verb[0].upper() + verb[1:] + ".",
                                  epilog=f"example:\n  keras-ssl {name} saved_models/simclr "
                                  "--data digits" + (" --out emb.npz" if name == "embed" else ""),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        for flag, dest, options in (("path", None, _option("a model folder or a version folder")),
                                    *(r for r in PRETRAIN_OPTIONS if r[0] in SHARED_FLAGS),
                                    *([("--out", "out", _option("the .npz", required=True))]
                                      if name == "embed" else [])):
            sub.add_argument(flag, **({"dest": dest} if dest else {}), **options)
    return parser


def pretrain_cmd(args) -> int:
    from keras_ssl.pipeline import parse_method_options, pretrain

    options = {dest: getattr(args, dest) for _, dest, _ in PRETRAIN_OPTIONS}
    options["method_options"] = parse_method_options(options["method_options"])
    result = pretrain(**options)
    print(f"\n{result.table()}")
    if getattr(result.budget, "stopped_at_step", None) is not None:
        print(f"Stopped after {result.steps} steps ({result.budget.spent:.0f} s of the "
              f"{args.minutes:g}-minute budget).")
    print(f"Training time: {result.train_seconds:.1f} s")
    return 0


def prepare_cmd(args) -> int:
    from keras_ssl.data.prepare import prepare

    index = prepare(args.source, args.out, shards=args.shards, image_size=args.image_size,
                    test_fraction=args.test_fraction, seed=args.seed)
    print(f"Wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in index.items()
                                             if isinstance(v, int)))
    return 0


def _load_for(args):
    """The data of `evaluate` / `embed`, checked against the exported encoder first."""
    from keras_ssl import data as data_lib
    from keras_ssl.serving import check_fits, resolve_version
    from keras_ssl.validate import check_int

    check_int(args.eval_examples, "--eval-examples", least=1)
    resolve_version(args.path)  # a wrong path fails before the data are read
    data = data_lib.load(args.data, data_dir=args.data_dir)
    check_fits(args.path, data.input_shape, data.kind)
    return data


def evaluate_cmd(args) -> int:
    from keras_ssl import evaluate
    from keras_ssl.errors import KerasSSLError

    split = _load_for(args).evaluation_arrays(args.eval_examples)
    if split is None:
        raise KerasSSLError(f"{args.data!r} has no labelled held-out split to evaluate on.")
    scores = evaluate.evaluate_encoder(args.path, *split)
    print(f"{'encoder':<28}{'kNN accuracy':>14}{'linear probe':>14}\n{str(args.path)[-28:]:<28}"
          f"{scores['knn_accuracy']:>14.4f}{scores['linear_probe_accuracy']:>14.4f}")
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
    if not hasattr(data, "x_train"):  # a stream: written batch by batch, training split only
        batches = data.train_dataset(256, labels=data.has_labels, shuffle=False,
                                     drop_remainder=False)
        print(f"Wrote {evaluate.embed_to_file(args.path, batches, out):,} embeddings to {out}")
        return 0
    embed = evaluate.embedding_function(args.path)
    arrays = {"embeddings": evaluate.embed_with(embed, data.x_train), "labels": data.y_train,
              "test_labels": data.y_test, "test_embeddings": None if data.x_test is None else
              evaluate.embed_with(embed, data.x_test)}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(out, **arrays)
    print(f"Wrote {', '.join(f'{k} {v.shape}' for k, v in arrays.items())} to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help, or an argument argparse rejected (one line, above)
        return done.code
    from keras_ssl.errors import KerasSSLError

    command = {"pretrain": pretrain_cmd, "prepare": prepare_cmd, "evaluate": evaluate_cmd,
               "embed": embed_cmd}
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
