"""Hand-made decompositions whose tunings and top examples are known, over a small store."""

import numpy as np

from npeff.store import create_store, open_decomposition
from npeff.store.decomposition import DecompositionManifest, write_decomposition


def small_store(path, *, labels, predictions, texts=None, dim=32, projection=None, ids=None):
    m = len(labels)
    ids = [f"id-{i}" for i in range(m)] if ids is None else ids
    g = np.random.default_rng(0).standard_normal((m, 1, dim)).astype(np.float32)
    texts = texts or [f"example number {i}" for i in range(m)]
    writer = create_store(path, rank=1, dim=dim, projection=projection or {"kind": "external"}, shard_examples=16,
                          chunk_examples=4, pef_spec={"formulation": "classifier", "label_names": ["neg", "pos"]})
    writer.append(g, [{"text": texts[i], "label": labels[i], "prediction": predictions[i],
                       "source_id": ids[i]} for i in range(m)])
    return writer.finalize()


def hand_made_decomposition(path, store, W, *, losses=None, warmup_steps=3):
    W = np.asarray(W, dtype=np.float32)
    H = np.abs(np.random.default_rng(1).standard_normal((W.shape[1], store.dim))).astype(np.float32)
    losses = np.linspace(2.0, 0.5, 10) if losses is None else losses
    path.mkdir(parents=True, exist_ok=True)
    write_decomposition(path, W=W, H=H, losses=np.asarray(losses), manifest=DecompositionManifest(
        n_components=W.shape[1], num_examples=W.shape[0], dim=store.dim,
        config={"n_components": W.shape[1], "warmup_steps": warmup_steps, "joint_steps": 7},
        store=str(store.path), store_fingerprint=store.fingerprint, store_content_id=store.content_id))
    return open_decomposition(path)


def known_tunings_case():
    """64 examples, 5 components with known tunings (see the comments)."""
    m = 64
    rng = np.random.default_rng(5)
    labels = [int(x) for x in rng.integers(0, 2, m)]
    predictions = [int(x) for x in rng.integers(0, 2, m)]
    W = np.zeros((m, 5))

    def put(component, rows, values=None):
        values = np.linspace(1.0, 0.5, len(rows)) if values is None else values
        W[rows, component] = values

    # component 0: top 16 all label 1 and prediction 1 -> prediction- and label-tuned, not LnP
    rows0 = list(range(0, 16))
    for i in rows0:
        labels[i], predictions[i] = 1, 1
    put(0, rows0)
    W[40, 0] = 0.1  # a 17th example with another label/prediction does not count
    labels[40], predictions[40] = 0, 0
    # component 1: top 16 all label 0, predictions mixed -> LnP
    rows1 = list(range(16, 32))
    for n, i in enumerate(rows1):
        labels[i], predictions[i] = 0, n % 2
    put(1, rows1)
    # component 2: top 16 all prediction 0 with mixed labels -> prediction-tuned only
    rows2 = list(range(32, 48))
    for n, i in enumerate(rows2):
        labels[i], predictions[i] = n % 2, 0
    put(2, rows2)
    # component 3: mixed both, over rows already used
    put(3, list(range(8, 40)))
    # component 4: only 10 non-zero examples -> excluded
    put(4, list(range(50, 60)))
    return W, labels, predictions
