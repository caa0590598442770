"""Writes tests/data/v0.1.0: a PEF store, a decomposition and fitted coefficients made by npeff 0.1.0,
with the numbers they hold, so later versions can be checked to open them and give the same numbers."""
import shutil, sys
from pathlib import Path
import numpy as np
from npeff.store import create_store, open_store
from npeff.ops import decompose, fit_coefficients

root = Path(sys.argv[1]); shutil.rmtree(root, ignore_errors=True); root.mkdir(parents=True)
rng = np.random.default_rng(7)
m, r, d, C = 24, 2, 64, 3
planted_h = np.abs(rng.standard_normal((C, d)))
g = np.zeros((m, r, d), np.float32)
for i in range(m):
    g[i] = (rng.random((r, 1)) * planted_h[i % C] + 0.05 * rng.standard_normal((r, d))).astype(np.float32)
g /= np.linalg.norm(g.reshape(m, -1), axis=1)[:, None, None]
writer = create_store(root / "store", rank=r, dim=d, projection={"kind": "ssp-v1", "seed": 3},
                      shard_examples=8, chunk_examples=4, command="fixture")
examples = [{"text": f"example {i}", "label": i % 2, "prediction": (i // 2) % 2, "probs": [0.3, 0.7],
             "pef_norm": 1.0 + i, "source_id": f"src-{i}"} for i in range(m)]
writer.append(g[:12], examples[:12]); writer.append(g[12:], examples[12:]); writer.finalize()
store = open_store(root / "store")
dec = decompose(store, n_components=C, warmup_steps=3, joint_steps=6, warmup_lr=1e-2, joint_lr=1e-2,
                dtype="float64", seed=1, out=root / "decomposition", command="fixture")
coef = fit_coefficients(dec, store, out=root / "coefficients", steps=4, seed=2, dtype="float64", command="fixture")
np.savez(root / "expected.npz", G=store.read(0, m), W=dec.W, H=dec.H, losses=dec.losses, coefficients=coef)
print("wrote", root, dec.losses)
