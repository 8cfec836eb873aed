"""Training on several devices or machines with `tf.distribute`, by name.

`make_strategy(name)` builds the strategy; create the model *and* compile it inside
`strategy.scope()`, then `fit` as usual:

    strategy = keras_ssl.distribute.make_strategy("mirrored")
    with strategy.scope():
        model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((32, 32, 3)))
        keras_ssl.distribute.sync_batchnorm(model)          # optional
        model.compile(optimizer="adam")
    model.fit(data.train_dataset(512), epochs=10)          # 512 = the global batch

What is shared between replicas in a step (see docs/distributed.md):

- the batch a dataset yields is the *global* batch; each of R replicas gets `batch / R` examples;
- gradients are summed across replicas (Keras scales each replica's loss by 1 / R);
- contrastive losses gather the projections of every replica (`keras_ssl.losses` uses
  `ReplicaContext.all_gather`), so negatives come from the global batch; MoCo gathers its keys;
- augmentation draws the global batch's random numbers and each replica keeps its rows
  (`keras_ssl.replicas`), so views differ between replicas and equal one device's;
- BatchNormalization normalises with each replica's own statistics unless `sync_batchnorm`
  makes it all-reduce them (then statistics are over the global batch, as on one device).

Names: `"none"` (the default strategy: one device), `"mirrored"` (`MirroredStrategy`: every GPU of
this machine, or every logical CPU device), `"multi_worker"` (`MultiWorkerMirroredStrategy`, one
process per machine, configured by the `TF_CONFIG` environment variable; `tf_config` writes it).

On CPU, XLA does not compile the cross-replica collectives in TF 2.21 ("Trying to access resource
... located in device CPU:1 from device CPU:0"): compile with `jit_compile=False` under a strategy
(Keras' default `jit_compile="auto"` already does).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from keras_ssl import _compat
from keras_ssl._compat import all_layers
from keras_ssl.errors import KerasSSLError

__all__ = [
    "STRATEGIES",
    "in_multi_worker_mode",
    "is_chief",
    "make_strategy",
    "num_workers",
    "reducible_logs",
    "sync_batchnorm",
    "tf_config",
    "use_logical_cpus",
    "worker_index",
]

STRATEGIES = ("none", "mirrored", "multi_worker")
DOCS = "docs/distributed.md"


def use_logical_cpus(count: int) -> list[str]:
    """Split the host CPU into `count` logical devices and return their names.

    With them, `MirroredStrategy` runs `count` replicas on one CPU: the way to test
    multi-device code without GPUs (each replica still uses every core). It must run before
    TensorFlow initialises its devices, i.e. before any tensor is created; afterwards it only
    succeeds if the same split is already in place.

    Example (in a fresh process):
    >>> use_logical_cpus(2)                                    # doctest: +SKIP
    ['/job:localhost/replica:0/task:0/device:CPU:0', '/job:localhost/replica:0/task:0/device:CPU:1']
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise KerasSSLError(f"count must be a positive number of devices, got {count!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as err:
        devices = tf.config.list_logical_devices("CPU")
        if len(devices) == count:
            return [d.name for d in devices]
        raise KerasSSLError(
            f"Cannot split the CPU into {count} devices: TensorFlow is already initialised with "
            f"{len(devices)} ({err}). Call use_logical_cpus first thing in the program, before "
            "any model, tensor or dataset is created."
        ) from err
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _check_tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise KerasSSLError(
            "The multi_worker strategy reads the cluster from the TF_CONFIG environment variable, "
            "which is not set. On each machine set e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
            "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}' "
            f"(index 1 on the second), or build it with keras_ssl.distribute.tf_config; see {DOCS}."
        )
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise KerasSSLError(
            f"TF_CONFIG is not a valid cluster description ({type(err).__name__}: {err}); it needs "
            "{\"cluster\": {\"worker\": [\"host:port\", ...]}, \"task\": {\"type\": \"worker\", "
            f"\"index\": i}}. See {DOCS}."
        ) from err
    if task.get("type") not in ("worker", "chief") or not isinstance(workers, list) or not (
        0 <= index < len(workers) + (1 if task.get("type") == "chief" else 0)
    ):
        raise KerasSSLError(
            f"TF_CONFIG's task {task} does not name one of the {len(workers)} workers "
            f"{workers}; give task type 'worker' and an index from 0 to {len(workers) - 1}."
        )
    return config


def make_strategy(name: str = "none", devices: list[str] | None = None) -> tf.distribute.Strategy:
    """A `tf.distribute.Strategy` by name: `"none"`, `"mirrored"` or `"multi_worker"`.

    Args:
        name: `"none"`: TensorFlow's default strategy (one device, no replicas).
            `"mirrored"`: `MirroredStrategy` over `devices`, by default every GPU, or, on a
            machine without GPUs, every logical CPU device (see `use_logical_cpus`).
            `"multi_worker"`: `MultiWorkerMirroredStrategy`, synchronous data parallelism over
            the machines listed in `TF_CONFIG` (every machine runs the same program; collectives
            over gRPC/ring on CPU, NCCL between GPUs). Create it first thing in the program.
        devices: device names for `"mirrored"`.

    Example:
    >>> make_strategy("none").num_replicas_in_sync
    1
    """
    key = str(name).lower().replace("-", "_")
    if key not in STRATEGIES:
        raise KerasSSLError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
    if key == "none":
        if devices:
            raise KerasSSLError("devices= only applies to the 'mirrored' strategy.")
        return tf.distribute.get_strategy()
    if key == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        if not devices:
            raise KerasSSLError("The mirrored strategy got an empty device list.")
        if len(devices) == 1:
            # Keras warns nothing; a one-replica "mirrored" run is legal but rarely meant.
            print(
                f"MirroredStrategy with one device ({devices[0]}): no data parallelism. On a CPU "
                "machine, --cpu-devices N (keras_ssl.distribute.use_logical_cpus(n)) splits the "
                "CPU for testing."
            )
        # On CPUs NCCL is not available: reduce through one device.
        cross = (
            None if any("GPU" in d.upper() for d in devices)
            else tf.distribute.ReductionToOneDevice()
        )
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
    if devices:
        raise KerasSSLError(
            "devices= does not apply to multi_worker: each worker uses its local GPUs (or CPU)."
        )
    _check_tf_config()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def tf_config(workers: list[str], index: int) -> str:
    """The `TF_CONFIG` JSON for worker `index` of a cluster of `workers` ("host:port" each).

    Worker 0 is the chief: it writes exports, plots and the checkpoints other runs resume from.

    Example:
    >>> tf_config(["10.0.0.1:12345", "10.0.0.2:12345"], 1)
    '{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 1}}'
    """
    workers = [str(w) for w in workers]
    if not workers or not all(":" in w for w in workers):
        raise KerasSSLError(f"workers must be a list of 'host:port' strings, got {workers!r}.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(workers):
        raise KerasSSLError(f"index must be 0..{len(workers) - 1}, got {index!r}.")
    return json.dumps({"cluster": {"worker": workers},
                       "task": {"type": "worker", "index": index}})


def worker_index(strategy: tf.distribute.Strategy | None = None) -> int:
    """This process's worker index (0 outside a multi-worker strategy)."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0
    return int(resolver.task_id or 0)


def num_workers(strategy: tf.distribute.Strategy | None = None) -> int:
    """How many worker processes train together (1 outside a multi-worker strategy)."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    return max(1, len(resolver.cluster_spec().as_dict().get("worker", [])))


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process should write files that the whole run shares (worker 0, or alone)."""
    return worker_index(strategy) == 0


def sync_batchnorm(model: keras.Model) -> int:
    """Make every `BatchNormalization` layer of `model` (nested models included) synchronised.

    A synchronised layer all-reduces its batch mean and variance across the replicas of a
    `tf.distribute` strategy in training, so it normalises with the statistics of the global
    batch, as one device would (SimCLR's "global BN"); on one device nothing changes. Call it
    before the first `fit` (it changes how the step is traced). Returns how many layers it set.

    Example:
    >>> import keras_ssl
    >>> model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((16, 16, 1), width=4))
    >>> sync_batchnorm(model) > 0
    True
    """
    count = 0
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    if getattr(model, "train_function", None) is not None:
        # A step traced before would keep per-replica statistics.
        model.make_train_function(force=True)
    return count


def in_multi_worker_mode(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether `strategy` (default: the current one) spans several worker processes."""
    strategy = strategy or tf.distribute.get_strategy()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        _compat.in_multi_worker_mode(strategy))


def reducible_logs(logs: dict, strategy: tf.distribute.Strategy | None = None) -> dict:
    """A `train_step`'s scalar results shaped so that Keras can reduce them across workers.

    Keras 3.15 reduces a step's results under a multi-worker strategy with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars ("Invalid reduction dimension
    0 for input with 0 dimensions", tensorflow/tensorflow#72388). Shaped `[1]`, each value reduces
    to the scalar mean over the replicas. Elsewhere the logs are returned unchanged.
    """
    if not in_multi_worker_mode(strategy):
        return logs
    return {name: tf.reshape(value, [-1]) if value.shape.rank == 0 else value
            for name, value in logs.items()}
