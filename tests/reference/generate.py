#!/usr/bin/env python3
"""Regenerates tests/reference/novograd.json: NovoGrad trajectories computed by third-party
implementations, which the Rust parity tests replay.

    pip install numpy jax optax torch torch-optimizer timm
    python3 tests/reference/generate.py

Every case is run by each reference that implements its options, in float64, and the script
fails unless those references agree with each other (max relative difference 1e-12). The first
reference listed for a case is the one written out.

References:
- optax.novograd (paper form, eps_root)
- torch_optimizer.NovoGrad (grad_averaging, amsgrad)
- timm.optim.NvNovoGrad (grad_averaging, amsgrad)
- apex_fused_novograd below: NVIDIA Apex FusedNovoGrad is CUDA-only, so its kernel
  (apex/optimizers/fused_novograd.py + csrc/multi_tensor_novograd.cu, norm_type=2,
  init_zero=False) is transcribed into NumPy, line for line.

Gradients are drawn once from a seeded generator and do not depend on the parameters, so every
implementation sees exactly the same inputs; their scale changes by orders of magnitude from step
to step to exercise the per-tensor normalisation.
"""

import json
import pathlib

import numpy as np

SEED = 20191905
STEPS = 50
SHAPES = [[5, 4], [4], [2, 3, 2]]
OUT = pathlib.Path(__file__).with_name("novograd.json")

# Our config fields, with the defaults of burn_novograd::NovoGradConfig.
DEFAULTS = dict(
    beta_1=0.95,
    beta_2=0.98,
    epsilon=1e-8,
    epsilon_root=0.0,
    weight_decay=0.0,
    weight_decay_mode="InMoment",
    grad_averaging=False,
    amsgrad=False,
    bias_correction=False,
)


def f32(array):
    """Values exactly representable in f32, so Rust starts from the same numbers."""
    return np.asarray(array, dtype=np.float32).astype(np.float64)


def problem():
    rng = np.random.default_rng(SEED)
    initial = [f32(rng.normal(0.0, 0.5, size=shape)) for shape in SHAPES]
    grads = []
    for _ in range(STEPS):
        scale = 10.0 ** rng.uniform(-3.0, 3.0)
        grads.append([f32(scale * rng.normal(size=shape)) for shape in SHAPES])
    return initial, grads


# --- references -------------------------------------------------------------------------------


def run_optax(config, lr, initial, grads):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    optimizer = optax.novograd(
        learning_rate=lr,
        b1=config["beta_1"],
        b2=config["beta_2"],
        eps=config["epsilon"],
        eps_root=config["epsilon_root"],
        weight_decay=config["weight_decay"],
    )
    params = [jnp.asarray(p) for p in initial]
    state = optimizer.init(params)
    trajectory = []
    for step_grads in grads:
        updates, state = optimizer.update([jnp.asarray(g) for g in step_grads], state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append([np.asarray(p) for p in params])
    return trajectory


def run_torch(make_optimizer, initial, grads):
    import torch

    # torch-optimizer and timm allocate the second moment with torch.zeros([]), i.e. in the
    # default dtype: make that float64 too, or v alone would be rounded to float32.
    torch.set_default_dtype(torch.float64)
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in initial]
    optimizer = make_optimizer(params)
    trajectory = []
    for step_grads in grads:
        for param, grad in zip(params, step_grads):
            param.grad = torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory


def run_torch_optimizer(config, lr, initial, grads):
    import torch_optimizer

    return run_torch(
        lambda params: torch_optimizer.NovoGrad(
            params,
            lr=lr,
            betas=(config["beta_1"], config["beta_2"]),
            eps=config["epsilon"],
            weight_decay=config["weight_decay"],
            grad_averaging=config["grad_averaging"],
            amsgrad=config["amsgrad"],
        ),
        initial,
        grads,
    )


def run_timm(config, lr, initial, grads):
    from timm.optim import NvNovoGrad

    return run_torch(
        lambda params: NvNovoGrad(
            params,
            lr=lr,
            betas=(config["beta_1"], config["beta_2"]),
            eps=config["epsilon"],
            weight_decay=config["weight_decay"],
            grad_averaging=config["grad_averaging"],
            amsgrad=config["amsgrad"],
        ),
        initial,
        grads,
    )


def run_apex(config, lr, initial, grads):
    """NumPy transcription of Apex FusedNovoGrad (norm_type=2, init_zero=False)."""
    beta1, beta2, eps, decay = (config[k] for k in ("beta_1", "beta_2", "epsilon", "weight_decay"))
    reg_inside_moment = config["weight_decay_mode"] == "InMoment"
    beta3 = 1.0 - beta1 if config["grad_averaging"] else 1.0
    params = [p.copy() for p in initial]
    moments = [np.zeros_like(p) for p in initial]
    # Apex keeps the norm (not squared), initialised with the first step's norm.
    norms = [np.sqrt(np.sum(g**2)) for g in grads[0]]
    trajectory = []
    for step, step_grads in enumerate(grads, start=1):
        if config["bias_correction"]:
            correction1 = 1.0 - beta1**step
            correction2 = np.sqrt(1.0 - beta2**step)
        else:
            correction1 = correction2 = 1.0
        for i, g in enumerate(step_grads):
            norms[i] = np.sqrt(beta2 * norms[i] * norms[i] + (1.0 - beta2) * np.sum(g**2))
            p, m = params[i], moments[i]
            if reg_inside_moment:  # MOMENT_MODE_0
                denom = norms[i] / correction2 + eps
                r_g = g / denom + decay * p
                m = beta1 * m + beta3 * r_g
                p = p - lr * (m / correction1)
            else:  # MOMENT_MODE_1
                m = beta1 * m + beta3 * g
                denom = norms[i] / correction2 + eps
                p = p - lr * ((m / correction1) / denom + decay * p)
            params[i], moments[i] = p, m
        trajectory.append([p.copy() for p in params])
    return trajectory


REFERENCES = {
    "optax": run_optax,
    "torch-optimizer": run_torch_optimizer,
    "timm": run_timm,
    "apex-transcription": run_apex,
}

# (name, learning rate, overrides of DEFAULTS, references that implement it)
CASES = [
    ("paper_defaults", 0.01, {}, ["optax", "torch-optimizer", "timm"]),
    ("weight_decay", 0.02, dict(weight_decay=0.01), ["optax", "torch-optimizer", "timm"]),
    ("beta_2_zero", 0.01, dict(beta_2=0.0), ["optax", "torch-optimizer", "timm"]),
    ("grad_averaging", 0.05, dict(grad_averaging=True), ["torch-optimizer", "timm"]),
    ("amsgrad", 0.01, dict(amsgrad=True, beta_2=0.5), ["torch-optimizer", "timm"]),
    (
        "amsgrad_averaging_decay",
        0.03,
        dict(amsgrad=True, grad_averaging=True, weight_decay=0.05, beta_1=0.9, beta_2=0.7),
        ["torch-optimizer", "timm"],
    ),
    ("epsilon_root", 0.01, dict(epsilon_root=1e-2, epsilon=1e-6), ["optax"]),
    (
        "apex_defaults",
        0.01,
        dict(
            beta_1=0.9,
            beta_2=0.999,
            weight_decay_mode="OnUpdate",
            grad_averaging=True,
            bias_correction=True,
            weight_decay=0.01,
        ),
        ["apex-transcription"],
    ),
    (
        "apex_reg_inside_moment",
        0.01,
        dict(bias_correction=True, weight_decay=0.01, grad_averaging=True),
        ["apex-transcription"],
    ),
    ("apex_paper_mode", 0.01, dict(weight_decay=0.01), ["apex-transcription", "optax"]),
    ("on_update_plain", 0.01, dict(weight_decay_mode="OnUpdate", weight_decay=0.02), ["apex-transcription"]),
]


def max_relative_difference(a, b):
    return max(
        float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30))
        for step_a, step_b in zip(a, b)
        for x, y in zip(step_a, step_b)
    )


def versions():
    import importlib.metadata as metadata

    names = ["numpy", "jax", "optax", "torch", "torch-optimizer", "timm"]
    return {name: metadata.version(name) for name in names}


def main():
    initial, grads = problem()
    cases = []
    for name, lr, overrides, references in CASES:
        # Hyperparameters as burn_novograd's f32 config fields hold them (0.98f32 != 0.98).
        config = {
            key: float(np.float32(value)) if isinstance(value, float) else value
            for key, value in {**DEFAULTS, **overrides}.items()
        }
        trajectories = [REFERENCES[r](config, lr, initial, grads) for r in references]
        for other, trajectory in zip(references[1:], trajectories[1:]):
            difference = max_relative_difference(trajectory, trajectories[0])
            assert difference < 1e-12, f"{name}: {references[0]} and {other} differ by {difference}"
        print(f"{name:28} {' = '.join(references)}")
        cases.append(
            dict(
                name=name,
                lr=lr,
                config=config,
                references=references,
                params=[[p.ravel().tolist() for p in step] for step in trajectories[0]],
            )
        )
    document = dict(
        generator="tests/reference/generate.py",
        versions=versions(),
        seed=SEED,
        shapes=SHAPES,
        initial=[p.ravel().tolist() for p in initial],
        grads=[[g.ravel().tolist() for g in step] for step in grads],
        cases=cases,
    )
    OUT.write_text(json.dumps(document, indent=None) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases, {STEPS} steps)")


if __name__ == "__main__":
    main()
