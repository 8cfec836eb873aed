"""CIFAR-10 recipes for SimCLR, MoCo v2 and SupCon on a ResNet-18, with `model.fit`.

    python examples/recipes/cifar10.py --method simclr                  # 200 epochs, batch 512
    python examples/recipes/cifar10.py --method supcon --epochs 1000 --batch-size 256
    python examples/recipes/cifar10.py --method moco --check            # a few seconds, any machine

Settings and published targets: examples/recipes/README.md. Writes to --out (default
runs/cifar10_<method>): history.csv, history.json, curves.png, checkpoints/ (a killed run started
again with the same command resumes) and the exported encoder in encoder/<version>/.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_ssl
from keras_ssl import augment, callbacks, checkpoint, encoders, precision, training
from keras_ssl.errors import KerasSSLError

# Peak learning rate at batch 256 (scaled linearly with the batch), SGD momentum 0.9, linear
# warm-up then cosine decay. Keras' weight decay is decoupled (not multiplied by the momentum's
# 1 / (1 - 0.9)), so the coupled PyTorch value wd is written as wd / (1 - 0.9).
MOMENTUM = 0.9
RECIPES = {
    # lightly's CIFAR-10 benchmark: SGD lr 0.06 * batch / 128, weight decay 5e-4, 200 epochs.
    "simclr": dict(lr_at_256=0.12, weight_decay=5e-4 / (1 - MOMENTUM), batch_size=512, epochs=200,
                   method=dict(temperature=0.5, projection_dim=128)),
    "moco": dict(lr_at_256=0.12, weight_decay=5e-4 / (1 - MOMENTUM), batch_size=512, epochs=200,
                 method=dict(temperature=0.2, projection_dim=128, queue_size=4096,
                             momentum=0.99, bn_splits=8)),
    # solo-learn's cifar/supcon.yaml: SGD lr 0.4 at batch 256, weight decay 1e-5, 1000 epochs.
    "supcon": dict(lr_at_256=0.4, weight_decay=1e-5 / (1 - MOMENTUM), batch_size=256,
                   epochs=1000, method=dict(temperature=0.2, projection_dim=128)),
}
WARMUP_EPOCHS = 10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int, default=None, metavar="N",
                        help="epochs (default: the recipe's, 200 or 1000)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="B",
                        help="batch size (default: the recipe's, 512 or 256); the learning rate "
                             "scales with it")
    parser.add_argument("--data", default="cifar10", metavar="DIR",
                        help="tensorflow-datasets cifar10 (prepared in --data-dir), a folder of "
                             "class folders, or a .npz with x, y, x_test, y_test")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="tensorflow-datasets data_dir")
    parser.add_argument("--knn-every", type=int, default=10, metavar="N",
                        help="held-out kNN accuracy (k=200, t=0.1) every N epochs")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default runs/cifar10_<method>)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--check", action="store_true",
                        help="build the recipe (a tiny ConvNet for the ResNet) and take 2 steps on 32 "
                             "random images (seconds)")
    return parser.parse_args(argv)


def build_recipe(method: str, batch_size: int, epochs: int, steps_per_epoch: int,
                 width: int = 64, seed: int = 0):
    """The compiled model of a recipe: ResNet-18 (3x3 stem; width 0: a tiny ConvNet), augmenter,
    method, SGD with warm-up and cosine decay."""
    recipe = RECIPES[method]
    # --check: a small ConvNet stands in for the ResNet-18, to trace in seconds on a CPU.
    encoder = (encoders.ResNet(18, (32, 32, 3), small_images=True, width=width) if width
               else encoders.ConvNet((32, 32, 3), width=4))
    if method == "moco":
        augmenter = augment.moco_v2(32, blur=False, seed=seed)
    else:  # SimCLR's CIFAR-10 views (and SupCon's): color strength 0.5, no blur
        augmenter = augment.simclr(32, strength=0.5, blur=False, seed=seed)
    options = dict(recipe["method"])
    if method == "moco":  # 2 or more examples per BatchNorm split
        options["bn_splits"] = min(options["bn_splits"], batch_size // 2)
    cls = {"simclr": keras_ssl.SimCLR, "moco": keras_ssl.MoCo, "supcon": keras_ssl.SupCon}[method]
    model = cls(encoder, augmenter=augmenter, seed=seed, **options)
    total = steps_per_epoch * epochs
    schedule = training.WarmupCosine(recipe["lr_at_256"] * batch_size / 256, total,
                                     warmup_fraction=min(WARMUP_EPOCHS / epochs, 0.5))
    optimizer = keras.optimizers.SGD(schedule, momentum=MOMENTUM,
                                     weight_decay=recipe["weight_decay"])
    # "auto": XLA compiles the whole step on a GPU, off on a CPU.
    model.compile(optimizer=optimizer, jit_compile="auto")
    return model


def load_data(args):
    if args.check:
        rng = np.random.default_rng(args.seed)
        x = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
        y = np.arange(48) % 10
        return keras_ssl.data.load({"x": x[:32], "y": y[:32], "x_test": x[32:], "y_test": y[32:]})
    data = keras_ssl.data.load(args.data, data_dir=args.data_dir, seed=args.seed)
    if data.input_shape != (32, 32, 3) or data.y_test is None:
        raise KerasSSLError(
            f"{args.data!r} holds images of shape {data.input_shape}"
            f"{'' if data.y_test is not None else ' without labelled held-out images'}; the "
            "recipes need 32x32 RGB images with labels (CIFAR-10)."
        )
    return data


def write_curves(history, monitor, out: Path) -> None:
    logs = history.history
    (out / "history.json").write_text(json.dumps(
        {"history": logs, "knn": {str(k): v for k, v in monitor.scores.items()}}, indent=1))
    keys = sorted(logs)
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *keys])
        for epoch in range(len(logs.get("loss", []))):
            writer.writerow([epoch + 1, *(logs[k][epoch] if epoch < len(logs[k]) else ""
                                          for k in keys)])
    keras_ssl.plot.plot_history(history, out / "curves.png", knn=monitor)


def main(argv=None) -> int:
    args = parse_args(argv)
    recipe = RECIPES[args.method]
    batch_size = args.batch_size or (16 if args.check else recipe["batch_size"])
    epochs = args.epochs or (1 if args.check else recipe["epochs"])
    policy = precision.set_precision("auto")  # mixed_float16 with a GPU; before building
    try:
        data = load_data(args)
    except KerasSSLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    steps = checkpoint.steps_per_epoch(len(data.x_train), batch_size)
    model = build_recipe(args.method, batch_size, epochs, steps, width=0 if args.check else 64,
                         seed=args.seed)
    out = Path(args.out or (tempfile.mkdtemp() if args.check else f"runs/cifar10_{args.method}"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.method}: {model.encoder.name} ({model.encoder.count_params():,} parameters), batch "
          f"{batch_size}, {epochs} epochs of {steps} steps, SGD peak lr "
          f"{recipe['lr_at_256'] * batch_size / 256:g}, precision {policy}")
    monitor = callbacks.KNNMonitor((data.x_train, data.y_train), (data.x_test, data.y_test),
                                   every_n_epochs=max(1, args.knn_every), k=200, temperature=0.1,
                                   verbose=1)
    history = checkpoint.fit_resumable(
        model, data.x_train, data.y_train if args.method == "supcon" else None,
        batch_size=batch_size, epochs=epochs, seed=args.seed,
        checkpoint_dir=None if args.check else out / "checkpoints", save_every_steps=1000,
        callbacks=[monitor], verbose=0 if args.check else "auto",
    )
    write_curves(history, monitor, out)
    loss = float(history.history["loss"][-1])
    taken = int(model.optimizer.iterations.numpy())
    knn = monitor.scores[max(monitor.scores)] if monitor.scores else float("nan")
    print(f"steps taken: {taken}, final loss {loss:.4f} ({'finite' if math.isfinite(loss) else 'NOT finite'}), "
          f"held-out kNN accuracy {knn:.4f}; curves in {out}")
    if not args.check:
        print(f"exported encoder to {keras_ssl.export_encoder(model, out / 'encoder')}")
    return 0 if math.isfinite(loss) else 1


if __name__ == "__main__":
    sys.exit(main())
