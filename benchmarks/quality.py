"""What T minutes of self-supervised training buy: kNN and linear-probe accuracy against baselines.

Each `--method` is built as `keras-ssl pretrain` builds it (the registry's preset, the default
encoder for the input, `training.default_optimizer`), trained for `--minutes` of wall-clock time
(`training.plan_budget` fits the learning-rate schedule to the steps that fit, `TimeBudget` stops
on time) and scored with `keras_ssl.evaluate`: kNN (k=200, cosine, t=0.1) and a logistic-regression
probe on frozen features of held-out labelled images. Beside the methods, from the same run:

- `raw pixels`: the flattened images in [0, 1], no encoder at all;
- `random init`: the encoder the methods start from (same architecture, same seed), untrained;
  a method that trains an encoder of its own (MAE's `vit_tiny`) gets that encoder's random init
  beside it as well, `random init (vit_tiny)`, and its gains are counted from there;
- `supervised`: that encoder under a softmax layer, trained with labels and cross-entropy for the
  same minutes with the same optimizer (light views: random crop and flip), then scored the same
  way on its frozen features. `--no-baselines` skips it.

`--reference kerasio` and `--reference pytorch_resnet18` add the implementations keras_ssl is
compared with, trained for the same minutes on the same images and scored the same way, each beside
its own random init: keras-io's SimCLR example as written (its 4-conv encoder, augmenter, Adam and
batch of 525, `_kerasio_reference.py`) and a PyTorch SimCLR on ResNet-18 (`_torch_quality.py`, in a
process of its own with the cores to itself; needs `pip install torch`, the CPU build).

Data: `fashion_mnist` reads the idx files in `--data-dir` (default ../shared/data/fashion-mnist
beside the repository): SSL training on the first `--examples` of the 60,000 training images,
kNN memory / probe training on the first `--eval-examples`, test on the official 10,000. `cifar10`
reads a `train/<class>/*.jpg` tarball (default ../shared/data/cifar10/cifar10-train-jpg.tar.gz),
extracted once into `--cache-dir` (or `--data-dir` naming an extracted folder of class folders),
decoded once into an .npz there; 10,000 images (stratified, seed 0) are held out as the test set,
and training draws on the other 40,000.

    python benchmarks/quality.py --data fashion_mnist --method simclr --minutes 10
    python benchmarks/quality.py --data cifar10 --method simclr --method moco --minutes 30 \\
        --json results/quality_cifar10.json
    python benchmarks/quality.py --data cifar10 --method simclr --reference kerasio \\
        --reference pytorch_resnet18 --minutes 10 --no-baselines
    python benchmarks/quality.py --data fashion_mnist --method simclr --minutes 0.2 --examples 2000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import shutil
import sys
import tarfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import _torch_reference
from _common import (
    REPO,
    machine,
    method_row,
    print_machine,
    print_table,
    torch_features,
    write_json,
)
from _kerasio_reference import KERAS_IO_BATCH_SIZE, KERAS_IO_MIN_SIZE, KerasIOSimCLR

import keras  # isort: skip
import numpy as np  # isort: skip
import tensorflow as tf  # isort: skip

from keras_ssl import augment, checkpoint, defaults, evaluate, precision, training  # noqa: E402
from keras_ssl import data as data_lib  # noqa: E402
from keras_ssl.errors import KerasSSLError  # noqa: E402
from keras_ssl.guards import NonFiniteLossError  # noqa: E402
from keras_ssl.methods import METHODS, get_method  # noqa: E402
from keras_ssl.methods.base import MIN_IMAGE_SIZE  # noqa: E402
from keras_ssl.pipeline import build_encoder as build_encoder_as_pretrain  # noqa: E402
from keras_ssl.pipeline import build_model, parse_method_options, pretrain  # noqa: E402

DATA_SETS = ("digits", "fashion_mnist", "cifar10")
REFERENCES = ("kerasio", "pytorch_resnet18")
UNPLANNED_EPOCHS = 1_000_000  # "until the time is spent"
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_DATA_DIRS = {
    "fashion_mnist": SHARED_DATA / "fashion-mnist",
    "cifar10": SHARED_DATA / "cifar10",
}
CIFAR10_TARBALL = "cifar10-train-jpg.tar.gz"
DEFAULT_CACHE_DIR = Path("/tmp/keras_ssl_cifar10")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="quality.py",
        description="kNN and linear-probe accuracy of methods trained for T minutes, beside raw "
        "pixels, the random-init encoder and the same encoder trained with labels.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 3)[3])
    parser.add_argument("--data", required=True, metavar="NAME",
                        help=f"data set: {', '.join(DATA_SETS)} (digits: scikit-learn's, "
                        "bundled; the others from --data-dir)")
    parser.add_argument("--method", action="append", default=[], metavar="M",
                        help="a method to train (repeatable): "
                        f"{', '.join(sorted(METHODS))}; M:NAME=VALUE,... adds method options "
                        "to that row only, e.g. --method byol --method byol:momentum=0.9")
    parser.add_argument("--reference", action="append", default=[], metavar="R",
                        help="an implementation to compare with, trained for the same minutes "
                        f"(repeatable): {', '.join(REFERENCES)}")
    parser.add_argument("--minutes", type=budgets, required=True, metavar="T[,T...]",
                        help="wall-clock training budget of each method and of the supervised "
                        "baseline, in minutes; several (1,3,10) run a budget sweep")
    parser.add_argument("--examples", type=int, default=10000, metavar="N",
                        help="training images (default 10000)")
    parser.add_argument("--eval-examples", type=int, default=10000, metavar="N",
                        help="labelled training images for the kNN memory bank and the probe "
                        "(default 10000)")
    parser.add_argument("--test-examples", type=int, default=10000, metavar="N",
                        help="cifar10: images held out as the test set (default 10000)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="fashion_mnist: the idx folder; cifar10: the folder holding "
                        f"{CIFAR10_TARBALL}, the tarball itself, or an extracted folder of class "
                        "folders (default: ../shared/data/<data set> beside the repository)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), metavar="DIR",
                        help="cifar10: where the tarball is extracted and the decoded arrays are "
                        f"kept (default {DEFAULT_CACHE_DIR})")
    parser.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE, metavar="B",
                        help=f"({defaults.BATCH_SIZE}, the CLI's)")
    parser.add_argument("--learning-rate", type=float, default=defaults.LEARNING_RATE, metavar="LR",
                        help=f"peak AdamW learning rate of every model trained "
                        f"({defaults.LEARNING_RATE:g}, the CLI's)")
    parser.add_argument("--encoder", default=None, metavar="NAME",
                        help="backbone (default: the CLI's for the images, keras_ssl.defaults)")
    parser.add_argument("--width", type=int, default=None, metavar="W",
                        help="channels of the encoder's first stage (with --encoder)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        dest="set_options",
                        help="a method argument over its default, for every --method (repeatable), "
                        "e.g. --set temperature=0.5 --set grid=3; strength=S, "
                        "min_crop_area=A and fused_color=false make SimCLR's views with that "
                        "colour strength, smallest crop, or torchvision's jitter op by op")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="(0)")
    parser.add_argument("--supervised-augment", default="weak", choices=("weak", "none"),
                        help="views of the supervised baseline: weak (random crop of 50-100%% "
                        "of the area and a flip; default) or none")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the supervised baseline (raw pixels and random init stay)")
    parser.add_argument("--precision", default="auto",
                        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
                        help="as keras-ssl pretrain (auto: float32 on CPU)")
    parser.add_argument("--xla", default="auto", choices=("auto", "on", "off"),
                        help="as keras-ssl pretrain (auto: on with a GPU, off on CPU)")
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="also write the results here, after every row")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --json and train only the missing ones (a "
                        "sweep spread over several runs, or one that was stopped)")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2),
                        help="Keras progress output while training (0)")
    args = parser.parse_args(argv)
    if args.data not in DATA_SETS:
        parser.error(f"--data {args.data!r} is not a data set this benchmark knows; choose "
                     f"{', '.join(DATA_SETS)}.")
    if not args.method and not args.reference:
        parser.error("give at least one --method (or --reference), e.g. --method simclr.")
    try:
        args.options = parse_method_options(args.set_options)
        method_rows(args)
    except KerasSSLError as e:
        parser.error(str(e))
    unknown = sorted(set(args.reference) - set(REFERENCES))
    if unknown:
        parser.error(f"--reference {unknown[0]!r} is not one of {', '.join(REFERENCES)}.")
    if args.resume and not args.json:
        parser.error("--resume reads and extends the --json file; give --json FILE.")
    args.budgets, args.minutes = args.minutes, args.minutes[0]
    if args.width is not None and not args.encoder:
        parser.error("--width sizes the encoder named by --encoder; give --encoder too.")
    for name in ("examples", "eval_examples", "test_examples", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more.")
    return args


# ----- data ------------------------------------------------------------------------------------
@dataclass
class Split:
    name: str
    x_train: np.ndarray  # what the models train on
    y_train: np.ndarray
    x_memory: np.ndarray  # labelled training images: the kNN memory bank, the probe's training set
    y_memory: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "input_shape": list(self.x_train.shape[1:]),
                "train": len(self.x_train), "memory": len(self.x_memory), "test": len(self.x_test),
                "classes": self.num_classes}


def load_split(args) -> Split:
    if args.data == "digits":
        data, source = data_lib.load("digits", seed=0), "digits (scikit-learn)"
    elif args.data == "fashion_mnist":
        folder = Path(args.data_dir) if args.data_dir else DEFAULT_DATA_DIRS["fashion_mnist"]
        if not folder.is_dir():
            raise KerasSSLError(
                f"No Fashion-MNIST folder at {folder}: give --data-dir, the folder of its idx "
                "files (train-images-idx3-ubyte.gz, train-labels-..., t10k-images-..., "
                "t10k-labels-...)."
            )
        data, source = data_lib.load(folder), str(folder)
        if data.x_test is None:
            raise KerasSSLError(
                f"{folder} has no t10k-images / t10k-labels idx files: the benchmark tests on them."
            )
    else:
        data, source = load_cifar10(args.data_dir, args.cache_dir, args.test_examples)
    if data.y_train is None or data.y_test is None:
        raise KerasSSLError(f"{source}: the benchmark needs labelled training and test images.")
    return Split(
        name=args.data,
        x_train=data.x_train[: args.examples], y_train=data.y_train[: args.examples],
        x_memory=data.x_train[: args.eval_examples], y_memory=data.y_train[: args.eval_examples],
        x_test=data.x_test, y_test=data.y_test, num_classes=int(data.num_classes), source=source,
    )


def _has_class_folders(folder: Path) -> bool:
    for sub in folder.iterdir() if folder.is_dir() else ():
        if sub.is_dir() and not sub.name.startswith("."):
            if any(p.suffix.lower() in IMAGE_SUFFIXES for p in sub.iterdir()):
                return True
    return False


def cifar10_folder(data_dir, cache_dir) -> Path:
    """The folder of CIFAR-10 class folders: `data_dir` itself (or its `train/`) when extracted,
    else the tarball extracted into `cache_dir/train` (once; later calls find it there)."""
    source = Path(data_dir) if data_dir else DEFAULT_DATA_DIRS["cifar10"]
    if source.is_dir():
        for candidate in (source, source / "train"):
            if _has_class_folders(candidate):
                return candidate
        tarball = source / CIFAR10_TARBALL
    else:
        tarball = source
    if not tarball.is_file():
        raise KerasSSLError(
            f"No CIFAR-10 images at {source}: give --data-dir, a folder holding {CIFAR10_TARBALL} "
            "(train/<class>/*.jpg), the tarball itself, or an extracted folder of class folders."
        )
    cache = Path(cache_dir)
    target = cache / "train"
    if _has_class_folders(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".extracting-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    print(f"# extracting {tarball} into {target}", flush=True)
    try:
        with tarfile.open(tarball) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(partial, filter="data")
            else:  # Python before 3.11.4
                archive.extractall(partial)
    except (tarfile.TarError, OSError, EOFError) as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise KerasSSLError(f"Could not extract {tarball} ({type(e).__name__}: {e}).") from e
    extracted = partial / "train" if _has_class_folders(partial / "train") else partial
    if not _has_class_folders(extracted):
        shutil.rmtree(partial, ignore_errors=True)
        raise KerasSSLError(f"{tarball} holds no train/<class>/<image> folders.")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(extracted, target)
    shutil.rmtree(partial, ignore_errors=True)
    return target


def load_cifar10(data_dir, cache_dir, test_examples: int = 10000, seed: int = 0):
    """CIFAR-10's training images split into training and `test_examples` held-out images
    (stratified, fixed by `seed`); decoded once, then read from an .npz in `cache_dir`."""
    folder = cifar10_folder(data_dir, cache_dir).resolve()
    cache = Path(cache_dir) / f"cifar10_test{test_examples}_seed{seed}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as saved:
                if str(saved["source"]) == str(folder):
                    arrays = {k: saved[k] for k in ("x", "y", "x_test", "y_test", "class_names")}
                    data = data_lib.SSLData(
                        arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"],
                        name=folder.name, class_names=[str(c) for c in arrays["class_names"]])
                    return data, f"{folder} (decoded: {cache})"
        except Exception as e:  # a truncated or foreign file: decode again
            print(f"# ignoring the cache {cache} ({type(e).__name__}: {e})", flush=True)
    count = sum(1 for sub in folder.iterdir() if sub.is_dir()
                for p in sub.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if count <= test_examples:
        raise KerasSSLError(
            f"{folder} holds {count} images, too few to hold out --test-examples {test_examples}."
        )
    print(f"# decoding {count:,} images from {folder}", flush=True)
    # ceil(count * fraction) == test_examples, whatever the rounding of the fraction.
    data = data_lib.load(folder, test_fraction=(test_examples - 0.5) / count, seed=seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    with open(partial, "wb") as f:
        np.savez(f, x=data.x_train, y=data.y_train, x_test=data.x_test, y_test=data.y_test,
                 class_names=np.asarray(data.class_names), source=np.asarray(str(folder)))
    os.replace(partial, cache)
    return data, f"{folder} (decoded into {cache})"


# ----- models ----------------------------------------------------------------------------------
def build_encoder(input_shape, args, name=None) -> keras.Model:
    """The encoder `keras_ssl.pretrain` builds (`name`, else `--encoder` or the default for the
    images), from the seed: every row starts from the same one."""
    keras.utils.set_random_seed(args.seed)
    return build_encoder_as_pretrain(name or args.encoder, args.width, shape_only(input_shape))


def own_encoder(method: str, args) -> str | None:
    """The encoder `method` trains when it is not the runs' shared one: its `default_encoder`
    (MAE's ViT) when no `--encoder` is given; None for the shared one."""
    return None if args.encoder else get_method(method)[0].default_encoder


def baseline_name(encoder: str | None) -> str:
    """The random-init row an encoder's methods are measured from."""
    return "random init" if encoder is None else f"random init ({encoder})"


def build_method(name: str, data: data_lib.SSLData, args, total_steps: int):
    """A compiled method for `data`, built by `keras_ssl.pipeline.build_model` as `pretrain`
    builds it (its checks of the data and MoCo's queue see the images it will train on)."""
    keras.utils.set_random_seed(args.seed)
    model = build_model(name, data, encoder=args.encoder, width=args.width, seed=args.seed,
                        method_options=args.options)
    model.compile(optimizer=training.default_optimizer(args.learning_rate, total_steps),
                  jit_compile=args.jit_compile)
    return model, get_method(name)[0]


def shape_only(input_shape) -> data_lib.SSLData:
    """A one-image stand-in for data of `input_shape`: what the builders read from data."""
    return data_lib.SSLData(np.zeros((1, *input_shape), np.uint8), name="shape")


class Features(keras.Model):
    """uint8 images -> the encoder's features, with the methods' preprocessing (x / 255)."""

    def __init__(self, encoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def call(self, images, training=False):
        return self.encoder(augment.to_float_images(images), training=training)


class Supervised(keras.Model):
    """The supervised baseline: (light views of) the images -> encoder -> softmax over classes."""

    def __init__(self, encoder, num_classes: int, augmenter=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.augmenter = augmenter
        self.classifier = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                             name="classifier")

    def call(self, images, training=False):
        if self.augmenter is not None:
            x = self.augmenter(images, training=training)
        else:
            x = augment.to_float_images(images)
        return self.classifier(self.encoder(x, training=training))


def build_supervised(split: Split, args, total_steps: int) -> Supervised:
    input_shape = split.x_train.shape[1:]
    encoder = build_encoder(input_shape, args)
    augmenter = (augment.weak(tuple(input_shape[:2]), seed=args.seed)
                 if args.supervised_augment == "weak" else None)
    model = Supervised(encoder, split.num_classes, augmenter)
    model.compile(optimizer=training.default_optimizer(args.learning_rate, total_steps),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=args.jit_compile)
    return model


# ----- training and scoring --------------------------------------------------------------------
def train_for(model, x, y, args, batch_size: int | None = None, plan: bool = True) -> dict:
    """Train `model` for `args.minutes` with the library's budget helpers; what it did.

    `plan=False` for a constant learning rate: nothing to fit to the steps that fit, so training
    simply runs until the time is spent (no planned step count that could end it early)."""
    batch_size = batch_size or args.batch_size
    start = time.perf_counter()
    if plan:
        budget = training.plan_budget(model, x, y, batch_size=batch_size, minutes=args.minutes)
        planned = budget.epochs
    else:
        budget, planned = training.TimeBudget(args.minutes * 60, epochs=UNPLANNED_EPOCHS), None
    plan_seconds = time.perf_counter() - start
    start = time.perf_counter()
    history = checkpoint.fit_resumable(model, x, y, batch_size=batch_size, epochs=budget.epochs,
                                       seed=args.seed, callbacks=[budget], verbose=args.verbose)
    seconds = time.perf_counter() - start
    per_epoch = data_lib.steps_per_epoch(len(x), batch_size)
    steps = (budget.stopped_at_step if budget.stopped_at_step is not None
             else len(history.history.get("loss", [])) * per_epoch)
    losses = history.history.get("loss", history.history.get("c_loss", []))  # keras-io: c_loss
    return {
        "epochs": round(steps / per_epoch, 2), "steps": int(steps), "planned_epochs": planned,
        "steps_per_epoch": per_epoch, "train_seconds": round(seconds, 2),
        "budget_seconds": round(budget.spent, 2), "plan_seconds": round(plan_seconds, 2),
        "stopped_on": (None if budget.stopped_at_step is None
                       else "time" if budget.spent >= budget.seconds else "planned steps"),
        "final_loss": float(losses[-1]) if losses else None,
    }


def pretrain_stats(result) -> dict:
    """What a `keras_ssl.pretrain` row did, in `train_for`'s terms."""
    budget, per_epoch = result.budget, result.steps_per_epoch
    losses = result.history.history.get("loss", []) if result.history else []
    return {
        "epochs": round(result.steps / per_epoch, 2), "steps": result.steps,
        "planned_epochs": budget.epochs, "steps_per_epoch": per_epoch,
        "train_seconds": round(result.train_seconds, 2), "budget_seconds": round(budget.spent, 2),
        "plan_seconds": None,
        "stopped_on": (None if budget.stopped_at_step is None
                       else "time" if budget.spent >= budget.seconds else "planned steps"),
        "final_loss": float(losses[-1]) if losses else None,
    }


def pixels(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32) / np.float32(255)


def score(features_of, split: Split) -> dict:
    """kNN and linear-probe accuracy of an encoder, or of ready features: `features_of` is a
    model, or a pair of arrays (features of `split.x_memory`, of `split.x_test`)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(features_of, tuple):
            train, test = features_of
            scores = {
                "knn_accuracy": evaluate.knn_accuracy(train, split.y_memory, test, split.y_test),
                "linear_probe_accuracy": evaluate.linear_probe(train, split.y_memory, test,
                                                               split.y_test),
            }
        else:
            scores = evaluate.evaluate_encoder(features_of, split.x_memory, split.y_memory,
                                               split.x_test, split.y_test)
    scores["probe_converged"] = not any("ConvergenceWarning" in type(w.message).__name__
                                        for w in caught)
    scores["eval_seconds"] = round(time.perf_counter() - start, 2)
    return scores


# ----- the implementations keras_ssl is compared with -------------------------------------------
def kerasio_rows(split: Split, args) -> list[dict]:
    """keras-io's SimCLR example trained for the budget: its random init, then trained."""
    keras.utils.set_random_seed(args.seed)
    model = KerasIOSimCLR(split.x_train.shape[1:])
    model.compile(optimizer=keras.optimizers.Adam())  # the example's: constant 1e-3, no plan
    before = {"name": "keras-io example, random init", "kind": "reference",
              "parameters": model.encoder.count_params(),
              **score(Features(model.encoder), split)}
    report(before)
    batch_size = min(KERAS_IO_BATCH_SIZE, len(split.x_train))
    trained = train_for(model, split.x_train, None, args, batch_size=batch_size, plan=False)
    after = {"name": f"keras-io example ({args.minutes:g} min)", "kind": "reference",
             "batch_size": batch_size, **trained, **score(Features(model.encoder), split)}
    report(after)
    return [before, after]


def pytorch_rows(split: Split, args) -> list[dict]:
    """A PyTorch ResNet-18 SimCLR trained for the budget in its own process (`_torch_quality.py`),
    its features before and after scored here; no rows (and a note) without PyTorch."""
    if not _torch_reference.available():
        print("# pytorch_resnet18: skipped, torch is not installed (pip install torch, the CPU "
              "build)", flush=True)
        return []
    arrays = torch_features(sys.executable, "_torch_quality.py", split,
                            ["--minutes", str(args.minutes), "--batch-size", str(args.batch_size),
                             "--seed", str(args.seed)], "the PyTorch reference")
    info = {"encoder": "ResNet-18 (PyTorch)", "threads": int(arrays["threads"]),
            "torch": str(arrays["torch_version"])}
    before = {"name": "PyTorch ResNet-18, random init", "kind": "reference", **info,
              **score((arrays["before_memory"], arrays["before_test"]), split)}
    report(before)
    steps = int(arrays["steps"])
    after = {"name": f"PyTorch ResNet-18 ({args.minutes:g} min)", "kind": "reference", **info,
             "steps": steps, "epochs": round(float(arrays["epochs"]), 2),
             "train_seconds": round(float(arrays["train_seconds"]), 2),
             "final_loss": float(arrays["final_loss"]),
             **score((arrays["after_memory"], arrays["after_test"]), split)}
    report(after)
    return [before, after]


REFERENCE_ROWS = {"kerasio": kerasio_rows, "pytorch_resnet18": pytorch_rows}


def budgets(text: str) -> list[float]:
    """`--minutes`: one budget or a comma-separated sweep, each a positive number of minutes."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of minutes (or 1,3,10)") from None
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"budgets must be positive minutes, got {text!r}")
    return values


def method_rows(args) -> list[tuple[str, str, dict]]:
    """(method, row label, options) of every --method: `--set` options, then the row's own."""
    return [method_row(spec, args.set_options) for spec in args.method]


def check_methods(args, split: Split) -> None:
    """Every method exists, can learn from these images and builds, before anything trains."""
    if min(split.x_train.shape[1:3]) < MIN_IMAGE_SIZE:
        raise KerasSSLError(f"{split.name}: images smaller than {MIN_IMAGE_SIZE} px.")
    for name, _, options in method_rows(args):
        cls, preset = get_method(name)
        if "images" not in cls.input_kinds:
            raise KerasSSLError(
                f"--method {name} learns from {' or '.join(cls.input_kinds)}, not images; choose "
                "an image method."
            )
        if args.batch_size < max(2, getattr(cls, "min_batch_size", 1)):
            raise KerasSSLError(
                f"--batch-size {args.batch_size} is too small for {name}: it needs at least "
                f"{max(2, cls.min_batch_size)} examples per batch."
            )
        with warnings.catch_warnings():  # the data warnings come with each row, on its images
            warnings.simplefilter("ignore")
            build_model(name, shape_only(split.x_train.shape[1:]), encoder=args.encoder,
                        width=args.width, seed=args.seed, method_options=options)
    data_lib.steps_per_epoch(len(split.x_train), args.batch_size)  # a full batch at least
    height, width, channels = split.x_train.shape[1:]
    if args.reference and (channels != 3 or min(height, width) < KERAS_IO_MIN_SIZE):
        raise KerasSSLError(
            f"--reference trains the references on RGB images of {KERAS_IO_MIN_SIZE} px or more "
            f"(keras-io's encoder: four unpadded stride-2 convolutions); {split.name} has "
            f"{height}x{width}x{channels}. Use --data cifar10."
        )


def report(row: dict) -> None:
    """One progress line: where the row's time went and what it scored."""
    trained = ""
    if "steps" in row:
        steps = f"{row['steps']} step{'s' if row['steps'] != 1 else ''}"
        plan_time = (f" ({row['plan_seconds']:.1f} s)" if row.get("plan_seconds") is not None
                     else "")
        planned = (f"planned {row['planned_epochs']} epochs{plan_time}, "
                   if row.get("planned_epochs") else "")
        stopped = f" (stopped on {row['stopped_on']})" if row.get("stopped_on") else ""
        trained = f"{planned}trained {steps} in {row['train_seconds']:.1f} s{stopped}, "
    print(f"#   {trained}scored in {row['eval_seconds']:.1f} s: kNN {row['knn_accuracy']:.4f}, "
          f"linear probe {row['linear_probe_accuracy']:.4f}", flush=True)


def previous_rows(args, split) -> list[dict]:
    """The rows of `--json` to keep with `--resume` (none otherwise); they must be of this data."""
    path = Path(args.json) if args.json else None
    if not (args.resume and path and path.exists()):
        return []
    previous = json.loads(path.read_text())
    if previous.get("data") != split.describe():
        raise KerasSSLError(f"{path} holds results on other data ({previous.get('data')}); "
                            "give another --json file to start a new sweep.")
    return previous["rows"]


def run(args, info=None) -> dict:
    precision_name = precision.set_precision(args.precision)
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    args.jit_compile = args.xla == "on" or (args.xla == "auto" and on_gpu)
    split = load_split(args)
    check_methods(args, split)
    print(f"# {split.name}: {len(split.x_train):,} training images {split.x_train.shape[1:]}, "
          f"{len(split.x_memory):,} labelled for the kNN memory / probe, {len(split.x_test):,} "
          f"test; {split.source}", flush=True)
    print(f"# precision {precision_name}, XLA {'on' if args.jit_compile else 'off'}, batch "
          f"{args.batch_size}, learning rate {args.learning_rate:g}, seed {args.seed}", flush=True)
    input_shape = split.x_train.shape[1:]
    steps = checkpoint.steps_per_epoch(len(split.x_train), args.batch_size)
    rows = previous_rows(args, split)
    done = {row["name"] for row in rows}

    def add(row, quiet=False):  # each row reaches --json as soon as it is scored
        rows.append(row)
        if not quiet:
            report(row)
        write_json(args.json, {"machine": info or {}, "args": vars(args),
                               "data": split.describe(), "rows": rows}, quiet=True)

    if "raw pixels" not in done:
        print("# raw pixels", flush=True)
        add({"name": "raw pixels", "kind": "baseline",
             **score((pixels(split.x_memory), pixels(split.x_test)), split)})
    if "random init" not in done:
        print("# random init", flush=True)
        encoder = build_encoder(input_shape, args)
        add({"name": "random init", "kind": "baseline", "encoder": encoder.name,
             "parameters": encoder.count_params(), **score(Features(encoder), split)})
        del encoder
    for name in dict.fromkeys(own_encoder(method, args) for method, _, _ in method_rows(args)):
        if name is None or baseline_name(name) in done:
            continue
        print(f"# {baseline_name(name)}", flush=True)
        encoder = build_encoder(input_shape, args, name)
        add({"name": baseline_name(name), "kind": "baseline", "encoder": name,
             "parameters": encoder.count_params(), **score(Features(encoder), split)})
        del encoder
    for budget in args.budgets:
        args.minutes = budget  # what the training helpers read
        minutes = f"{budget:g} min"
        if not args.no_baselines and f"supervised ({minutes})" not in done:
            print(f"# supervised ({minutes})", flush=True)
            model = build_supervised(split, args, steps)
            trained = train_for(model, split.x_train, split.y_train, args)
            add({"name": f"supervised ({minutes})", "kind": "baseline", "minutes": args.minutes,
                 **trained, **score(Features(model.encoder), split)})
            del model
            gc.collect()
        for name in args.reference:
            if any(row.get("reference") == name and row.get("minutes") == args.minutes
                   for row in rows):
                continue
            print(f"# reference: {name} ({minutes})", flush=True)
            for row in REFERENCE_ROWS[name](split, args):  # they report their own rows
                add({**row, "reference": name, "minutes": args.minutes}, quiet=True)
            gc.collect()
        for name, label, options in method_rows(args):
            if f"{label} ({minutes})" in done:
                continue
            print(f"# {label} ({minutes})", flush=True)
            cls = get_method(name)[0]
            row = {"name": f"{label} ({minutes})", "kind": "method", "method": name,
                   "label": label, "minutes": args.minutes, "class": cls.__name__,
                   "options": options, "baseline": baseline_name(own_encoder(name, args))}
            try:
                result = pretrain(
                    name, data_lib.SSLData(split.x_train, split.y_train, name=split.name),
                    encoder=args.encoder, width=args.width, minutes=args.minutes,
                    batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                    method_options=options, evaluate_scores=False, knn_every=0,
                    precision_policy=args.precision, xla=args.xla, verbose=args.verbose,
                    report=False)
            except NonFiniteLossError as e:
                print(f"# {name}: {e}", flush=True)
                add({**row, "error": str(e), "knn_accuracy": float("nan"),
                     "linear_probe_accuracy": float("nan")})
                continue
            row.update(pretrain_stats(result))
            add({**row, **score(result.model, split)})
            del result
            gc.collect()
    return {"data": split.describe(), "rows": rows}


# A method's cell is marked when its kNN gain over the random-init encoder is below this.
MIN_GAIN = 0.02


def sweep_table(rows, budgets) -> str:
    """Markdown: a row per method, a column per budget, each cell kNN / probe and the kNN gain
    over its encoder's random init; `*` marks a gain under 2 points."""
    baselines = {row["name"]: row for row in rows if row["name"].startswith("random init")}
    cells = {(row.get("label"), row.get("minutes")): row for row in rows if row.get("label")}
    labels = list(dict.fromkeys(row["label"] for row in rows if row.get("label")))
    header = ["method", *(f"{m:g} min: kNN / probe (gain)" for m in budgets)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in ("raw pixels", *baselines):
        row = next(r for r in rows if r["name"] == name)
        value = f"{row['knn_accuracy']:.3f} / {row['linear_probe_accuracy']:.3f}"
        lines.append(f"| {name} | " + " | ".join([value] * len(budgets)) + " |")
    for label in labels:
        values = []
        for m in budgets:
            row = cells.get((label, m))
            if row is None:
                values.append("not run")
                continue
            base = baselines.get(row.get("baseline", "random init"))
            if base is None:  # a row from before its encoder's random init was scored
                values.append(f"{row['knn_accuracy']:.3f} / {row['linear_probe_accuracy']:.3f} "
                              f"(no {row['baseline']} row)")
                continue
            gain = row["knn_accuracy"] - base["knn_accuracy"]
            mark = " *" if not gain >= MIN_GAIN else ""
            values.append(f"{row['knn_accuracy']:.3f} / {row['linear_probe_accuracy']:.3f} "
                          f"({100 * gain:+.1f}){mark}")
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


COLUMNS = [("name", "model", ""), ("knn_accuracy", "kNN", ".4f"),
           ("linear_probe_accuracy", "linear probe", ".4f"), ("epochs", "epochs", ".2f"),
           ("steps", "steps", "d"), ("train_seconds", "train s", ".1f")]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    info = machine()
    info["processor"] = platform.processor() or platform.machine()
    info["command"] = shlex.join(["python", "benchmarks/quality.py", *argv])
    print_machine(info)
    tf.get_logger().setLevel("ERROR")  # retracing notices of the evaluations' last partial batch
    try:
        result = run(args, info)
    except KerasSSLError as err:
        print(f"quality.py: error: {err}", file=sys.stderr)
        return 2
    print()
    print(f"# {result['data']['name']}: {result['data']['train']:,} training images, kNN (k=200, "
          f"cosine, t=0.1) and linear probe on {result['data']['memory']:,} labelled training "
          f"images, scored on {result['data']['test']:,} test images; budget "
          f"{', '.join(f'{m:g}' for m in args.budgets)} min per trained row")
    print_table(result["rows"], COLUMNS)
    if len(args.budgets) > 1 or args.resume:
        print()
        print(sweep_table(result["rows"], args.budgets))
    for row in result["rows"]:
        if not row.get("probe_converged", True):
            print(f"# {row['name']}: the linear probe stopped at its iteration limit")
        if row.get("error"):
            print(f"# {row['name']}: {row['error']}")
    write_json(args.json, {"machine": info, "args": vars(args), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
