"""SimCLR augmentation: keras_ssl's batched in-graph recipe against a per-image tf.data map.

Ways to make SimCLR views (random resized crop 8-100% area, aspect 3/4-4/3, horizontal flip,
colour jitter 0.8/0.8/0.8/0.2 with p=0.8, grayscale with p=0.2; plus Gaussian blur with p=0.5
from 64 px up) of the same `--batch-size` random uint8 images, as float32 views in [0, 1] of the
same shape, in views per second and CPU time per view, measured in the same run:

- `graph`:      `keras_ssl.augment.simclr(size)` on a whole batch in a plain `tf.function` (as in
  a train step without XLA: the views compile on their own, `FusedAugmenter.compile_views`);
- `graph, views not compiled` (with `--uncompiled`): the same with `compile_views=False`, every
  op a TensorFlow op;
- `graph+XLA`:  `tf.function(jit_compile=True)` around it (as inside a compiled train step);
- `tf.data map`: the usual TensorFlow way, one image at a time in `Dataset.map` with
  `num_parallel_calls=AUTOTUNE`: `tf.image.stateless_sample_distorted_bounding_box` + slice +
  resize, `stateless_random_flip_left_right`, brightness/contrast/saturation/hue with the
  `tf.image.stateless_random_*` ops in a fixed order under a `tf.cond`, `rgb_to_grayscale` under
  another, and `tf.nn.depthwise_conv2d` for the blur, then `batch` and `prefetch`.

The ways take turns: each of `--repeats` rounds times every way once (`--batches` batches, fewer
at large sizes), and each figure is the median of its rounds, so load from other work on the
machine falls on all ways alike. The load average is printed at the start and the end.

`--step-share` adds the views' share of a SimCLR training step with a ResNet-18 encoder (the
small-image stem below 64 px, as the CLI builds it) at each size: the median seconds of a `fit`
step (XLA off, the CPU default; both views made inside it) against the two views alone.

    python benchmarks/augment.py                      # 32, 96 and 224 px, batch 256
    python benchmarks/augment.py --uncompiled --step-share --json results/augment.json
    python benchmarks/augment.py --image-sizes 96,224 --stages   # where the time goes
    python benchmarks/augment.py --image-sizes 32 --batch-size 512
    python benchmarks/augment.py --quick              # seconds: tiny sizes, to check it runs

Each JSON row has `key` (`recipe`, `recipe_ops`, `recipe_xla`, `map`), `size`,
`views_per_s`, `cpu_ms_per_1000`, and `speedup` / `cpu_speedup` against the map of the same size;
`stages` rows have `stage`, `compiled` and `cpu_ms_per_1000`; `share` rows have `step_ms`, `views_ms`
and `share`.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import (
    fill_defaults,
    fit_seconds_per_step,
    load_average,
    machine,
    print_machine,
    print_table,
    write_json,
)

import numpy as np  # isort: skip
import tensorflow as tf  # isort: skip

from keras_ssl import augment  # noqa: E402
from keras_ssl.augment.recipes import blur_kernel_size  # noqa: E402

STRENGTH = 1.0  # colour distortion strength s, as the recipe's default
FULL = {"image_sizes": "32,96,224", "batch_size": 256, "batches": 20, "repeats": 5,
        "share_batch": 32, "share_steps": 3}
QUICK = {"image_sizes": "16", "batch_size": 16, "batches": 2, "repeats": 1, "share_batch": 4,
         "share_steps": 1}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="SimCLR views per second: batched in-graph augmentation (with and without "
        "XLA) against a per-image tf.data map, in the same run.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--image-sizes", default=None,
                        help="comma-separated square image sizes in pixels (32,96; --quick: 16)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (256; --quick: 16)")
    parser.add_argument("--uncompiled", action="store_true",
                        help="also time the recipe in a plain graph with compile_views=False")
    parser.add_argument("--stages", action="store_true",
                        help="also time each stage the recipe compiles separately "
                        "(FusedAugmenter.stages: the crop and its flip, the colour, a wide blur)")
    parser.add_argument("--step-share", action="store_true",
                        help="also time a ResNet-18 SimCLR step and the views' share of it")
    parser.add_argument("--share-batch", type=int, default=None,
                        help="batch of the --step-share steps (32; --quick: 4)")
    parser.add_argument("--share-steps", type=int, default=None,
                        help="timed --step-share steps per size, after one warm-up (3; --quick: 1)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3),
                        help="3 (RGB: the full recipe) or 1 (no saturation, hue, grayscale) (3)")
    parser.add_argument("--batches", type=int, default=None,
                        help="batches timed per way and round at 32 px, fewer at larger sizes "
                        "(x 32 / size, at least 3), after one warm-up batch (20; --quick: 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds; each way's median is kept (5; --quick: 1)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="check that everything runs, in seconds: the --quick values of the "
                        "options not given")
    args = parser.parse_args(argv)
    fill_defaults(args, FULL, QUICK)
    try:
        args.sizes = [int(s) for s in args.image_sizes.split(",")]
    except ValueError:
        parser.error(f"--image-sizes takes comma-separated integers, got {args.image_sizes!r}")
    if min(args.sizes, default=0) < 1 or min(args.batch_size, args.batches, args.repeats) < 1:
        parser.error("image sizes, --batch-size, --batches and --repeats must be positive")
    return args


# ----- the per-image tf.data way ----------------------------------------------------------------
def per_image_view(image, seed, size: int, channels: int):
    """One SimCLR view of one uint8 image [H, W, C] with stateless per-image ops."""
    seeds = tf.random.experimental.stateless_split(seed, 8)
    image = tf.image.convert_image_dtype(image, tf.float32)
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
        area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.image.resize(tf.slice(image, begin, extent), [size, size])
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    s = STRENGTH

    def jitter(x):
        factor = tf.random.stateless_uniform([], seeds[2], 1 - 0.8 * s, 1 + 0.8 * s)
        x = tf.clip_by_value(x * factor, 0.0, 1.0)
        x = tf.clip_by_value(
            tf.image.stateless_random_contrast(x, 1 - 0.8 * s, 1 + 0.8 * s, seeds[3]), 0.0, 1.0)
        if channels == 3:
            x = tf.clip_by_value(tf.image.stateless_random_saturation(
                x, 1 - 0.8 * s, 1 + 0.8 * s, seeds[4]), 0.0, 1.0)
            x = tf.image.stateless_random_hue(x, 0.2 * s, seeds[5])
        return tf.clip_by_value(x, 0.0, 1.0)

    coins = tf.random.stateless_uniform([3], seeds[6])
    image = tf.cond(coins[0] < 0.8, lambda: jitter(image), lambda: image)
    if channels == 3:
        image = tf.cond(coins[1] < 0.2,
                        lambda: tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3]),
                        lambda: image)
    if size >= augment.recipes.MIN_BLUR_SIZE:
        k = blur_kernel_size(size)

        def blur(x):
            sigma = tf.random.stateless_uniform([], seeds[7], 0.1, 2.0)
            taps = tf.range(k, dtype=tf.float32) - (k - 1) / 2
            g = tf.exp(-0.5 * (taps / sigma) ** 2)
            g = g / tf.reduce_sum(g)
            kernel_h = tf.tile(tf.reshape(g, [k, 1, 1, 1]), [1, 1, channels, 1])
            kernel_w = tf.tile(tf.reshape(g, [1, k, 1, 1]), [1, 1, channels, 1])
            y = tf.nn.depthwise_conv2d(x[None], kernel_h, [1, 1, 1, 1], "SAME")
            return tf.nn.depthwise_conv2d(y, kernel_w, [1, 1, 1, 1], "SAME")[0]

        image = tf.cond(coins[2] < 0.5, lambda: blur(image), lambda: image)
    return image


def per_image_dataset(x, size, channels, batch_size, seed=0):
    images = tf.data.Dataset.from_tensor_slices(x).repeat()
    return (
        images.enumerate()
        .map(lambda i, img: per_image_view(img, tf.stack([tf.constant(seed, tf.int64), i]),
                                           size, channels),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


# ----- measuring ----------------------------------------------------------------------------------
def time_batches(run_batch, batches) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all its threads) for `batches` batches."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        run_batch()
    return time.perf_counter() - wall, time.process_time() - cpu


def check_views(views, shape, key) -> None:
    """Every way must make float32 views in [0, 1] of the same shape: else the race is unfair."""
    if views.shape != shape or views.dtype != np.float32 or not (
        np.isfinite(views).all() and views.min() >= -1e-5 and views.max() <= 1 + 1e-5
    ):
        raise SystemExit(f"{key}: views of shape {views.shape} {views.dtype} in "
                         f"[{views.min():.3g}, {views.max():.3g}], expected {shape} float32 in "
                         "[0, 1]")


WAYS = (  # key, name, jit_compile, compile_views
    ("recipe", "graph", False, True),
    ("recipe_xla", "graph+XLA", True, True),
)
UNCOMPILED = ("recipe_ops", "graph, views not compiled", False, False)


def measure(size, args) -> list[dict]:
    """All ways on the same `args.batch_size` images of `size` px, taking turns."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch_size, size, size, args.channels), np.uint8)
    batch = tf.constant(x)
    expected = (args.batch_size, size, size, args.channels)
    batches = args.batches if args.quick else max(3, round(args.batches * 32 / size))
    runners, rows = [], []
    ways = (WAYS[0], UNCOMPILED, WAYS[1]) if args.uncompiled else WAYS
    for key, name, jit, compiled in ways:
        recipe = augment.simclr(size, seed=0)
        recipe.compile_views = compiled
        fn = tf.function(lambda images, r=recipe: r(images, training=True), jit_compile=jit)
        check_views(fn(batch).numpy(), expected, key)
        fn(batch).numpy()  # warm-up
        runners.append(lambda f=fn: f(batch).numpy())
        rows.append({"key": key, "size": size,
                     "way": f"keras_ssl.augment.simclr, batched, {name}"})
    dataset = per_image_dataset(x, size, args.channels, args.batch_size)
    check_views(next(iter(dataset)).numpy(), expected, "map")
    runners.append(None)  # a fresh iterator each round, below
    rows.append({"key": "map", "size": size, "way": "per-image tf.data map (AUTOTUNE)"})
    times = [[] for _ in rows]
    for _ in range(args.repeats):
        for timings, run_batch in zip(times, runners, strict=True):
            if run_batch is not None:
                timings.append(time_batches(run_batch, batches))
                continue
            # The map's own iterator for its turn only: its threads must not keep working
            # (filling the prefetch buffer) while the other ways are timed.
            iterator = iter(dataset)
            next(iterator).numpy()  # warm-up: the pipeline's threads start
            timings.append(time_batches(lambda it=iterator: next(it).numpy(), batches))
            del iterator
    views = batches * args.batch_size
    for row, timings in zip(rows, times, strict=True):
        row["views_per_s"] = views / float(np.median([wall for wall, _ in timings]))
        row["cpu_ms_per_1000"] = 1e6 * float(np.median([cpu for _, cpu in timings])) / views
    base = rows[-1]
    for row in rows:
        row["speedup"] = row["views_per_s"] / base["views_per_s"]
        row["cpu_speedup"] = base["cpu_ms_per_1000"] / row["cpu_ms_per_1000"]
    return rows


def stage_times(size, args) -> list[dict]:
    """CPU time of each stage of the recipe as its `call` runs them outside XLA: each compiled
    stage alone with XLA, a wide blur as TensorFlow ops, on the previous stage's output."""
    x = np.random.default_rng(0).integers(0, 256, (args.batch_size, size, size, args.channels),
                                          np.uint8)
    recipe = augment.simclr(size, seed=0)
    params = recipe.draw(tf.constant(x))
    ways = {True: tf.function(recipe.views, jit_compile=True, autograph=False),
            False: tf.function(recipe.views, autograph=False)}
    batches = args.batches if args.quick else max(3, round(args.batches * 32 / size))
    rows, inputs = [], tf.constant(x)
    for start, stop, compiled in recipe.stages():
        fn = ways[compiled]
        outputs = fn(inputs, params, start, stop)
        outputs.numpy()  # warm-up: traces and compiles

        def run(i=inputs, a=start, b=stop, f=fn):
            return f(i, params, a, b).numpy()

        cpu = np.median([time_batches(run, batches)[1] for _ in range(args.repeats)])
        layers = recipe.augmentations[start:stop]
        rows.append({"size": size, "stage": " + ".join(type(layer).__name__ for layer in layers),
                     "compiled": "XLA" if compiled else "TensorFlow ops",
                     "cpu_ms_per_1000": 1e6 * float(cpu) / (batches * args.batch_size)})
        inputs = outputs
    return rows


def step_share(size, args) -> dict:
    """The views' share of a ResNet-18 SimCLR step (XLA off) at `size` px."""
    import keras

    import keras_ssl
    from keras_ssl import encoders, training

    keras.utils.set_random_seed(0)
    shape = (size, size, args.channels)
    model = keras_ssl.SimCLR(encoders.ResNet(18, shape), seed=0)
    model.compile(optimizer=training.default_optimizer(1e-3, 1000), jit_compile=False)
    x = np.random.default_rng(0).integers(0, 256, (args.share_batch, *shape), np.uint8)
    data = tf.data.Dataset.from_tensors(x).repeat().prefetch(2)
    step = fit_seconds_per_step(model, data, args.share_steps, warmup=1)
    aug, images = model.augmenter, tf.constant(x)
    views = tf.function(lambda b: tf.concat([aug(b, training=True), aug(b, training=True)], 0))
    views(images).numpy()
    timings = [time_batches(lambda: views(images).numpy(), 1)[0]
               for _ in range(max(3, args.share_steps))]
    views_s = float(np.median(timings))
    return {"size": size, "batch": args.share_batch, "step_ms": 1e3 * step,
            "views_ms": 1e3 * views_s, "share": views_s / step}


def main(argv=None):
    args = parse_args(argv)
    info = machine()
    print_machine(info)
    rows = []
    for size in args.sizes:
        rows += measure(size, args)
    print(f"\nSimCLR views of uint8 {args.channels}-channel images, batch {args.batch_size}; "
          f"medians of {args.repeats} rounds; speed-up against the per-image tf.data map of the "
          "same size:\n")
    print_table(rows, [("size", "px", "d"), ("way", "augmentation", ""),
                       ("views_per_s", "views/s", ",.0f"), ("speedup", "x map (wall)", ".2f"),
                       ("cpu_ms_per_1000", "CPU ms / 1000 views", ",.1f"),
                       ("cpu_speedup", "x map (CPU)", ".2f")])
    stages = []
    if args.stages:
        stages = [row for size in args.sizes for row in stage_times(size, args)]
        print(f"\nThe recipe's stages, each as its call runs it, batch {args.batch_size}; medians "
              f"of {args.repeats} rounds:\n")
        print_table(stages, [("size", "px", "d"), ("stage", "stage", ""),
                             ("compiled", "compiled", ""),
                             ("cpu_ms_per_1000", "CPU ms / 1000 views", ",.1f")])
    shares = []
    if args.step_share:
        shares = [step_share(size, args) for size in args.sizes]
        print(f"\nThe two views' share of a ResNet-18 SimCLR step (XLA off), batch "
              f"{args.share_batch}:\n")
        print_table(shares, [("size", "px", "d"), ("step_ms", "step ms", ",.1f"),
                             ("views_ms", "2 views ms", ",.1f"), ("share", "share", ".1%")])
    info["load_average_1min_at_end"] = load_average()
    print(f"\n# load average at the end: {info['load_average_1min_at_end']}")
    write_json(args.json, {"machine": info, "args": vars(args), "rows": rows, "stages": stages,
                           "shares": shares})
    return 0


if __name__ == "__main__":
    sys.exit(main())
