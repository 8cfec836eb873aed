"""Training throughput of every method, with and without XLA, against a float32 matmul peak.

For each registered method (or `--methods`), one model on random uint8 images (token ids for
`mlm`) is compiled with `jit_compile=True` and `False`, and timed through `model.fit`:

- `in-memory`: one batch already materialised, repeated (`Dataset.from_tensors(batch).repeat()`);
- `pipeline`: the real input pipeline, `keras_ssl.data.to_dataset` (uint8 batches gathered from
  the in-memory arrays, shuffled, prefetched);

as the median seconds per step after warm-up (the first steps compile). FLOPs are counted on the
step Keras traced (every convolution and its two gradients, dense layers, attention, the
augmentation's einsums; 2 per multiply-add) and divided by the step time, then by the float32
matmul peak measured at the start of the same run.

`--suite references` measures the comparisons instead: keras-io's SimCLR example (its
`RandomZoom`/`RandomTranslation` augmenter keeps Keras from compiling it) against keras_ssl's
SimCLR on the same 4-conv encoder and projection head, and a PyTorch SimCLR step against
keras_ssl's SimCLR on the same 4-conv encoder and on the same ResNet-18 (small-image stem), all at
32 px RGB. PyTorch runs in a process of its own (`benchmarks/_torch_reference.py`, no TensorFlow
loaded beside it) on two views that are already made; lightly's own SimCLR (its ResNet-18, head,
loss and `SimCLRTransform` views in a `DataLoader`, `benchmarks/_lightly_reference.py`) runs end
to end beside keras_ssl's ResNet-18 step through its input pipeline. They need torch (and
lightly) in this interpreter or in the one `--torch-python` names, and are skipped, with a note,
without them or with `--no-torch`.

    python benchmarks/train_step.py                                  # every method, batch 256
    python benchmarks/train_step.py --suite references --json results/references.json
    python benchmarks/train_step.py --methods simclr,rotnet --batch-size 128 --steps 5
    python benchmarks/train_step.py --precision float32,mixed_bfloat16 --xla off  # side by side
    python benchmarks/train_step.py --quick                          # seconds: checks it runs
    python benchmarks/train_step.py --suite references --quick --no-resnet
    python benchmarks/train_step.py --suite references --torch-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import (
    best_time,
    fill_defaults,
    fit_seconds_per_step,
    fit_step_seconds,
    machine,
    matmul_peak,
    print_machine,
    print_table,
    step_flops,
    write_json,
)
from _kerasio_reference import KERAS_IO_PARAMETERS, KerasIOSimCLR, kerasio_encoder, kerasio_simclr

import keras  # isort: skip
import numpy as np  # isort: skip
import tensorflow as tf  # isort: skip

import keras_ssl  # noqa: E402
from keras_ssl import data as data_lib  # noqa: E402
from keras_ssl import encoders, training, xla  # noqa: E402
from keras_ssl.methods import METHODS, get_method  # noqa: E402

FULL = {"methods": "", "batch_size": 256, "examples": 4096, "steps": 8, "warmup": 2,
        "resnet_steps": 3}  # "": every registered method
QUICK = {"methods": "simclr", "batch_size": 16, "examples": 64, "steps": 2, "warmup": 1,
         "resnet_steps": 1}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Training steps per second of keras_ssl methods, XLA against not, as FLOP/s "
        "against a float32 matmul peak; or (--suite references) against keras-io's SimCLR and "
        "PyTorch.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--suite", default="methods", choices=("methods", "references", "all"),
                        help="methods: every method, XLA on and off (default); references: "
                        "keras-io's example, keras_ssl and PyTorch on the same encoders; all: both")
    parser.add_argument("--methods", default=None,
                        help="comma-separated method names, or all (default: all; --quick: "
                        f"{QUICK['methods']}); from {', '.join(sorted(METHODS))}")
    parser.add_argument("--encoder", default="convnet", choices=("convnet", "kerasio", "resnet18"),
                        help="image encoder of the methods suite (default convnet, width 32)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step (256; --quick: 16)")
    parser.add_argument("--image-size", type=int, default=32,
                        help="square image size in pixels (32; the keras-io encoder needs 31+)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3),
                        help="image channels of the methods suite (3)")
    parser.add_argument("--examples", type=int, default=None,
                        help="size of the in-memory data set the pipeline draws from (4096; "
                        "--quick: 64)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per measurement; the median is kept (8; --quick: 2)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first; the first one compiles (2; --quick: 1)")
    parser.add_argument("--resnet-steps", type=int, default=None,
                        help="timed steps for the ResNet-18 references (3, 10-20 s each at "
                        "batch 256 on 2 CPU cores; --quick: 1)")
    parser.add_argument("--xla", default="both", choices=("both", "on", "off"),
                        help="time keras_ssl's steps with jit_compile=True, False or both (both)")
    parser.add_argument("--precision", default="float32", metavar="P[,P...]",
                        help="Keras policies to time keras_ssl's steps under, side by side: "
                             "float32, mixed_bfloat16, mixed_float16 (float32). bfloat16 pays on "
                             "CPUs with bfloat16 units (AVX512_BF16, AMX); keras-io's example "
                             "runs in float32 as written")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the PyTorch and lightly references")
    parser.add_argument("--torch-python", default=sys.executable, metavar="PYTHON",
                        help="the interpreter that runs the PyTorch and lightly references "
                        "(default: this one; it needs torch, and lightly for lightly's row)")
    parser.add_argument("--no-resnet", action="store_true",
                        help="skip the ResNet-18 references (the slow part of --suite references)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="check that everything runs, in seconds: the --quick values of the "
                        "options not given")
    args = parser.parse_args(argv)
    fill_defaults(args, FULL, QUICK)
    if args.methods in ("", "all"):
        args.methods = ",".join(sorted(METHODS))
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(sorted(METHODS))}")
    if min(args.batch_size, args.steps, args.resnet_steps) < 1 or args.warmup < 0:
        parser.error("--batch-size, --steps and --resnet-steps must be positive, --warmup >= 0")
    args.examples = max(args.examples, args.batch_size)
    return args


def precisions(args) -> list[str]:
    """The policies to time keras_ssl under, in order (checked names)."""
    return [keras_ssl.precision.resolve_precision(p.strip()) for p in args.precision.split(",")]


def peak_of(peaks: dict, policy: str) -> float:
    """The matmul peak of the dtype `policy` computes in (`matmul_peak`'s keys)."""
    dtype = keras.mixed_precision.Policy(policy).compute_dtype
    return peaks["tensorflow" if dtype == "float32" else f"tensorflow_{dtype}"]


def xla_modes(args) -> tuple[bool, ...]:
    """The jit_compile values to time, in order."""
    return {"both": (True, False), "on": (True,), "off": (False,)}[args.xla]


def settings(args) -> list[tuple[str, bool]]:
    """(policy, jit_compile) of each keras_ssl row to time, in order."""
    return [(policy, jit) for policy in precisions(args) for jit in xla_modes(args)]


# ----- models ------------------------------------------------------------------------------------
def image_encoder(kind, input_shape):
    if kind == "kerasio":
        return kerasio_encoder(input_shape)
    if kind == "resnet18":  # as the CLI builds it: the small-image stem below 64 px only
        return encoders.ResNet(18, input_shape)
    return encoders.ConvNet(input_shape, width=32)


def build_method(name, args, seed=0):
    """(model, x, y) for a registered method at the benchmark's sizes."""
    cls, preset = get_method(name)
    rng = np.random.default_rng(seed)
    n = args.examples
    if name in ("mlm", "next_token"):
        vocab, length = 5000, 64
        encoder = encoders.build("transformer", (length,), width=64, kind="text", vocab_size=vocab,
                                 causal=name == "next_token")
        x = rng.integers(3, vocab, (n, length)).astype("int32")
        return cls(encoder, vocab, seed=seed), x, None
    if "images" not in cls.input_kinds:  # the series methods: 128 steps of 3 channels
        shape = (128, 3)
        encoder = encoders.build(cls.default_encoder or "resnet1d", shape)
        x = rng.normal(size=(n, *shape)).astype("float32")
        return cls(encoder, seed=seed, **preset), x, None
    shape = (args.image_size, args.image_size, args.channels)
    kwargs = dict(preset)
    if name == "moco":
        kwargs["queue_size"] = max(4096, 2 * args.batch_size)
    if name == "jigsaw" and args.image_size < 24:
        kwargs.update(grid=2, tile_size=8)
    encoder = (encoders.build(cls.default_encoder, shape) if name == "mae"  # MAE needs a ViT
               else image_encoder(args.encoder, shape))
    model = cls(encoder, seed=seed, **kwargs)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype("int64") if cls.needs_labels else None
    return model, x, y


# ----- measuring a keras model ----------------------------------------------------------------
def datasets(x, y, batch_size):
    """(in-memory, pipeline): one repeated batch, and keras_ssl's real input pipeline."""
    first = (x[:batch_size], y[:batch_size]) if y is not None else x[:batch_size]
    in_memory = tf.data.Dataset.from_tensors(first).repeat().prefetch(2)
    pipeline = data_lib.to_dataset(x, y, batch_size=batch_size, repeat=True)
    return in_memory, pipeline


def measure_keras(model, x, y, args, jit, steps=None, pipeline=True, optimizer=None):
    steps = steps or args.steps
    model.compile(optimizer=optimizer or training.default_optimizer(1e-3, 10_000),
                  jit_compile=jit)
    in_memory, real = datasets(x, y, args.batch_size)
    durations = fit_step_seconds(model, in_memory, args.warmup + steps)
    seconds = float(np.median(durations[args.warmup:]))
    row = {"seconds_per_step": seconds, "img_per_s": args.batch_size / seconds,
           "jit": bool(model.jit_compile), "xla_compiled": xla.xla_compiled(model),
           "first_step_s": float(durations[0])}
    row["gflop_per_step"] = step_flops(model) / 1e9
    row["gflop_per_s"] = row["gflop_per_step"] / seconds
    if pipeline:
        piped = fit_seconds_per_step(model, real, steps, 1)
        row["pipeline_img_per_s"] = args.batch_size / piped
        row["pipeline_ratio"] = seconds / piped
    return row


def augmentation_ms(model, x, args, jit):
    """Milliseconds for the method's two views of one batch, alone (the SimCLR recipe)."""
    batch = tf.constant(x[: args.batch_size])
    aug = model.augmenter
    views = tf.function(lambda b: tf.concat([aug(b, training=True), aug(b, training=True)], 0),
                        jit_compile=jit)
    views(batch).numpy()
    return 1e3 * best_time(lambda: views(batch).numpy(), repeats=max(3, args.steps // 2))


def methods_suite(args, peaks):
    rows = []
    for name in args.methods.split(","):
        for policy, jit in settings(args):
            keras.utils.set_random_seed(0)
            keras_ssl.precision.set_precision(policy)
            model, x, y = build_method(name, args)
            row = {"method": name, "encoder": model.encoder.name, "precision": policy,
                   "xla": "on" if jit else "off"}
            row.update(measure_keras(model, x, y, args, jit))
            row["peak_fraction"] = row["gflop_per_s"] / peak_of(peaks, policy)
            rows.append(row)
            print(f"# {name} {policy} xla={row['xla']}: {row['img_per_s']:.1f} img/s "
                  f"({row['gflop_per_s']:.1f} GFLOP/s)", flush=True)
    keras_ssl.precision.set_precision("float32")
    return rows


# ----- PyTorch references ---------------------------------------------------------------------
def has_modules(python, names) -> bool:
    """Whether the interpreter `python` can import every module in `names`."""
    check = ("import importlib.util as u, sys; "
             f"sys.exit(not all(u.find_spec(n) for n in {list(names)!r}))")
    try:
        return subprocess.run([python, "-c", check], capture_output=True).returncode == 0
    except OSError:  # no such interpreter
        return False


def torch_in_subprocess(kind, args, steps, warmup, notes):
    """A reference in a fresh process of `--torch-python` (PyTorch alone, with its own matmul
    peak): `kind` "kerasio" or "resnet18" (`_torch_reference.py`, views ready) or "lightly"
    (`_lightly_reference.py`, end to end); its row, or None (with the reason in `notes`) when
    skipped or failed."""
    key = "lightly" if kind == "lightly" else "pytorch"
    needs = ("torch", "lightly") if kind == "lightly" else ("torch",)
    if args.no_torch:
        notes[key] = "skipped (--no-torch)"
        return None
    if not has_modules(args.torch_python, needs):
        notes[key] = (f"skipped: {' and '.join(needs)} not installed for {args.torch_python} "
                      f"(pip install {' '.join(needs)}, or --torch-python)")
        print(f"# {key} {kind}: {notes[key]}", flush=True)
        return None
    script = "_lightly_reference.py" if kind == "lightly" else "_torch_reference.py"
    command = [args.torch_python, str(Path(__file__).with_name(script)),
               *([] if kind == "lightly" else [kind]),
               "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
               "--steps", str(steps), "--warmup", str(warmup)]
    if kind == "lightly":
        command += ["--examples", str(args.examples)]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        notes[key] = f"{kind} failed (exit {result.returncode})"
        print(f"# {key} {kind} failed:\n{result.stderr[-2000:]}", flush=True)
        return None
    notes.setdefault(key, "measured")
    return json.loads(lines[-1][len("RESULT "):])


def label(policy, jit) -> str:
    """A row key's suffix: xla_on / xla_off in float32, with the policy otherwise."""
    xla_part = f"xla_{'on' if jit else 'off'}"
    return xla_part if policy == "float32" else f"{policy}_{xla_part}"


def describe(policy, jit) -> str:
    return f"XLA {'on' if jit else 'off'}" + ("" if policy == "float32" else f", {policy}")


def references_suite(args, peaks, notes):
    rows = []
    shape = (args.image_size, args.image_size, 3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.examples, *shape), dtype=np.uint8)

    def add(row, policy="float32", **labels):
        row.update(labels, precision=policy)
        row["peak_fraction"] = row["gflop_per_s"] / peak_of(peaks, policy)
        rows.append(row)
        print(f"# {row['run']}: {row['img_per_s']:.1f} img/s ({row['gflop_per_s']:.1f} GFLOP/s)",
              flush=True)

    # keras-io's example as written: Keras turns XLA off for its RandomZoom/RandomTranslation;
    # float32 (its RandomColorAffine fails under a mixed policy).
    keras.utils.set_random_seed(0)
    keras_ssl.precision.set_precision("float32")
    reference = KerasIOSimCLR(shape)
    encoder_parameters = reference.encoder.count_params()
    row = measure_keras(reference, x, None, args, jit="auto", pipeline=False,
                        optimizer=keras.optimizers.Adam())
    add(row, key="kerasio_example", run="keras-io SimCLR example (its augmenter; XLA impossible)",
        encoder="keras-io 4-conv", framework="Keras", parameters=encoder_parameters)
    for policy, jit in settings(args):
        keras.utils.set_random_seed(0)
        keras_ssl.precision.set_precision(policy)
        model = kerasio_simclr(shape)
        row = measure_keras(model, x, None, args, jit, optimizer=keras.optimizers.Adam())
        row["augment_ms"] = augmentation_ms(model, x, args, jit)
        add(row, policy, key=f"keras_ssl_kerasio_{label(policy, jit)}",
            run=f"keras_ssl SimCLR, same encoder and head, {describe(policy, jit)}",
            encoder="keras-io 4-conv", framework="keras_ssl",
            parameters=model.encoder.count_params())
    row = torch_in_subprocess("kerasio", args, args.steps, args.warmup, notes)
    if row:
        add(row, key="pytorch_kerasio", run="PyTorch SimCLR step, same encoder and head "
            "(views ready)", encoder="keras-io 4-conv", framework="PyTorch")
    if args.no_resnet:
        return rows, encoder_parameters
    for policy, jit in settings(args):
        keras.utils.set_random_seed(0)
        keras_ssl.precision.set_precision(policy)
        model = keras_ssl.SimCLR(encoders.ResNet(18, shape, small_images=True), seed=0)
        # End to end through the input pipeline too without XLA (the CPU default), beside
        # lightly's DataLoader.
        row = measure_keras(model, x, None, args, jit, steps=args.resnet_steps,
                            pipeline=not jit, optimizer=keras.optimizers.Adam())
        row["augment_ms"] = augmentation_ms(model, x, args, jit)
        add(row, policy, key=f"keras_ssl_resnet18_{label(policy, jit)}",
            run=f"keras_ssl SimCLR, ResNet-18 small stem, {describe(policy, jit)}",
            encoder="ResNet-18", framework="keras_ssl", parameters=model.encoder.count_params())
    keras_ssl.precision.set_precision("float32")
    row = torch_in_subprocess("resnet18", args, args.resnet_steps, 1, notes)
    if row:
        add(row, key="pytorch_resnet18", run="PyTorch SimCLR step, ResNet-18 small stem "
            "(views ready)", encoder="ResNet-18", framework="PyTorch")
    row = torch_in_subprocess("lightly", args, args.resnet_steps, 1, notes)
    if row:
        row["pipeline_img_per_s"] = row["img_per_s"]
        add(row, key="lightly_resnet18", run="lightly SimCLR, ResNet-18, DataLoader of "
            "SimCLRTransform views (end to end)", encoder="ResNet-18", framework="lightly")
    return rows, encoder_parameters


def main(argv=None):
    args = parse_args(argv)
    info = machine()
    print_machine(info)
    dtypes = {keras.mixed_precision.Policy(p).compute_dtype for p in precisions(args)}
    peaks = matmul_peak(dtypes=["float32", *sorted(dtypes - {"float32"})])
    print(f"# matmul peaks (2048 x 2048): {peaks} GFLOP/s", flush=True)
    result = {"machine": info, "args": vars(args), "matmul_peak_gflops": peaks}
    columns_common = [("img_per_s", "img/s", ",.1f"), ("gflop_per_step", "GFLOP/step", ".2f"),
                      ("gflop_per_s", "GFLOP/s", ".1f"), ("peak_fraction", "of peak", ".1%")]
    if args.suite in ("methods", "all"):
        rows = methods_suite(args, peaks)
        result["methods"] = rows
        print(f"\nTraining steps at batch {args.batch_size}, {args.image_size} px x "
              f"{args.channels}, in-memory batch; pipeline = keras_ssl.data.to_dataset; of peak: "
              f"against the matmul peak of the row's compute dtype, {peaks}:\n")
        print_table(rows, [("method", "method", ""), ("encoder", "encoder", ""),
                           ("precision", "precision", ""), ("xla", "XLA", ""), *columns_common,
                           ("pipeline_img_per_s", "pipeline img/s", ",.1f"),
                           ("pipeline_ratio", "pipeline / in-memory", ".2f"),
                           ("first_step_s", "first step, s", ".1f")])
    if args.suite in ("references", "all"):
        notes = {}
        rows, parameters = references_suite(args, peaks, notes)
        result["references"] = rows
        result.update(notes)
        print(f"\nSimCLR at batch {args.batch_size}, {args.image_size} px RGB (keras-io encoder: "
              f"{parameters:,} parameters; the example's is {KERAS_IO_PARAMETERS:,} at 32 px); "
              f"of peak: against the matmul peak of the row's compute dtype, {peaks}:\n")
        print_table(rows, [("run", "run", ""), *columns_common,
                           ("augment_ms", "2 views alone, ms", ".1f"),
                           ("pipeline_img_per_s", "end to end img/s", ",.1f")])
        for key in ("pytorch", "lightly"):
            if result.get(key, "measured") != "measured":
                print(f"\n{key}: {result[key]}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
