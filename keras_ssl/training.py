"""Optimizer defaults shared by the CLI, the examples and the benchmarks."""

from __future__ import annotations

import keras


def default_optimizer(learning_rate: float = 2e-3, total_steps: int = 1000,
                      weight_decay: float = 1e-4, warmup_fraction: float = 0.05):
    """AdamW with a linear warm-up to `learning_rate`, then cosine decay to zero.

    Contrastive losses are unstable in the first steps with a large learning rate; the warm-up
    (5% of training) avoids that, and cosine decay is what SimCLR, MoCo v2 and most of their
    re-implementations use.
    """
    total_steps = max(int(total_steps), 1)
    warmup = max(1, int(total_steps * warmup_fraction))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(total_steps - warmup, 1),
        warmup_target=learning_rate,
        warmup_steps=warmup,
    )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
