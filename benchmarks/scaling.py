"""Throughput against replicas (tf.distribute.MirroredStrategy) and against the global batch size.

For each replica count, a fresh process (logical devices are fixed when TensorFlow starts) builds
SimCLR (or `--method`) inside the strategy's scope and times `model.fit` on an in-memory batch
of each global batch size: img/s, and the speed-up over one replica at the same global batch.
Replicas are the GPUs when there are enough, otherwise logical devices of the CPU
(`keras_ssl.distribute.use_logical_cpus`), which share its cores: on a CPU this measures the
cost of the replication (all-gathered negatives, all-reduced gradients, one step per replica),
not a gain.

    python benchmarks/scaling.py                                   # 1 and 2 replicas, 64..512
    python benchmarks/scaling.py --replicas 1,2,4 --batch-sizes 256,1024 --json results/s.json
    python benchmarks/scaling.py --sync-batchnorm                  # with synchronised BN
    python benchmarks/scaling.py --quick                           # seconds: checks it runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import REPO, machine, print_machine, print_table, write_json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Training throughput for 1..N replicas and growing global batch sizes.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--replicas", default="1,2", help="comma-separated replica counts (1,2)")
    parser.add_argument("--batch-sizes", default="64,128,256,512",
                        help="comma-separated global batch sizes (64,128,256,512)")
    parser.add_argument("--method", default="simclr", help="a registered method (simclr)")
    parser.add_argument("--encoder", default="kerasio", choices=("kerasio", "convnet"),
                        help="keras-io's 4-conv encoder (default) or keras_ssl's ConvNet")
    parser.add_argument("--image-size", type=int, default=32, help="(32)")
    parser.add_argument("--sync-batchnorm", action="store_true")
    parser.add_argument("--steps", type=int, default=8, help="timed steps (8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (2)")
    parser.add_argument("--json", default=None, metavar="FILE")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.steps, args.warmup = "16,32", 2, 1
    return args


def child(args) -> None:
    """Measure every batch size with `args.child` replicas; print one JSON line."""
    replicas = args.child
    import tensorflow as tf

    from keras_ssl import distribute

    gpus = tf.config.list_physical_devices("GPU")
    if replicas > 1 and len(gpus) < replicas:
        distribute.use_logical_cpus(replicas)
    import keras
    import numpy as np
    from _common import fit_seconds_per_step
    from train_step import build_method

    if replicas == 1:
        strategy = distribute.make_strategy("none")
    else:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")][:replicas] or None
        strategy = distribute.make_strategy("mirrored", devices=devices)
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        if batch % replicas:
            continue
        settings = argparse.Namespace(examples=batch, image_size=args.image_size, channels=3,
                                      encoder=args.encoder, batch_size=batch)
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model, x, y = build_method(args.method, settings)
            if args.sync_batchnorm:
                distribute.sync_batchnorm(model)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
        first = (x, y) if y is not None else x
        dataset = tf.data.Dataset.from_tensors(first).repeat()
        seconds = fit_seconds_per_step(model, dataset, args.steps, args.warmup)
        rows.append({"replicas": strategy.num_replicas_in_sync, "batch": batch,
                     "per_replica": batch // replicas, "img_per_s": batch / seconds,
                     "ms_per_step": 1e3 * seconds,
                     "loss_finite": bool(np.isfinite(model.evaluate(
                         dataset.take(1), verbose=0, return_dict=True)["loss"]))})
    print("RESULT " + json.dumps(rows))


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        child(args)
        return
    info = machine()
    print_machine(info)
    rows = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    passed = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
    for replicas in (int(r) for r in args.replicas.split(",")):
        command = [sys.executable, __file__, *passed, "--child", str(replicas)]
        if args.json:
            command = [c for c in command if c != args.json]
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        if result.returncode or not lines:
            sys.exit(f"{replicas} replica(s) failed:\n{result.stderr[-3000:]}")
        rows += json.loads(lines[-1][len("RESULT "):])
        print(f"# {replicas} replica(s) done", flush=True)
    single = {r["batch"]: r["img_per_s"] for r in rows if r["replicas"] == 1}
    for row in rows:
        if row["batch"] in single:
            row["speedup"] = row["img_per_s"] / single[row["batch"]]
    print(f"\n{args.method} with the {args.encoder} encoder at {args.image_size} px, "
          f"MirroredStrategy{' + sync BN' if args.sync_batchnorm else ''}, XLA off, "
          "in-memory batches:\n")
    print_table(rows, [("replicas", "replicas", "d"), ("batch", "global batch", "d"),
                       ("per_replica", "per replica", "d"), ("img_per_s", "img/s", ",.1f"),
                       ("ms_per_step", "ms/step", ",.0f"), ("speedup", "x 1 replica", ".2f")])
    write_json(args.json, {"machine": info, "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
