"""Streaming data: memory and time to the first step against the number of images, stream
throughput against a batch already in memory, and the decode rate beside PyTorch.

    python benchmarks/streaming.py              # full sizes: 10,000 and 100,000 JPEGs at 224 px
    python benchmarks/streaming.py --quick      # tiny folders, a few steps (what the test runs)

The image folders are generated from the CIFAR-10 JPEG tarball in ../shared (upsampled with PIL,
bilinear, JPEG quality 90; files past 50,000 are mirrored copies) under --work (default
/tmp/keras-ssl-streaming), in parallel on every core, once. Each measurement runs in a child
process of its own, so its peak RSS (`resource.getrusage`, the child's `ru_maxrss`) is its own:

- first step: `data.load(folder)` then one SimCLR step (the default encoder for the size, batch
  --first-batch), timed from the child's start (imports included), for the stream at each size and
  for the in-memory path (`stream=False`) at 2,000 images for contrast;
- throughput: SimCLR with the defaults for the size (`defaults.choose`, batch 256) trained on the
  stream against the same steps on one batch held in memory, at 32 and 96 px;
- decode: images per second out of the stream at 224 px (tf.data, decode only), and out of a
  PyTorch `ImageFolder` + `DataLoader` (as many workers as cores) on the same files, when
  --torch-python names a Python with torch and torchvision (its own venv).

The figures go to stdout as a table and, with --json, to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from multiprocessing import Pool
from pathlib import Path

START = time.monotonic()
REPO = Path(__file__).resolve().parents[1]
TARBALL = REPO.parent / "shared" / "data" / "cifar10" / "cifar10-train-jpg.tar.gz"


# ----- image folders ------------------------------------------------------------------------------
def _cifar_files(work: Path) -> list[Path]:
    root = work / "cifar10"
    marker = root / ".complete"
    if not marker.exists():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(TARBALL) as tar:
            tar.extractall(root, filter="data")
        marker.touch()
    by_class = [sorted(d.glob("*.jpg")) for d in sorted((root / "train").iterdir())]
    # Round robin over the classes: the first n files hold every class equally.
    return [files[i] for i in range(max(map(len, by_class))) for files in by_class
            if i < len(files)]


def _write_chunk(job):
    from PIL import Image, ImageOps

    sources, first, size, out = job
    for offset, source in enumerate(sources):
        index = first + offset
        target = Path(out) / Path(source).parent.name / f"{index:06d}.jpg"
        with Image.open(source) as image:
            image = image.convert("RGB").resize((size, size), Image.BILINEAR)
            if index >= 50_000:
                image = ImageOps.mirror(image)
            image.save(target, quality=90)
    return len(sources)


def make_folder(work: Path, count: int, size: int) -> Path:
    """`count` JPEGs at `size` px in class folders, made once (a `.complete` marker)."""
    out = work / f"jpeg{size}-{count}"
    if (out / ".complete").exists():
        return out
    cifar = _cifar_files(work)
    for name in sorted({p.parent.name for p in cifar}):
        (out / name).mkdir(parents=True, exist_ok=True)
    sources = [str(cifar[i % len(cifar)]) for i in range(count)]
    chunk = 500
    jobs = [(sources[i:i + chunk], i, size, str(out)) for i in range(0, count, chunk)]
    started = time.monotonic()
    with Pool(os.cpu_count() or 1) as pool:
        done = 0
        for n in pool.imap_unordered(_write_chunk, jobs):
            done += n
            if done % 10_000 < chunk:
                print(f"  {out.name}: {done:,}/{count:,} files ({time.monotonic() - started:.0f} s)",
                      file=sys.stderr, flush=True)
    (out / ".complete").touch()
    return out


# ----- the measurements, each in a child process -----------------------------------------------------
def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_first_step(folder, stream, batch):
    import keras

    import keras_ssl
    from keras_ssl import data, defaults

    loaded = data.load(folder, stream=stream)
    load_s = time.monotonic() - START
    shape = loaded.input_shape
    model = keras_ssl.SimCLR(defaults.choose(shape).build_encoder(shape), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    first = {}

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            first.setdefault("s", time.monotonic() - START)

    model.fit(loaded.train_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0,
              callbacks=[FirstStep()])
    return {"images": loaded.num_train + (getattr(loaded, "num_test", 0) or (
        0 if getattr(loaded, "x_test", None) is None else len(loaded.x_test))),
            "kind": type(loaded).__name__, "load_s": round(load_s, 1),
            "first_step_s": round(first["s"], 1), "peak_rss_mb": round(_peak_rss_mb())}


def child_throughput(folder, size, steps, batch, rounds=2):
    import keras
    import tensorflow as tf

    import keras_ssl
    from keras_ssl import data, defaults

    streamed = data.load(folder, stream=True, image_size=size, test_fraction=0)
    shape = streamed.input_shape
    model = keras_ssl.SimCLR(defaults.choose(shape).build_encoder(shape), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    stream_ds = streamed.train_dataset(batch, repeat=True)
    held = next(iter(stream_ds))
    memory_ds = tf.data.Dataset.from_tensors(held).repeat()
    out = {"encoder": defaults.choose(shape).encoder, "batch": batch, "steps": steps}

    import resource

    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def rate(ds):
        model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # warm: traced, buffers filled
        started, cpu = time.perf_counter(), cpu_seconds()
        model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
        images = steps * batch
        return images / (time.perf_counter() - started), images / (cpu_seconds() - cpu)

    # Alternated, `rounds` times each, and the best of each kept: on a shared machine other work
    # only ever slows a run down, so the best run is the closest to what the step costs. Images
    # per CPU second (this process's user + system time, every thread) are steadier there: on
    # a CPU the input pipeline and the step share the cores, so their ratio is the throughput
    # ratio of a machine with nothing else running.
    runs = {"memory": [], "stream": []}
    for _ in range(rounds):
        for name, ds in (("memory", memory_ds), ("stream", stream_ds)):
            runs[name].append(tuple(round(v, 1) for v in rate(ds)))
    for name, values in runs.items():
        out[f"{name}_runs"] = values  # (img/s of wall time, img per CPU second)
        out[f"{name}_img_s"] = max(v[0] for v in values)
        out[f"{name}_img_per_cpu_s"] = max(v[1] for v in values)
    out["ratio"] = round(out["stream_img_s"] / out["memory_img_s"], 3)
    out["cpu_ratio"] = round(out["stream_img_per_cpu_s"] / out["memory_img_per_cpu_s"], 3)
    return out


def child_decode(folder, batches, batch):
    from keras_ssl import data

    streamed = data.load(folder, stream=True, test_fraction=0)
    ds = streamed.train_dataset(batch, repeat=True)
    iterator = iter(ds)
    next(iterator)  # the pipeline's start-up
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return {"img_s": round(batches * batch / (time.perf_counter() - started), 1),
            "peak_rss_mb": round(_peak_rss_mb())}


TORCH_DECODE = """
import json, os, sys, time, resource
import torch
from torchvision import datasets, transforms
folder, batches, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
workers = os.cpu_count() or 1
dataset = datasets.ImageFolder(folder, transform=transforms.PILToTensor())
loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                     num_workers=workers, persistent_workers=True)
iterator = iter(loader)
next(iterator)
started = time.perf_counter()
for _ in range(batches):
    next(iterator)
rate = batches * batch / (time.perf_counter() - started)
print(json.dumps({"img_s": round(rate, 1), "workers": workers, "torch": torch.__version__}))
"""


def run_child(task: str, *args, python=None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    command = [python or sys.executable, __file__, "--child", task, json.dumps(args)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{task}{args} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def run_torch(python, folder, batches, batch) -> dict:
    done = subprocess.run([python, "-c", TORCH_DECODE, str(folder), str(batches), str(batch)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"PyTorch decode failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----- the whole benchmark ----------------------------------------------------------------------------
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny folders, a few steps")
    parser.add_argument("--work", default="/tmp/keras-ssl-streaming", help="where folders go")
    parser.add_argument("--sizes", default=None, help="image counts of the stream rows, e.g. "
                        "10000,100000")
    parser.add_argument("--first-batch", type=int, default=32)
    parser.add_argument("--throughput-batch", type=int, default=256)
    parser.add_argument("--throughput-sizes", default="32,96")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the throughput "
                        "runs (the best of each is kept)")
    parser.add_argument("--torch-python", default=None,
                        help="a Python with torch and torchvision, for the PyTorch decode row")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: "
                        "first_step, throughput, decode")
    args = parser.parse_args(argv)
    work = Path(args.work)
    quick = args.quick
    counts = [int(c) for c in args.sizes.split(",")] if args.sizes else (
        [100, 200] if quick else [10_000, 100_000])
    big = 32 if quick else 224
    memory_count = 100 if quick else 2_000
    skip = set(filter(None, args.skip.split(",")))
    results = {"machine": _machine(), "quick": quick, "first_step": [], "throughput": [],
               "decode": []}

    if "first_step" not in skip:
        for count in counts:
            folder = make_folder(work, count, big)
            row = run_child("first_step", str(folder), True, args.first_batch)
            results["first_step"].append({"path": "stream", **row})
            print("first step", results["first_step"][-1], flush=True)
        folder = make_folder(work, memory_count, big)
        row = run_child("first_step", str(folder), False, args.first_batch)
        results["first_step"].append({"path": "in memory", **row})
        print("first step", results["first_step"][-1], flush=True)

    if "throughput" not in skip:
        for size in (32,) if quick else [int(v) for v in args.throughput_sizes.split(",")]:
            steps = 1 if quick else 6
            folder = make_folder(work, 100 if quick else 5_000, size)
            row = run_child("throughput", str(folder), size, steps,
                            16 if quick else args.throughput_batch, 1 if quick else args.rounds)
            results["throughput"].append({"size": size, **row})
            print("throughput", results["throughput"][-1], flush=True)

    if "decode" not in skip:
        folder = make_folder(work, counts[0], big)
        batches = 2 if quick else 20
        batch = 16 if quick else 256
        row = run_child("decode", str(folder), batches, batch)
        results["decode"].append({"reader": "keras-ssl stream (tf.data)", **row})
        if args.torch_python:
            row = run_torch(args.torch_python, folder, batches, batch)
            results["decode"].append({"reader": "PyTorch ImageFolder + DataLoader", **row})
        print("decode", results["decode"], flush=True)

    results["machine"]["load_average_end"] = _load()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def _load():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average_start": _load(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                 time.gmtime())}


def table(results) -> str:
    lines = ["| path | images | peak RSS | load | first step (from process start) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in results["first_step"]:
        lines.append(f"| {row['path']} | {row['images']:,} | {row['peak_rss_mb']:,} MB | "
                     f"{row['load_s']} s | {row['first_step_s']} s |")
    lines += ["", "| size | encoder, batch | stream | batch in memory | stream / memory | "
              "per CPU second: stream / memory |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for row in results["throughput"]:
        lines.append(f"| {row['size']} px | {row['encoder']}, {row['batch']} | "
                     f"{row['stream_img_s']} img/s | {row['memory_img_s']} img/s | "
                     f"{row['ratio']:.2f} | {row['cpu_ratio']:.2f} |")
    lines += ["", "| reader | decode rate |", "| --- | ---: |"]
    for row in results["decode"]:
        lines.append(f"| {row['reader']} | {row['img_s']} img/s |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        task, payload = sys.argv[2], json.loads(sys.argv[3])
        function = {"first_step": child_first_step, "throughput": child_throughput,
                    "decode": child_decode}[task]
        print(json.dumps(function(*payload)))
    else:
        main()
