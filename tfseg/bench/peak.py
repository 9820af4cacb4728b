"""The matmul peak the model benchmark reports its TFLOP/s against, measured with JAX.

A vendor's datasheet peak is rarely reached; the fraction of a peak measured on the same
device, by the same framework, in the same process says more about how well a model uses
the chip.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp


def matmul_peak(size: int = 8192, dtype: str = "bfloat16", samples: int = 7,
                repeats: int = 10, seed: int = 0) -> dict:
    """TFLOP/s of one ``[size, size] @ [size, size]`` product of ``dtype`` (jitted, warm).

    Each sample launches ``repeats`` products back to back and waits for the last, so
    that launch overhead hides behind the work; the median sample is reported. FLOPs:
    ``2 * size**3`` per product.
    """
    a_key, b_key = jax.random.split(jax.random.key(seed))
    a = jax.random.normal(a_key, (size, size), dtype)
    b = jax.random.normal(b_key, (size, size), dtype)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()  # compiles (and autotunes, on a GPU)
    matmul(a, b).block_until_ready()
    seconds = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a, b)
        out.block_until_ready()
        seconds.append((time.perf_counter() - start) / repeats)
    median = statistics.median(seconds)
    return {"size": size, "dtype": dtype, "samples": samples, "repeats": repeats,
            "seconds": seconds, "tflops": 2 * size**3 / median / 1e12}
