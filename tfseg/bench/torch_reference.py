"""The PyTorch reference of ``tfseg bench model --reference torch``: tfseg's U-Net in PyTorch.

:class:`UNet` is :func:`tfseg.models.unet.unet` layer for layer (same options, same
parameter count, tested): ``depth`` levels of two 3x3 'same' convolutions + ReLU (bias
unless batch-normalised; Keras' batch-norm epsilon and momentum) and a 2x2 max-pooling,
the bottom block, optional dropout, 2x2 stride-2 transposed convolutions, skip
concatenations ``[skip, upsampled]`` and a 1x1 classifier computed in float32. It trains
the way the Keras candidate does: Adam (Keras' epsilon), cross-entropy ignoring label 255,
on the same random batch (:func:`tfseg.bench.batches.random_batch`), under autocast to
the Keras policy's compute dtype, channels-last, with ``torch.compile`` or eagerly. cuDNN
times its convolution algorithms (``cudnn.benchmark``), as XLA's autotuner does.

This module runs in a worker process (``python -m tfseg.bench.torch_reference``, see
:mod:`tfseg.bench.remote`) and is imported only where torch is installed.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from tfseg.bench.batches import VOID, random_batch
from tfseg.bench.rounds import timed_steps

# Keras' defaults, where PyTorch's differ.
KERAS_BN_EPSILON, KERAS_BN_MOMENTUM = 1e-3, 0.01  # Keras momentum 0.99 = torch 1 - 0.99
KERAS_ADAM_EPSILON = 1e-7

AUTOCAST_DTYPES = {"float32": None, "mixed_bfloat16": torch.bfloat16,
                   "mixed_float16": torch.float16}
# tfseg.models.unet.unet's options this module reproduces, with the values it accepts.
UNET_DEFAULTS = {"input_channels": 3, "depth": 4, "base_filters": 64, "batch_norm": False,
                 "dropout": 0.0, "residual": False, "upsampling": "transpose"}


def _conv_block(in_channels: int, filters: int, batch_norm: bool) -> nn.Sequential:
    """tfseg.models.blocks.conv_block: two 3x3 'same' convolutions, each (BN and) ReLU."""
    layers = []
    for i in range(2):
        conv = nn.Conv2d(in_channels if i == 0 else filters, filters, 3, padding=1,
                         bias=not batch_norm)
        # Keras' he_normal: a normal truncated at two standard deviations.
        std = (2.0 / (conv.in_channels * 9)) ** 0.5
        nn.init.trunc_normal_(conv.weight, std=std, a=-2 * std, b=2 * std)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        layers.append(conv)
        if batch_norm:
            layers.append(nn.BatchNorm2d(filters, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _glorot(layer: nn.Module) -> nn.Module:
    """Keras' default initialisation: Glorot-uniform kernel, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class UNet(nn.Module):
    """tfseg's ``unet``: NCHW float ``[B, C, H, W]`` in (H and W multiples of ``2 ** depth``),
    float32 logits ``[B, num_classes, H, W]`` out, whatever the autocast dtype."""

    def __init__(self, num_classes: int, input_channels: int = 3, depth: int = 4,
                 base_filters: int = 64, batch_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        widths = [base_filters * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            _conv_block(input_channels if level == 0 else widths[level - 1], widths[level], batch_norm)
            for level in range(depth))
        self.bottom = _conv_block(widths[depth - 1], widths[depth], batch_norm)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        # Deepest level first, as the decoder runs.
        self.up = nn.ModuleList(_glorot(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
                                for level in reversed(range(depth)))
        self.up_blocks = nn.ModuleList(_conv_block(2 * widths[level], widths[level], batch_norm)
                                       for level in reversed(range(depth)))
        self.logits = _glorot(nn.Conv2d(base_filters, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.dropout(self.bottom(x))
        for up, block, skip in zip(self.up, self.up_blocks, reversed(skips)):
            x = block(torch.cat([skip, up(x)], dim=1))
        # The classifier in float32, as tfseg's (keras dtype="float32") under mixed precision.
        with torch.autocast(x.device.type, enabled=False):
            return self.logits(x.float())


def unet_from_options(num_classes: int, options: dict) -> UNet:
    """The :class:`UNet` for tfseg ``unet`` options; options it cannot reproduce are errors."""
    unknown = sorted(set(options) - set(UNET_DEFAULTS))
    if unknown:
        raise ValueError(f"the torch U-Net has no option(s) {', '.join(unknown)}")
    settings = {**UNET_DEFAULTS, **options}
    if settings.pop("residual") or settings.pop("upsampling") != "transpose":
        raise ValueError("the torch U-Net reproduces residual=False, upsampling='transpose' only")
    return UNet(num_classes, **settings)


def count_params(module: nn.Module) -> int:
    """Parameters counted as Keras' ``count_params`` does: batch norm's moving mean and
    variance included (torch keeps them as buffers), its step counter not."""
    buffers = sum(b.numel() for name, b in module.named_buffers()
                  if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in module.parameters()) + buffers


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    """Waits for the GPU's queued work; CPU work is done when its call returns."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def describe() -> dict:
    """Versions and the device the reference runs on."""
    info = {"torch": torch.__version__, "device": "cpu", "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
    return info


class TorchCandidate:
    """A training (Adam) or inference step of the U-Net, compiled or eager.

    ``spec``: ``task`` ("train" | "inference"), ``num_classes``, ``options`` (tfseg unet
    options), ``precision`` (a Keras policy name), ``batch``, ``height``, ``width``,
    ``compiled``, ``learning_rate``, ``seed``.
    """

    def __init__(self, spec: dict):
        self.spec = spec
        self.step_fn = None

    def prepare(self, warmup: int) -> dict:
        s = self.spec
        start = time.perf_counter()
        torch.manual_seed(s["seed"])
        dev = device()
        model = unet_from_options(s["num_classes"], s["options"])
        model = model.to(dev, memory_format=torch.channels_last)
        channels = model.down[0][0].in_channels
        images, labels = random_batch(s["batch"], s["height"], s["width"], channels,
                                      s["num_classes"], s["seed"])
        # NHWC numbers seen as NCHW: exactly the channels-last layout.
        images = torch.from_numpy(images).to(dev).permute(0, 3, 1, 2)
        images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.from_numpy(labels).to(dev, torch.int64)
        amp_dtype = AUTOCAST_DTYPES[s["precision"]]

        def forward(x):
            if amp_dtype is None:
                return model(x)
            with torch.autocast(dev.type, dtype=amp_dtype):
                return model(x)

        if s["task"] == "train":
            def loss_of(x, y):
                return F.cross_entropy(forward(x), y, ignore_index=VOID)

            loss_fn = torch.compile(loss_of) if s["compiled"] else loss_of
            # Fused: one kernel for the whole update, as XLA fuses Keras' Adam.
            optimizer = torch.optim.Adam(model.parameters(), lr=s["learning_rate"],
                                         eps=KERAS_ADAM_EPSILON, fused=True)
            scaler = torch.amp.GradScaler(dev.type) if amp_dtype is torch.float16 else None

            def step():
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(images, labels)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                return loss
        else:
            model.eval()
            infer = torch.compile(forward) if s["compiled"] else forward

            def step():
                with torch.no_grad():
                    return infer(images)

        self.step_fn = step
        build_s = time.perf_counter() - start
        times, out = timed_steps(self.step, 1 + warmup)
        first_step_s = times[0]
        self.check(out)
        return {"params": count_params(model), "build_s": build_s, "first_step_s": first_step_s,
                **describe()}

    def step(self) -> torch.Tensor:
        out = self.step_fn()
        synchronize()
        return out

    def run(self, steps: int) -> list[float]:
        times, out = timed_steps(self.step, steps)
        self.check(out)
        return times

    def check(self, out) -> None:
        if out is not None and not bool(torch.isfinite(out.detach()).all()):
            raise FloatingPointError(f"torch U-Net {self.spec['task']}: non-finite output")


def serve(requests, replies) -> None:
    """Answers :mod:`tfseg.bench.remote` requests, one JSON line each, until "quit"."""
    candidates: dict[str, TorchCandidate] = {}
    for line in requests:
        request = json.loads(line)
        cmd = request["cmd"]
        if cmd == "quit":
            break
        try:
            if cmd == "describe":
                answer = describe()
            elif cmd == "prepare":
                candidate = candidates[request["name"]] = TorchCandidate(request["spec"])
                answer = {"info": candidate.prepare(request["warmup"])}
            elif cmd == "run":
                answer = {"times": candidates[request["name"]].run(request["steps"])}
            elif cmd == "release":
                candidates.pop(request["name"], None)
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                answer = {}
            else:
                raise ValueError(f"unknown request {cmd!r}")
            reply = {"ok": True, **answer}
        except Exception as err:  # noqa: BLE001 - the parent records it and goes on
            reply = {"ok": False, "error": " ".join(f"{type(err).__name__}: {err}".split())[:800]}
            if request.get("name") in candidates and cmd == "prepare":
                del candidates[request["name"]]
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> int:
    # The answers go to the original stdout; anything else printed (compilers, warnings)
    # goes to stderr, so that it cannot corrupt the protocol.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    torch.backends.cudnn.benchmark = True
    serve(sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
