"""Throughput against replicas (tf.distribute.MirroredStrategy) and against the global batch size.

For each replica count, a fresh process (logical devices are fixed when TensorFlow starts) builds
SimCLR (or `--method`) inside the strategy's scope, as `keras-ssl pretrain --strategy mirrored`
does, and times `model.fit` on an in-memory batch of each global batch size (XLA off: it does not
compile the cross-replica collectives on CPU): img/s, and the speed-up over one replica at the
same global batch. A global batch that the replicas cannot share evenly is left out for that
replica count. Replicas are the GPUs when there are enough, otherwise logical devices of the CPU
(`keras_ssl.distribute.use_logical_cpus`), which share its cores: on a CPU this measures the cost
of the replication (all-gathered negatives, all-reduced gradients, one step per replica), not a
gain.

    python benchmarks/scaling.py                                   # 1 and 2 replicas, 64..512
    python benchmarks/scaling.py --replicas 1,2,4 --batch-sizes 256,1024 --json results/s.json
    python benchmarks/scaling.py --sync-batchnorm                  # with synchronised BN
    python benchmarks/scaling.py --quick                           # seconds: checks it runs

Each JSON row has `replicas`, `devices` (`GPU`, `CPU` for logical CPU devices, or `default` for
one replica without a strategy), `batch` (global), `per_replica`, `img_per_s`, `ms_per_step`,
`loss` (the mean training loss of the timed fit: finite) and `speedup` (against one replica at
the same global batch, when measured).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import REPO, fill_defaults, machine, print_machine, print_table, write_json

from keras_ssl.methods import METHODS  # noqa: E402

FULL = {"batch_sizes": "64,128,256,512", "steps": 8, "warmup": 2}
QUICK = {"batch_sizes": "16,32", "steps": 2, "warmup": 1}


def _counts(text: str, what: str, parser) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        parser.error(f"{what} takes comma-separated positive integers, got {text!r}")
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Training throughput for 1..N replicas (MirroredStrategy) and growing global "
        "batch sizes, each replica count in a fresh process.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--replicas", default="1,2",
                        help="comma-separated replica counts (1,2); 1 runs without a strategy")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated global batch sizes, split across the replicas "
                        "(64,128,256,512; --quick: 16,32)")
    parser.add_argument("--method", default="simclr", choices=sorted(METHODS),
                        help="the method to train (simclr)")
    parser.add_argument("--encoder", default="kerasio", choices=("kerasio", "convnet"),
                        help="keras-io's 4-conv encoder (default) or keras_ssl's ConvNet")
    parser.add_argument("--image-size", type=int, default=32,
                        help="square RGB image size in pixels (32)")
    parser.add_argument("--sync-batchnorm", action="store_true",
                        help="synchronise batch-norm statistics across replicas "
                        "(keras_ssl.distribute.sync_batchnorm), as --sync-batchnorm does in "
                        "keras-ssl pretrain")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps; the median is kept (8; --quick: 2)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed first steps; the first one traces the step (2; --quick: 1)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs, in seconds: the --quick values of the options "
                        "not given")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    fill_defaults(args, FULL, QUICK)
    args.replica_counts = _counts(args.replicas, "--replicas", parser)
    args.batches = _counts(args.batch_sizes, "--batch-sizes", parser)
    if args.steps < 1 or args.warmup < 0 or args.image_size < 1:
        parser.error("--steps and --image-size must be positive, --warmup >= 0")
    return args


def child(args) -> None:
    """Measure every batch size with `args.child` replicas; print one `RESULT [json]` line."""
    replicas = args.child
    import tensorflow as tf

    from keras_ssl import distribute

    gpus = tf.config.list_physical_devices("GPU")
    devices, kind = None, "default"
    if replicas > 1:
        if len(gpus) >= replicas:
            devices = [d.name for d in tf.config.list_logical_devices("GPU")][:replicas]
            kind = "GPU"
        else:
            devices, kind = distribute.use_logical_cpus(replicas), "CPU"
    import keras
    import numpy as np
    from _common import StepTimer
    from train_step import build_method

    strategy = (distribute.make_strategy("mirrored", devices=devices) if replicas > 1
                else distribute.make_strategy("none"))
    assert strategy.num_replicas_in_sync == replicas, strategy.num_replicas_in_sync
    rows = []
    for batch in args.batches:
        if batch % replicas:
            continue
        settings = argparse.Namespace(examples=batch, image_size=args.image_size, channels=3,
                                      encoder=args.encoder, batch_size=batch)
        with strategy.scope():  # variables of the model and the optimizer on every replica
            keras.utils.set_random_seed(0)
            model, x, y = build_method(args.method, settings)
            if args.sync_batchnorm:
                distribute.sync_batchnorm(model)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
        first = (x, y) if y is not None else x
        dataset = tf.data.Dataset.from_tensors(first).repeat()
        timer = StepTimer()
        history = model.fit(dataset, steps_per_epoch=args.warmup + args.steps, epochs=1,
                            verbose=0, callbacks=[timer], shuffle=False)
        seconds = float(np.median(np.diff(timer.ends)[args.warmup:]))
        rows.append({"replicas": strategy.num_replicas_in_sync, "devices": kind, "batch": batch,
                     "per_replica": batch // replicas, "img_per_s": batch / seconds,
                     "ms_per_step": 1e3 * seconds, "loss": float(history.history["loss"][-1])})
    print("RESULT " + json.dumps(rows), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        child(args)
        return 0
    info = machine()
    print_machine(info)
    rows = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    passed = list(argv if argv is not None else sys.argv[1:])  # the child writes no JSON
    for replicas in args.replica_counts:
        command = [sys.executable, __file__, *passed, "--child", str(replicas)]
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        if result.returncode or not lines:
            sys.exit(f"{replicas} replica(s) failed:\n{result.stderr[-3000:]}")
        measured = json.loads(lines[-1][len("RESULT "):])
        rows += measured
        print(f"# {replicas} replica(s): {len(measured)} global batch size(s) measured",
              flush=True)
    single = {r["batch"]: r["img_per_s"] for r in rows if r["replicas"] == 1}
    for row in rows:
        if row["batch"] in single:
            row["speedup"] = row["img_per_s"] / single[row["batch"]]
    print(f"\n{args.method} with the {args.encoder} encoder at {args.image_size} px, "
          f"MirroredStrategy{' + sync BN' if args.sync_batchnorm else ''}, XLA off, "
          "in-memory batches:\n")
    print_table(rows, [("replicas", "replicas", "d"), ("devices", "devices", ""),
                       ("batch", "global batch", "d"), ("per_replica", "per replica", "d"),
                       ("img_per_s", "img/s", ",.1f"), ("ms_per_step", "ms/step", ",.0f"),
                       ("speedup", "x 1 replica", ".2f"), ("loss", "loss", ".3f")])
    write_json(args.json, {"machine": info, "args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
