#!/usr/bin/env python3
"""Generates tests/fixtures/heads/torch_steps.json: the PyTorch reference for
tests/it/heads_fixture.rs.

Same data, same initial weights, same batch order, dropout off: for each case it
records PyTorch's loss on each of the first 20 optimisation steps (the batch loss
before the step) and the loss on all rows after the step, plus the final weights.

Run with Debian's torch (CPU), e.g. `.venv/bin/python tools/make_head_fixture.py`.
Deterministic: a rerun writes the same file.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "heads", "torch_steps.json")

N, D, C = 48, 20, 3
BATCH, STEPS = 8, 20


def f32list(a):
    # shortest decimal that reads back as the same float32
    return [float(repr(v)) for v in np.asarray(a, dtype=np.float32).ravel()]


def make_data():
    g = np.random.default_rng(0)
    x = g.standard_normal((N, D)).astype(np.float32)
    x = np.maximum(x, 0)  # pooled ReLU features are non-negative…
    x[:, 3] = 0.0  # …and some never fire: their weights get zero gradients
    x[:, 11] = 0.0
    y = g.integers(0, C, N)
    order = []  # batch order: a fresh permutation per epoch
    while len(order) < STEPS * BATCH:
        order.extend(g.permutation(N).tolist())
    return x, y, order[: STEPS * BATCH]


def make_model(hidden, seed):
    torch.manual_seed(seed)
    widths = [D] + hidden + [C]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            layers.append(nn.ReLU())
            layers.append(nn.Dropout(0.5))  # off: model.eval() below
    return nn.Sequential(*layers)


CASES = [
    # name, hidden, optimiser factory
    ("sgd", [16], lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd_momentum_nesterov_wd", [16], lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("sgd_momentum_dampening", [16, 8], lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.1)),
    ("adam", [16], lambda p: torch.optim.Adam(p, lr=1e-2)),
    ("adam_wd", [16], lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2)),
    ("adamw", [16, 8], lambda p: torch.optim.AdamW(p, lr=1e-2)),
    ("linear_adam", [], lambda p: torch.optim.Adam(p, lr=5e-2, betas=(0.8, 0.99), eps=1e-6)),
]


def run(name, hidden, make_opt, x, y, order, seed):
    model = make_model(hidden, seed)
    model.eval()  # dropout off
    linears = [m for m in model if isinstance(m, nn.Linear)]
    init = [{"weight": f32list(l.weight.detach()), "bias": f32list(l.bias.detach())} for l in linears]
    opt = make_opt(model.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses, after = [], []
    for s in range(STEPS):
        idx = torch.tensor(order[s * BATCH : (s + 1) * BATCH])
        opt.zero_grad()
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        with torch.no_grad():
            after.append(F.cross_entropy(model(xt), yt).item())
    final = [{"weight": f32list(l.weight.detach()), "bias": f32list(l.bias.detach())} for l in linears]
    return {
        "name": name,
        "hidden": hidden,
        "optimizer": repr(opt).replace("\n", " "),
        "init": init,
        "losses": losses,
        "loss_after": after,
        "final": final,
    }


def main():
    torch.set_num_threads(1)
    x, y, order = make_data()
    cases = [run(n, h, o, x, y, order, seed=i) for i, (n, h, o) in enumerate(CASES)]
    out = {
        "generator": "tools/make_head_fixture.py",
        "torch": torch.__version__,
        "n_samples": N,
        "n_features": D,
        "n_classes": C,
        "batch": BATCH,
        "steps": STEPS,
        "x": f32list(x),
        "y": [int(v) for v in y],
        "order": order,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(cases)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
