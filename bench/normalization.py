"""Normalising PEFs matters (paper, section 2.2): scikit-learn's digits, exact 10-row PEFs of a small
MLP written through ``create_store`` (not normalised), decomposed as read-normalised (the default)
and as stored (``normalize=False``), with the share of prediction-tuned components of each.

    python bench/normalization.py [--components 20] [--warmup-steps 200] [--joint-steps 800]

Needs scikit-learn (for the data set, bundled with it). About two minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def train_mlp(x: torch.Tensor, y: torch.Tensor, hidden: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model


def exact_pefs(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``G`` ``[m, 10, n]`` with rows ``sqrt(p_c) grad log p_c`` (section 2.1, no projection) and the
    predictions ``[m]``."""
    from torch.func import functional_call, jacrev, vmap

    params = {name: p.detach() for name, p in model.named_parameters()}

    def log_probs(p, xi):
        return torch.log_softmax(functional_call(model, p, (xi[None],))[0], dim=-1)

    jac = vmap(jacrev(log_probs), in_dims=(None, 0))(params, x)  # name -> [m, 10, *shape]
    g = torch.cat([jac[name].reshape(len(x), 10, -1) for name in params], dim=2)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=-1)
    return (p.sqrt()[:, :, None] * g).numpy().astype(np.float32), p.argmax(dim=1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--joint-steps", type=int, default=800)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    from npeff.errors import DecompositionError
    from npeff.ops import decompose
    from npeff.ops.analysis.tuning import compute_tunings
    from npeff.store import create_store

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    model = train_mlp(x, y, args.hidden, args.seed)
    g, predictions = exact_pefs(model, x)
    norms = np.linalg.norm(g.astype(np.float64) @ g.astype(np.float64).transpose(0, 2, 1), axis=(1, 2))
    print(f"{len(g)} examples, PEFs [{g.shape[1]}, {g.shape[2]}], accuracy {(predictions == digits.target).mean():.3f}, "
          f"||G^T G||_F from {norms.min():.3g} to {norms.max():.3g}")
    with tempfile.TemporaryDirectory() as root:
        writer = create_store(Path(root) / "digits", rank=g.shape[1], dim=g.shape[2], projection={"kind": "none"})
        writer.append(g)
        store = writer.finalize()
        # as stored, the gradient scales with the PEFs' size: also try learning rates that stay finite
        for normalize, lr in [(True, args.lr), (False, args.lr), (False, args.lr / 100), (False, args.lr / 10_000)]:
            began = time.perf_counter()
            try:
                result = decompose(store, args.components, warmup_steps=args.warmup_steps,
                                   joint_steps=args.joint_steps, warmup_lr=lr, joint_lr=lr, seed=args.seed,
                                   normalize=normalize)
            except DecompositionError as error:
                print(f"normalize={normalize!s:5}  lr {lr:.0e}  {error}")
                continue
            tuning = compute_tunings(result["W"], digits.target.tolist(), predictions.tolist())
            print(f"normalize={normalize!s:5}  lr {lr:.0e}  prediction-tuned {tuning.percentage('prediction') or 0:5.1f}%"
                  f"  label-tuned {tuning.percentage('label') or 0:5.1f}%  analysed {tuning.summary()['n_included']}"
                  f"/{args.components}  loss {result['losses'][0]:.4g} -> {result['losses'][-1]:.4g}  "
                  f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
