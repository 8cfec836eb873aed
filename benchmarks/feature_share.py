"""Does one feature outgrow the others? The collapse monitor's numbers over a method's first steps.

Each `--method` is built as `benchmarks/quality.py` builds it (the CLI's encoder and defaults,
AdamW with the warm-up and cosine schedule over `--steps`) and trained for `--steps` steps; every
`--every` steps, and before the first, the encoder embeds the held-out test images and the row
records what `keras_ssl.collapse.CollapseMonitor` logs (the share of the centred, normalised
embeddings' variance along their first principal direction, their effective rank) beside the
held-out kNN accuracy (k=200, cosine, t=0.1, the training images as memory). BYOL, SimSiam and
DINO let one feature grow over the others in their first hundreds of steps, and cosine kNN then
sees little else; the methods with negatives or a decorrelation term do not. The monitor warns
past `collapse.MAX_TOP_SHARE`; this benchmark is where that threshold comes from.

`--reference lightly_simsiam` and `--reference lightly_byol` add lightly's own SimSiam and BYOL
on the same ConvNet written in PyTorch (`_lightly_quality.py`, in a process of its own, run by
`--torch-python`, an interpreter with torch and lightly), scored here the same way;
`lightly_simsiam:adamw` trains it with keras_ssl's optimizer instead of lightly's SGD.

    python benchmarks/feature_share.py --data digits --image-size 16 --steps 120 --every 24 \\
        --method simclr --method simsiam --method byol
    python benchmarks/feature_share.py --data cifar10 --steps 120 --every 40 --method byol
    python benchmarks/feature_share.py --data digits --image-size 16 --steps 120 --every 40 \\
        --method simsiam --reference lightly_simsiam --torch-python /tmp/torchvenv/bin/python
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

import keras
import numpy as np
from _common import (
    machine,
    method_row,
    print_machine,
    print_table,
    torch_features,
    write_json,
)
from quality import DATA_SETS, DEFAULT_CACHE_DIR, build_method, load_split

from keras_ssl import collapse, defaults, evaluate  # noqa: E402
from keras_ssl import data as data_lib  # noqa: E402
from keras_ssl.errors import KerasSSLError  # noqa: E402
from keras_ssl.methods import METHODS  # noqa: E402

REFERENCES = ("lightly_simsiam", "lightly_byol")
COLUMNS = [("method", "method", ""), ("steps", "steps", "d"), ("top_share", "top share", ".3f"),
           ("effective_rank", "effective rank", ".1f"), ("knn_accuracy", "kNN", ".3f")]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="feature_share.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The top direction's share of the held-out embeddings' variance, their "
        "effective rank and kNN accuracy over the first steps of each method.",
        epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--data", required=True, choices=DATA_SETS,
                        help="data set, read as benchmarks/quality.py reads it")
    parser.add_argument("--method", action="append", default=[], metavar="M",
                        help=f"a method to train (repeatable): {', '.join(sorted(METHODS))}; "
                        "M:NAME=VALUE,... adds method options, e.g. byol:output_bn=false")
    parser.add_argument("--reference", action="append", default=[], metavar="R",
                        help=f"lightly's own method (repeatable): {', '.join(REFERENCES)}; "
                        "R:adamw trains it with keras_ssl's AdamW instead of lightly's SGD")
    parser.add_argument("--torch-python", default=sys.executable, metavar="PYTHON",
                        help="the interpreter with torch and lightly that runs --reference "
                        "(this one)")
    parser.add_argument("--steps", type=int, default=120, metavar="N",
                        help="training steps of each method (120)")
    parser.add_argument("--every", type=int, default=24, metavar="K",
                        help="measure every K steps (24)")
    parser.add_argument("--image-size", type=int, default=None, metavar="PX",
                        help="resize the images to PX x PX first (default: as stored)")
    parser.add_argument("--examples", type=int, default=10000, metavar="N",
                        help="training images, also the kNN memory (10000)")
    parser.add_argument("--test-examples", type=int, default=2000, metavar="N",
                        help="held-out images embedded at each measurement (2000)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="B", help="(256)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="(0)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the rows here")
    args = parser.parse_args(argv)
    if not args.method and not args.reference:
        parser.error("give at least one --method (or --reference), e.g. --method simsiam")
    unknown = [r for r in args.reference if r.split(":")[0] not in REFERENCES
               or r.split(":")[1:] not in ([], ["adamw"])]
    if unknown:
        parser.error(f"--reference {unknown[0]!r} is not one of {', '.join(REFERENCES)} "
                     "(with :adamw or nothing after it)")
    if args.every < 1 or args.steps < args.every or args.steps % args.every:
        parser.error("--steps must be a multiple of --every, both at least 1")
    # What quality.py's loaders and builders read.
    args.eval_examples, args.data_dir, args.cache_dir = args.examples, None, str(DEFAULT_CACHE_DIR)
    args.learning_rate, args.encoder, args.width = defaults.LEARNING_RATE, None, None
    args.options, args.jit_compile = {}, False
    return args


def resize(images, size) -> np.ndarray:
    return data_lib.load(images, image_size=size, test_fraction=0).x_train


def measured(name, steps, memory, test, split) -> dict:
    """One row (printed as it comes) from the embeddings of the memory and test images."""
    row = {"method": name, "steps": steps, "top_share": collapse.top_direction_share(test),
           "effective_rank": collapse.effective_rank(test),
           "knn_accuracy": evaluate.knn_accuracy(memory, split.y_memory, test, split.y_test)}
    print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in row.items()), flush=True)
    return row


class Measure(keras.callbacks.Callback):
    """Before training and after every epoch (`--every` steps): one row of the table."""

    def __init__(self, name, split, every):
        super().__init__()
        self.name, self.split, self.every, self.rows = name, split, every, []

    def on_train_begin(self, logs=None):
        self.on_epoch_end(-1)

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append(measured(self.name, (epoch + 1) * self.every,
                                  evaluate.embed(self.model, self.split.x_memory),
                                  evaluate.embed(self.model, self.split.x_test), self.split))


def trajectory(spec, split, args) -> list[dict]:
    """Rows of (steps, top share, effective rank, kNN) over `args.steps` steps of method `spec`
    (a name, with options after a colon)."""
    name, label, args.options = method_row(spec)
    data = data_lib.SSLData(split.x_train, split.y_train, name=split.name)
    model, _ = build_method(name, data, args, args.steps)
    dataset = data.train_dataset(args.batch_size, seed=args.seed, labels=model.needs_labels)
    measure = Measure(label, split, args.every)
    model.fit(dataset.repeat(), steps_per_epoch=args.every, epochs=args.steps // args.every,
              verbose=0, callbacks=[measure])
    return measure.rows


def reference_trajectory(spec, split, args) -> list[dict]:
    """The same rows for lightly's own method (`_lightly_quality.py` in a process of its own)."""
    name, _, optimizer = spec.partition(":")
    features = torch_features(
        args.torch_python, "_lightly_quality.py", split,
        ["--method", name.removeprefix("lightly_"), "--steps", str(args.steps), "--every",
         str(args.every), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
         "--optimizer", optimizer or "sgd"], spec)
    return [measured(spec, step, features[f"memory_{step}"], features[f"test_{step}"], split)
            for step in range(0, args.steps + 1, args.every)]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    info = machine()
    info["command"] = shlex.join(["python", "benchmarks/feature_share.py", *argv])
    print_machine(info)
    try:
        if args.reference and subprocess.run([args.torch_python, "-c", "import torch, lightly"],
                                             capture_output=True).returncode:
            raise KerasSSLError(f"--reference {args.reference[0]} needs torch and lightly in "
                                f"--torch-python {args.torch_python}: pip install torch lightly "
                                "there, or name an interpreter that has them")
        split = load_split(args)
        split.x_test = split.x_test[:args.test_examples]
        split.y_test = split.y_test[:args.test_examples]
        if args.image_size:
            split.x_train, split.x_memory, split.x_test = (
                resize(x, args.image_size) for x in (split.x_train, split.x_memory, split.x_test))
        rows = [row for name in args.method for row in trajectory(name, split, args)]
        rows += [row for spec in args.reference
                 for row in reference_trajectory(spec, split, args)]
    except KerasSSLError as err:
        print(f"feature_share.py: error: {err}", file=sys.stderr)
        return 2
    print_table(rows, COLUMNS)
    write_json(args.json, {"machine": info, "args": {k: v for k, v in vars(args).items()
                                                     if k != "options"}, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
