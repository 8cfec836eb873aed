"""SimCLR augmentation: keras_ssl's batched in-graph recipe against a per-image tf.data map.

Three ways to make SimCLR views (random resized crop 8-100% area, aspect 3/4-4/3, horizontal flip,
colour jitter 0.8/0.8/0.8/0.2 with p=0.8, grayscale with p=0.2; plus Gaussian blur with p=0.5
from 64 px up) of the same `--batch-size` random uint8 images, as float32 views in [0, 1] of the
same shape, in views per second and CPU time per view, measured in the same run:

- `graph`:      `keras_ssl.augment.simclr(size)` on a whole batch in a `tf.function`;
- `graph+XLA`:  the same, `tf.function(jit_compile=True)` (as inside a compiled train step);
- `tf.data map`: the usual TensorFlow way, one image at a time in `Dataset.map` with
  `num_parallel_calls=AUTOTUNE`: `tf.image.stateless_sample_distorted_bounding_box` + slice +
  resize, `stateless_random_flip_left_right`, brightness/contrast/saturation/hue with the
  `tf.image.stateless_random_*` ops in a fixed order under a `tf.cond`, `rgb_to_grayscale` under
  another, and `tf.nn.depthwise_conv2d` for the blur, then `batch` and `prefetch`.

    python benchmarks/augment.py                      # 32 and 96 px, batch 256
    python benchmarks/augment.py --image-sizes 32 --batch-size 512 --json results/augment.json
    python benchmarks/augment.py --quick              # seconds: tiny sizes, to check it runs

Each JSON row has `key` (`recipe`, `recipe_xla`, `map`), `size`, `views_per_s`,
`cpu_ms_per_1000`, and `speedup` / `cpu_speedup` against the map of the same size.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import fill_defaults, machine, print_machine, print_table, write_json

import numpy as np  # isort: skip
import tensorflow as tf  # isort: skip

from keras_ssl import augment  # noqa: E402
from keras_ssl.augment.recipes import blur_kernel_size  # noqa: E402

STRENGTH = 1.0  # colour distortion strength s, as the recipe's default
FULL = {"image_sizes": "32,96", "batch_size": 256, "batches": 20, "repeats": 3}
QUICK = {"image_sizes": "16", "batch_size": 16, "batches": 2, "repeats": 1}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="SimCLR views per second: batched in-graph augmentation (with and without "
        "XLA) against a per-image tf.data map, in the same run.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--image-sizes", default=None,
                        help="comma-separated square image sizes in pixels (32,96; --quick: 16)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (256; --quick: 16)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3),
                        help="3 (RGB: the full recipe) or 1 (no saturation, hue, grayscale) (3)")
    parser.add_argument("--batches", type=int, default=None,
                        help="batches timed per way, after one warm-up batch (20; --quick: 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timings per way; the fastest is kept (3; --quick: 1)")
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
def views_per_second(run_batch, batch_size, batches, repeats) -> tuple[float, float]:
    """(views per second of wall time, CPU milliseconds per 1000 views), the best of `repeats`.

    CPU time is this process's (all its threads): on a machine shared with other work it grows
    much less than wall time does.
    """
    run_batch()  # warm-up: tracing, compilation, tf.data start-up
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            run_batch()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    views = batches * batch_size
    return views / best_wall, 1e6 * best_cpu / views


def check_views(views, shape, key) -> None:
    """Every way must make float32 views in [0, 1] of the same shape: else the race is unfair."""
    if views.shape != shape or views.dtype != np.float32 or not (
        np.isfinite(views).all() and views.min() >= -1e-5 and views.max() <= 1 + 1e-5
    ):
        raise SystemExit(f"{key}: views of shape {views.shape} {views.dtype} in "
                         f"[{views.min():.3g}, {views.max():.3g}], expected {shape} float32 in "
                         "[0, 1]")


def measure(size, args) -> list[dict]:
    """The three ways on the same `args.batch_size` images of `size` px, the map last."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch_size, size, size, args.channels), np.uint8)
    batch = tf.constant(x)
    expected = (args.batch_size, size, size, args.channels)
    rows = []
    for key, name, jit in (("recipe", "graph", False), ("recipe_xla", "graph+XLA", True)):
        recipe = augment.simclr(size, seed=0)
        fn = tf.function(lambda images, r=recipe: r(images, training=True), jit_compile=jit)
        check_views(fn(batch).numpy(), expected, key)
        rate, cpu = views_per_second(lambda f=fn: f(batch).numpy(), args.batch_size,
                                     args.batches, args.repeats)
        rows.append({"key": key, "size": size,
                     "way": f"keras_ssl.augment.simclr, batched, {name}",
                     "views_per_s": rate, "cpu_ms_per_1000": cpu})
    iterator = iter(per_image_dataset(x, size, args.channels, args.batch_size))
    check_views(next(iterator).numpy(), expected, "map")
    rate, cpu = views_per_second(lambda: next(iterator).numpy(), args.batch_size, args.batches,
                                 args.repeats)
    rows.append({"key": "map", "size": size, "way": "per-image tf.data map (AUTOTUNE)",
                 "views_per_s": rate, "cpu_ms_per_1000": cpu})
    base = rows[-1]
    for row in rows:
        row["speedup"] = row["views_per_s"] / base["views_per_s"]
        row["cpu_speedup"] = base["cpu_ms_per_1000"] / row["cpu_ms_per_1000"]
    return rows


def main(argv=None):
    args = parse_args(argv)
    info = machine()
    print_machine(info)
    rows = []
    for size in args.sizes:
        rows += measure(size, args)
    print(f"\nSimCLR views of uint8 {args.channels}-channel images, batch {args.batch_size}; "
          "speed-up against the per-image tf.data map of the same size:\n")
    print_table(rows, [("size", "px", "d"), ("way", "augmentation", ""),
                       ("views_per_s", "views/s", ",.0f"), ("speedup", "x map (wall)", ".2f"),
                       ("cpu_ms_per_1000", "CPU ms / 1000 views", ",.1f"),
                       ("cpu_speedup", "x map (CPU)", ".2f")])
    write_json(args.json, {"machine": info, "args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
