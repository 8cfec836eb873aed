"""What the benchmarks share: the machine's description, a matmul peak, timing, FLOP counts, tables.

Every figure a benchmark prints is measured in the same process run, so ratios between its rows
are meaningful even on a machine shared with other work; absolute numbers are not.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
try:  # the benchmarks run from a checkout, installed or not
    import keras_ssl  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


# ----- the machine -----------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine() -> dict:
    """Where and when the figures were taken."""
    import keras

    gpus = tf.config.list_physical_devices("GPU")
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                 for g in gpus],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_average_1min_at_start": load_average(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def print_machine(info: dict) -> None:
    device = ", ".join(info["gpus"]) or "no GPU"
    print(f"# {info['date']}  {info['cpu']}, {info['cores']} cores, {device}; TF "
          f"{info['tensorflow']}, Keras {info['keras']}, torch {info['torch'] or '-'}; "
          f"load average {info['load_average_1min_at_start']}")
    print(f"# {info['command']}")


# ----- timing ----------------------------------------------------------------------------------
def best_time(fn, repeats: int = 5, number: int = 1) -> float:
    """The fastest of `repeats` timings of `number` calls of `fn`, per call, in seconds.

    The minimum, not the mean: on a shared machine other work only ever adds time.
    """
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def matmul_peak(n: int = 2048, repeats: int = 5, dtypes=("float32",)) -> dict:
    """TensorFlow's matmul GFLOP/s on n x n matrices, the best of `repeats`, per dtype.

    The float32 figure is keyed "tensorflow", others "tensorflow_<dtype>"; "peak" is float32's
    unless only other dtypes were asked for.
    """
    flops = 2.0 * n**3
    peaks = {}
    for dtype in dtypes:
        a = tf.cast(tf.random.normal([n, n]), dtype)
        b = tf.cast(tf.random.normal([n, n]), dtype)
        matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
        matmul(a, b).numpy()
        key = "tensorflow" if dtype == "float32" else f"tensorflow_{dtype}"
        peaks[key] = flops / best_time(lambda: matmul(a, b).numpy(), repeats) / 1e9  # noqa: B023
    peaks = {"peak": peaks.get("tensorflow", max(peaks.values())), **peaks}
    return {k: round(v, 1) for k, v in peaks.items()}


# ----- FLOPs of a traced TensorFlow graph -------------------------------------------------------
def _shape(tensor):
    shape = tensor.shape
    if shape.rank is None or not shape.is_fully_defined():
        return None
    return [int(d) for d in shape]


def _einsum_flops(op) -> float:
    equation = op.get_attr("equation").decode()
    inputs, _ = equation.replace(" ", "").split("->")
    sizes = {}
    for term, tensor in zip(inputs.split(","), op.inputs, strict=False):
        shape = _shape(tensor)
        if shape is None or "." in term:
            return 0.0
        sizes.update(zip(term, shape, strict=False))
    return 2.0 * float(np.prod(list(sizes.values())))


def op_flops(op) -> float:
    """Multiply-add FLOPs (2 per MAC) of a convolution or matrix product op; 0 for other ops."""
    kind = op.type
    if kind == "Conv2D":
        out, kernel = _shape(op.outputs[0]), _shape(op.inputs[1])
        if out and kernel:
            return 2.0 * np.prod(out) * kernel[0] * kernel[1] * kernel[2]
    elif kind in ("Conv2DBackpropInput", "Conv2DBackpropFilter"):
        # Both cost what the forward convolution does: out_backprop x kernel.
        grad = _shape(op.inputs[2])
        kernel = _shape(op.inputs[1]) if kind == "Conv2DBackpropInput" else _shape(op.outputs[0])
        if grad and kernel:
            return 2.0 * np.prod(grad) * kernel[0] * kernel[1] * kernel[2]
    elif kind == "MatMul":
        out, a = _shape(op.outputs[0]), _shape(op.inputs[0])
        if out and a:
            k = a[0] if op.get_attr("transpose_a") else a[1]
            return 2.0 * np.prod(out) * k
    elif kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        out, a = _shape(op.outputs[0]), _shape(op.inputs[0])
        if out and a:
            k = a[-2] if op.get_attr("adj_x") else a[-1]
            return 2.0 * np.prod(out) * k
    elif kind == "Einsum":
        return _einsum_flops(op)
    return 0.0


def graph_flops(graph) -> tuple[float, dict]:
    """Total conv/matmul FLOPs of the ops in `graph` (and the functions it calls), by op type."""
    by_type: dict[str, float] = {}
    seen = set()

    def visit(g):
        for op in g.get_operations():
            flops = op_flops(op)
            if flops:
                by_type[op.type] = by_type.get(op.type, 0.0) + flops
        for name, function in getattr(g, "_functions", {}).items():
            if name in seen:
                continue
            seen.add(name)
            inner = getattr(function, "graph", None)
            if inner is not None:
                visit(inner)

    visit(graph)
    return sum(by_type.values()), by_type


def step_flops(model, kind: str = "train") -> float:
    """Conv/matmul FLOPs of one traced `kind` step of a Keras model (forward, backward, update).

    Counted on the graph Keras traced (after `fit`): every convolution, its two gradients, dense
    layers, attention and the einsums of the augmentation, at the traced (static) batch size.
    """
    from keras_ssl._compat import concrete_functions, traced_functions

    best = 0.0
    function = getattr(model, f"{kind}_function")
    for traced in traced_functions(function):
        for concrete in concrete_functions(traced):
            name = concrete.name
            name = name.decode() if isinstance(name, bytes) else str(name)
            if "one_step_on_data" in name:
                best = max(best, graph_flops(concrete.graph)[0])
    return best


# ----- training throughput ---------------------------------------------------------------------
class StepTimer:
    """A Keras callback noting when each training batch ends."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.ends = [time.perf_counter()]

            def on_train_batch_end(self, batch, logs=None):
                self.ends.append(time.perf_counter())

        return _Timer()


def fit_step_seconds(model, dataset, steps: int) -> np.ndarray:
    """Seconds of each of `steps` steps of one `model.fit` on `dataset`; the first counts from
    the start of `fit`, so it holds the tracing and compiling of a model's first fit."""
    timer = StepTimer()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer],
              shuffle=False)
    return np.diff(timer.ends)


def fit_seconds_per_step(model, dataset, steps: int, warmup: int) -> float:
    """Median seconds per step of `model.fit` on `dataset`, after `warmup` steps (compilation).

    The median of the per-step times: robust to a step delayed by another process.
    """
    return float(np.median(fit_step_seconds(model, dataset, warmup + steps)[warmup:]))


# ----- options ---------------------------------------------------------------------------------
def fill_defaults(args, full: dict, quick: dict) -> None:
    """Give the options left unset (None) their `quick` value under `--quick`, else `full`'s.

    So `--quick` shrinks what was not asked for, and an option given on the command line wins.
    """
    for key, value in full.items():
        if getattr(args, key) is None:
            setattr(args, key, quick.get(key, value) if args.quick else value)


# ----- output ----------------------------------------------------------------------------------
def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Rows of dicts as a Markdown table; columns are (key, header, format)."""
    def cell(row, key, fmt):
        value = row.get(key)
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "-"
        return format(value, fmt) if fmt else str(value)

    cells = [[cell(r, k, f) for k, _, f in columns] for r in rows]
    headers = [h for _, h, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |")


def write_json(path, payload: dict, quiet: bool = False) -> None:
    """Write `payload` to `path` atomically (a kill leaves the previous file whole)."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    os.replace(partial, path)
    if not quiet:
        print(f"# wrote {path}")


def method_row(spec: str, shared=()) -> tuple[str, str, dict]:
    """`--method NAME[:KEY=VALUE,...]` -> (method, row label, options): the `shared` pairs (a
    benchmark's `--set`), then the row's own; a bad pair raises `KerasSSLError`."""
    from keras_ssl.pipeline import parse_method_options

    name, _, own = spec.partition(":")
    pairs = [*shared, *(pair for pair in own.split(",") if pair)]
    return name, " ".join([name, *pairs]), parse_method_options(pairs)


def torch_features(python: str, script: str, split, args: list[str], name: str) -> dict:
    """Run a PyTorch reference `script` (beside this file) with interpreter `python` on the
    split's uint8 images (`--data` .npz of `x_train`, `x_memory`, `x_test`) and return the
    arrays of the .npz it writes (`--out`); a failure raises `KerasSSLError` with its stderr."""
    from keras_ssl.errors import KerasSSLError

    with tempfile.TemporaryDirectory(prefix="keras_ssl_torch_") as folder:
        images, out = Path(folder) / "images.npz", Path(folder) / "features.npz"
        np.savez(images, x_train=split.x_train, x_memory=split.x_memory, x_test=split.x_test)
        command = [python, str(Path(__file__).with_name(script)), "--data", str(images),
                   "--out", str(out), *args]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise KerasSSLError(f"{name} failed (exit {result.returncode}):\n"
                                f"{result.stderr[-2000:]}")
        with np.load(out) as arrays:
            return {key: arrays[key] for key in arrays.files}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
