"""Where a run trains: its `tf.distribute` strategy, numeric precision and XLA choice, and which
worker this process is (the chief writes the shared outputs)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from keras_ssl import distribute, precision
from keras_ssl.errors import KerasSSLError
from keras_ssl.validate import check_int


@dataclasses.dataclass
class RunDevices:
    """The strategy, precision and XLA choice of a run, and which worker this process is."""

    strategy: object
    jit_compile: bool
    replicas: int
    worker: int
    workers: int

    @classmethod
    def create(cls, strategy, cpu_devices, precision_policy, xla, sync_batchnorm, report):
        import tensorflow as tf

        if xla not in ("auto", "on", "off"):
            raise KerasSSLError(f"--xla must be auto, on or off, got {xla!r}.")
        name = strategy if isinstance(strategy, str) or strategy is None else None
        if cpu_devices is not None:
            if name != "mirrored":
                raise KerasSSLError("--cpu-devices only applies to --strategy mirrored.")
            check_int(cpu_devices, "--cpu-devices", least=1)
            distribute.use_logical_cpus(cpu_devices)
        if name is not None or strategy is None:
            strategy = distribute.make_strategy(name or "none")
        policy = precision.set_precision(precision_policy)
        replicas = strategy.num_replicas_in_sync
        on_cpu = not tf.config.list_physical_devices("GPU")
        if xla == "on" and replicas > 1 and on_cpu:
            raise KerasSSLError(
                "--xla on does not work under a strategy on CPU: XLA fails to compile the "
                "cross-replica collectives there (TensorFlow 2.21). Use --xla off (or auto)."
            )
        # On CPU, TensorFlow's own (oneDNN) convolutions beat XLA's: see docs/performance.md.
        jit = xla == "on" or (xla == "auto" and replicas == 1 and not on_cpu)
        # Read from the strategy: outside its scope every process looks like worker 0.
        workers, worker = distribute.num_workers(strategy), distribute.worker_index(strategy)
        if report:
            where = f", worker {worker} of {workers}" if workers > 1 else ""
            print(f"Precision {policy}, XLA {'on' if jit else 'off'}, strategy "
                  f"{name or type(strategy).__name__} ({replicas} replica"
                  f"{'s' if replicas > 1 else ''}{where})"
                  + (", synchronised batch norm" if sync_batchnorm else ""))
            hint = precision.bfloat16_hint(precision_policy, policy)
            if hint:
                print(hint)
        return cls(strategy, jit, replicas, worker, workers)

    def scope(self):
        return self.strategy.scope() if self.replicas > 1 or self.workers > 1 else (
            contextlib.nullcontext())

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the shared outputs (exports, plots): worker 0."""
        return self.worker == 0

    def worker_dir(self, directory):
        """`directory` for the chief, `directory/worker-<i>` for the others: every worker saves
        checkpoints (the save reads variables collectively) and logs, each in its own folder."""
        if directory is None or self.is_chief:
            return directory
        return str(Path(directory) / f"worker-{self.worker}")


__all__ = ["RunDevices"]
