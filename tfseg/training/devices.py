"""Device-dependent settings: mixed precision, XLA and the distribution strategy.

``train.mixed_precision`` and ``train.jit_compile`` are resolved here, once per process,
from what the machine has; :func:`describe` says what was chosen, for the run's record.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfseg.config import TrainConfig
from tfseg.errors import UserError

# bfloat16 matrix units on x86 CPUs (Cooper Lake and later; Sapphire Rapids' AMX).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# NVIDIA GPUs from Ampere (compute capability 8.0) on compute in bfloat16 at full rate.
GPU_BF16_CAPABILITY = (8, 0)
# How much faster than float32 a CPU's bfloat16 convolution must be for "auto" to use it.
CPU_BF16_MIN_SPEEDUP = 1.25
# Names the policy "auto" resolves to, whatever the machine would choose: every outcome of
# "auto" can so be reproduced (and tested) on any machine.
AUTO_PRECISION_ENV = "TFSEG_AUTO_PRECISION"
AUTO_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def gpu_capabilities() -> list[tuple[int, int]]:
    """The CUDA compute capability of every visible GPU (``(0, 0)`` where unknown)."""
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return capabilities


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 instructions (Linux: its ``flags`` line)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return any(flag in flags for flag in CPU_BF16_FLAGS)


@functools.cache
def cpu_bf16_speedup(rounds: int = 3, repeats: int = 3) -> float:
    """float32 time / bfloat16 time of a 3x3 convolution (64 -> 64 channels, 96x320) on
    this CPU, the best of ``rounds``; about a third of a second, once per process.

    Why measure: the flags promise bfloat16 instructions, not speed. oneDNN is fast with
    AMX, but a virtual machine with AVX512_BF16 alone ran this convolution in bfloat16 at
    0.65x of float32 (and trained the U-Net 1.7x slower).
    """
    images = tf.random.stateless_uniform([1, 96, 320, 64], seed=[0, 1])
    kernel = tf.random.stateless_uniform([3, 3, 64, 64], seed=[0, 2])
    best = {}
    for dtype in (tf.float32, tf.bfloat16):
        x, k = tf.cast(images, dtype), tf.cast(kernel, dtype)
        convolve = tf.function(lambda x=x, k=k: tf.nn.conv2d(x, k, 1, "SAME"))
        convolve().numpy()  # trace and warm up
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(repeats):
                convolve().numpy()
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    return best[tf.float32] / best[tf.bfloat16]


def choose_precision(setting: str, gpus: list[tuple[int, int]], cpu_bf16: bool) -> str:
    """The Keras dtype policy for ``train.mixed_precision`` on a machine with ``gpus``
    (their compute capabilities) and a CPU with or without native bfloat16.

    "auto": bfloat16 where every device computes it natively (GPUs of compute capability
    8.0 and newer; CPUs whose bfloat16 is fast, ``cpu_bf16``); float16 with dynamic loss
    scaling on older GPUs; float32 otherwise. "on": mixed precision in any case (bfloat16 unless an
    older GPU calls for float16). "off": float32. A policy name is taken as it is.
    """
    if setting == "off":
        return "float32"
    if setting not in ("auto", "on"):
        return setting
    if gpus:
        return "mixed_bfloat16" if min(gpus) >= GPU_BF16_CAPABILITY else "mixed_float16"
    if cpu_bf16 or setting == "on":
        return "mixed_bfloat16"
    return "float32"


def auto_precision_override(environ=os.environ) -> str | None:
    """The policy ``TFSEG_AUTO_PRECISION`` pins "auto" to, or None when it is unset."""
    value = environ.get(AUTO_PRECISION_ENV, "")
    if not value:
        return None
    if value not in AUTO_PRECISIONS:
        raise UserError(f"{AUTO_PRECISION_ENV}={value}: not one of {', '.join(AUTO_PRECISIONS)} "
                        "(or leave it unset to let the machine decide)")
    return value


def resolve_precision(config: TrainConfig) -> str:
    """The dtype policy for this machine; see :func:`choose_precision`. A CPU counts as fast
    in bfloat16 when it has the instructions and they measure faster than float32.
    ``TFSEG_AUTO_PRECISION``, when set, is what "auto" resolves to."""
    override = auto_precision_override()
    if config.mixed_precision == "auto" and override:
        return override
    gpus = gpu_capabilities()
    cpu_bf16 = (not gpus and config.mixed_precision == "auto" and cpu_has_bf16()
                and cpu_bf16_speedup() >= CPU_BF16_MIN_SPEEDUP)
    return choose_precision(config.mixed_precision, gpus, cpu_bf16)


def resolve_jit_compile(config: TrainConfig) -> bool:
    """Whether to XLA-compile the train step: "auto" means on GPU only.

    On CPU, XLA gives no speed-up for these convolutional networks and is about twice as
    slow under bfloat16, so it stays off there unless asked for.
    """
    if config.jit_compile == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return config.jit_compile == "on"


def tf_config_workers(environ=os.environ) -> int:
    """How many tasks (chief and workers) ``TF_CONFIG`` names; 0 without ``TF_CONFIG``."""
    text = environ.get("TF_CONFIG")
    if not text:
        return 0
    try:
        cluster = json.loads(text)["cluster"]
        return len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"TF_CONFIG: not a JSON object with a \"cluster\" of workers: {text[:200]}") from None


def make_strategy(config: TrainConfig) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy to build the model and train under.

    Call it first: a multi-worker strategy configures TensorFlow's runtime, which must not
    have started yet.
    """
    workers = tf_config_workers()
    if config.distribute == "multi_worker" or (config.distribute == "auto" and workers > 1):
        if not workers:
            raise UserError("train.distribute: multi_worker needs TF_CONFIG naming the cluster "
                            "and this worker's task (see the README)")
        # A lost worker must end the others' collective operations with an error rather
        # than leave them waiting for ever.
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=config.worker_timeout_seconds)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    if config.distribute == "mirrored" or (config.distribute == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory: always, except for the non-chief
    workers of a multi-worker strategy (the chief is task "chief", or else worker 0)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def apply_precision(config: TrainConfig) -> str:
    """Sets the global Keras dtype policy for ``config``; returns its name."""
    policy = resolve_precision(config)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def describe(policy: str, jit_compile: bool, strategy: tf.distribute.Strategy) -> dict:
    """What a run resolved its device-dependent settings to."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return {"precision": policy, "xla": jit_compile,
            "devices": [device.name for device in devices],
            "replicas": strategy.num_replicas_in_sync}
