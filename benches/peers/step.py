#!/usr/bin/env python3
"""Times other libraries' optimizer steps on the parameter set the Rust benchmarks use.

Reads one JSON object on stdin: {"shapes": [[...], ...], "device": "cpu" or "cuda", "threads": N,
"warmup": W, "samples": S, "lr": float, "weight_decay": float} and prints one JSON object: the versions found, and per peer
its step times in milliseconds (median, min, max) or why it was not measured. Peers whose packages
are missing are reported as such (pip install torch torch-optimizer timm jax optax).
"""

import json
import os
import statistics
import sys
import time

request = json.load(sys.stdin)
THREADS = request["threads"]
DEVICE = request.get("device", "cpu")
SHAPES = [tuple(shape) for shape in request["shapes"]]
LR, DECAY = request["lr"], request["weight_decay"]


def summary(samples):
    ms = [s * 1e3 for s in samples]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "samples": len(ms)}


def measure(step, synchronize=lambda: None):
    """Times `step` up to the device having finished it."""
    for _ in range(request["warmup"]):
        step()
    synchronize()
    samples = []
    for _ in range(request["samples"]):
        start = time.perf_counter()
        step()
        synchronize()
        samples.append(time.perf_counter() - start)
    return summary(samples)


def torch_peers():
    import torch

    torch.set_num_threads(THREADS)
    generator = torch.Generator().manual_seed(0)

    synchronize = torch.cuda.synchronize if DEVICE == "cuda" else lambda: None

    def optimizer_step(make):
        params = [torch.nn.Parameter((torch.randn(s, generator=generator) * 0.02).to(DEVICE)) for s in SHAPES]
        for p in params:
            p.grad = (torch.randn(p.shape, generator=generator) * 1e-3).to(DEVICE)
        optimizer = make(params)
        return measure(optimizer.step, synchronize)

    peers = {"torch AdamW (foreach)": lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=DECAY, foreach=True)}
    try:
        import torch_optimizer

        peers["torch-optimizer NovoGrad"] = lambda p: torch_optimizer.NovoGrad(
            p, lr=LR, betas=(0.95, 0.98), weight_decay=DECAY
        )
    except ImportError as error:
        yield "torch-optimizer NovoGrad", {"missing": str(error)}
    try:
        from timm.optim import NvNovoGrad

        peers["timm NvNovoGrad"] = lambda p: NvNovoGrad(p, lr=LR, betas=(0.95, 0.98), weight_decay=DECAY)
    except ImportError as error:
        yield "timm NvNovoGrad", {"missing": str(error)}
    with torch.no_grad():
        for name, make in peers.items():
            yield name, optimizer_step(make)


def optax_peer():
    import jax

    # XLA takes a GPU when it sees one: keep it on the device asked for.
    jax.config.update("jax_platforms", "cuda" if DEVICE == "cuda" else "cpu")
    import jax.numpy as jnp
    import optax

    keys = jax.random.split(jax.random.PRNGKey(0), 2 * len(SHAPES))
    params = [jax.random.normal(k, s, jnp.float32) * 0.02 for k, s in zip(keys[::2], SHAPES)]
    grads = [jax.random.normal(k, s, jnp.float32) * 1e-3 for k, s in zip(keys[1::2], SHAPES)]
    transform = optax.novograd(LR, b1=0.95, b2=0.98, weight_decay=DECAY)

    def update(params, state, grads):
        updates, state = transform.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    update = jax.jit(update, donate_argnums=(0, 1))
    box = [params, transform.init(params)]

    def step():
        box[0], box[1] = update(box[0], box[1], grads)
        jax.block_until_ready(box[0])

    yield "optax novograd (jit)", measure(step)


def versions():
    found = {}
    for package in ["torch", "torch_optimizer", "timm", "jax", "optax"]:
        try:
            found[package] = __import__(package).__version__
        except ImportError:
            pass
    return found


results = {}
for name, family in [("torch", torch_peers), ("jax", optax_peer)]:
    try:
        for peer, figures in family():
            results[peer] = figures
    except ImportError as error:
        results[f"{name} peers"] = {"missing": str(error)}
# XLA's CPU client takes every core; torch is limited to THREADS.
print(json.dumps({"threads": THREADS, "jax_threads": os.cpu_count(), "python": sys.version.split()[0], "versions": versions(), "peers": results}))
