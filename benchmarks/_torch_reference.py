"""PyTorch SimCLR training steps: the reference `train_step.py --suite references` compares with.

`train_step.py` runs this file in a process of its own, so that PyTorch times its step with no
TensorFlow loaded beside it (TensorFlow is never imported here), and reads the one line it prints:
`RESULT {json}` with the median seconds per step, img/s, the step's FLOPs (PyTorch's
`FlopCounterMode`), the encoder's parameters, PyTorch's own float32 matmul peak and its thread
count.

The step: encoder, projection head, NT-Xent over the 2N projections of two views that are already
made (random tensors: PyTorch does no augmentation here), backward, Adam.

    python benchmarks/_torch_reference.py resnet18 --batch-size 256 --steps 3
    python benchmarks/_torch_reference.py kerasio --batch-size 16 --steps 1 --warmup 0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time

KERAS_IO_WIDTH = 128  # keras-io semisupervised_simclr.py's encoder and head width
KINDS = ("kerasio", "resnet18")  # the timed steps; encoders() also has "convnet"


def available() -> bool:
    """Whether PyTorch is installed (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def encoders():
    """name -> builder of (encoder, feature size) for the PyTorch encoders."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    def resnet18(image_size, width=64):
        # The small-image stem: one 3x3 stride-1 convolution, no max-pool (SimCLR on CIFAR-10);
        # global average pooling at the end, so any image size works.
        del image_size
        layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        cin = width
        for stage in range(4):
            cout = width * 2**stage
            for i in range(2):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        return nn.Sequential(*layers), cin

    def kerasio(image_size, width=KERAS_IO_WIDTH):
        # keras-io's encoder: 4 x Conv2D(width, 3, strides=2, "valid") + Dense(width).
        layers, cin, size = [], 3, image_size
        for _ in range(4):
            layers += [nn.Conv2d(cin, width, 3, 2), nn.ReLU()]
            cin, size = width, (size - 3) // 2 + 1
        layers += [nn.Flatten(), nn.Linear(width * size * size, width), nn.ReLU()]
        return nn.Sequential(*layers), width

    def convnet(image_size, width=32):
        # keras_ssl.encoders.ConvNet: 4 stages of conv-BN-ReLU twice, the first three halving the
        # resolution with a max-pool while it is 2 px or more, then global average pooling.
        layers, cin, size = [], 3, image_size
        for stage in range(4):
            cout = width * 2 ** min(stage, 2)
            for _ in range(2):
                layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                           nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1), nn.ReLU()]
                cin = cout
            if stage < 3 and size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        return nn.Sequential(*layers), cin

    return {"resnet18": resnet18, "kerasio": kerasio, "convnet": convnet}


def projection_head(dim: int, out: int = 128):
    """keras_ssl's heads.projection_head(dim, out): Linear-BN-ReLU, Linear."""
    from torch import nn

    return nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
                         nn.Linear(dim, out))


def nt_xent(projections, temperature: float):
    """NT-Xent over 2N projections, the two views of image i at rows i and N + i."""
    import torch
    from torch import nn

    n2 = projections.shape[0]
    z = nn.functional.normalize(projections, dim=1)
    not_self = torch.eye(n2, dtype=torch.bool)
    logits = (z @ z.T / temperature).masked_fill(not_self, -1e9)
    return nn.functional.cross_entropy(logits, torch.arange(n2).roll(n2 // 2))


def measure(kind: str, batch_size: int, steps: int, warmup: int, image_size: int = 32) -> dict:
    """Time a PyTorch SimCLR step (encoder, projection head, NT-Xent, Adam) on two ready views."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    encoder, dim = encoders()[kind](image_size)
    views = torch.rand(2 * batch_size, 3, image_size, image_size)
    if kind == "resnet18":
        head = projection_head(dim)
    else:  # keras-io's head
        head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
    model = nn.Sequential(encoder, head)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        loss = nt_xent(model(views), temperature=0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return {**timed(step, batch_size, steps, warmup),
            "parameters": sum(p.numel() for p in encoder.parameters())}


def timed(step, batch_size: int, steps: int, warmup: int) -> dict:
    """The FLOPs of one call of `step` (a training step returning its loss), counted by PyTorch's
    `FlopCounterMode`, then the median seconds of `steps` calls after `warmup` more."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss = step()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    flops = counter.get_total_flops()
    return {"seconds_per_step": seconds, "img_per_s": batch_size / seconds,
            "gflop_per_step": flops / 1e9, "gflop_per_s": flops / 1e9 / seconds,
            "loss": float(loss.detach())}


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """PyTorch's float32 matmul GFLOP/s on n x n matrices, the best of `repeats`."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="One PyTorch SimCLR training step timed; prints `RESULT {json}`.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("kind", choices=KINDS, help="the encoder: keras-io's 4-conv or ResNet-18")
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (256)")
    parser.add_argument("--image-size", type=int, default=32, help="(32)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps; the median is kept (8)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps after the one that counts FLOPs (2)")
    args = parser.parse_args(argv)
    import torch

    row = measure(args.kind, args.batch_size, args.steps, args.warmup, args.image_size)
    row["torch_matmul_peak"] = matmul_peak()
    row["threads"] = torch.get_num_threads()
    row["torch"] = torch.__version__
    print("RESULT " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
