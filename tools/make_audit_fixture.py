#!/usr/bin/env python3
"""Writes tests/fixtures/audit/cleanlab.json: small fixed examples of
out-of-fold probabilities with noisy labels, and what cleanlab's published
implementation of confident learning says about them. tests/it/audit.rs checks
xfer's own implementation (src/eval/audit/confident.rs) against these numbers.

Run once, with cleanlab installed (in a venv outside the repo):
    python -m venv /tmp/cl && /tmp/cl/bin/pip install cleanlab
    /tmp/cl/bin/python tools/make_audit_fixture.py

What it computes, per example (cleanlab 2.x):
    from cleanlab.filter import find_label_issues
    from cleanlab.count import compute_confident_joint
    mask = find_label_issues(labels, pred_probs)                      # defaults: prune_by_noise_rate
    ranked_sc = find_label_issues(labels, pred_probs, return_indices_ranked_by="self_confidence")
    ranked_nm = find_label_issues(labels, pred_probs, return_indices_ranked_by="normalized_margin")
    cj = compute_confident_joint(labels, pred_probs)                 # calibrated
"""
import json
import pathlib

import cleanlab
import numpy as np
from cleanlab.count import compute_confident_joint
from cleanlab.filter import find_label_issues


def example(seed, n_per_class, noise, sharpness):
    rng = np.random.default_rng(seed)
    k = len(n_per_class)
    truth = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    labels = truth.copy()
    flip = rng.random(len(truth)) < noise
    labels[flip] = (truth[flip] + rng.integers(1, k, flip.sum())) % k
    logits = rng.normal(0, 1, (len(truth), k))
    logits[np.arange(len(truth)), truth] += sharpness
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    # 4 decimals, renormalised, so that the JSON (and f32) hold them exactly enough.
    p = np.round(p, 4)
    p[:, -1] = np.round(1 - p[:, :-1].sum(1), 4)
    p = np.clip(p, 0, 1)
    return labels, p, flip


cases = []
for seed, sizes, noise, sharp in [
    (1, [20, 20, 20], 0.1, 2.5),
    (2, [40, 15, 25, 8], 0.15, 2.0),
    (3, [30, 30], 0.2, 1.5),
    (4, [12, 9, 30, 6, 18], 0.1, 3.0),
]:
    labels, p, flip = example(seed, sizes, noise, sharp)
    mask = find_label_issues(labels, p)
    cases.append(
        {
            "seed": seed,
            "labels": labels.tolist(),
            "pred_probs": p.tolist(),
            "flipped": np.flatnonzero(flip).tolist(),
            "issues": np.flatnonzero(mask).tolist(),
            "ranked_self_confidence": find_label_issues(
                labels, p, return_indices_ranked_by="self_confidence"
            ).tolist(),
            "ranked_normalized_margin": find_label_issues(
                labels, p, return_indices_ranked_by="normalized_margin"
            ).tolist(),
            "confident_joint": compute_confident_joint(labels, p).tolist(),
        }
    )
out = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/audit/cleanlab.json"
out.write_text(json.dumps({"cleanlab": cleanlab.__version__, "cases": cases}) + "\n")
print(f"wrote {out}: {len(cases)} cases, issues {[len(c['issues']) for c in cases]}")
