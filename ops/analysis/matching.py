"""Matching the examples of two stores by their ids, for comparing decompositions of different
stores built from the same examples (the EPS and SVD-rank ablation of the NPEFF paper's Figure 2:
the same sentences, PEFs computed another way).

An example's id is its ``source_id`` in the store's example table (``npeff build`` takes it from
the data's id field, or numbers the examples). Two stores match when each id appears once in
each and both hold the same set of ids; their orders may differ.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from npeff.errors import IncompatibleStoresError


def example_ids(store, role: str = "the store") -> list[str]:
    """The store's example ids (``source_id``), ``[m]``, checked to be present and unique.

    Raises:
        IncompatibleStoresError: some example has no id, or an id appears more than once (the
            message counts them and names ``role``).
    """
    ids = store.examples.column("source_id").to_pylist()
    missing = sum(value is None for value in ids)
    if missing:
        raise IncompatibleStoresError(
            f"{role} {store.path} has {missing} of {len(ids)} examples without an id (source_id): examples of "
            "different stores are matched by id")
    repeated = {value: n for value, n in Counter(ids).items() if n > 1}
    if repeated:
        first = next(iter(repeated))
        raise IncompatibleStoresError(
            f"{role} {store.path} has {len(repeated)} example ids that appear more than once (e.g. {first!r}, "
            f"{repeated[first]} times): examples of different stores are matched by id")
    return [str(value) for value in ids]


def match_examples(store_a, store_b) -> np.ndarray:
    """For each example of ``store_a``, the index of the example of ``store_b`` with its id: ``[m]``.

    ``W_b[match_examples(a, b)]`` puts the rows of a decomposition of ``store_b`` in ``store_a``'s
    order.

    Raises:
        IncompatibleStoresError: an id is missing or repeated (see :func:`example_ids`), or the two
            stores do not hold the same ids (the message says how many differ on each side).

    Notes:
        Memory: both id lists and one dict of ``m`` entries.
    """
    ids_a, ids_b = example_ids(store_a, "A's store"), example_ids(store_b, "B's store")
    position = {value: i for i, value in enumerate(ids_b)}
    only_a = sum(value not in position for value in ids_a)
    if only_a or len(ids_a) != len(ids_b):
        only_b = len(set(ids_b) - set(ids_a))
        raise IncompatibleStoresError(
            f"the stores hold different examples: {only_a} of the {len(ids_a)} example ids of {store_a.path} are not "
            f"in {store_b.path}, and {only_b} of its {len(ids_b)} are not in the first; compare needs the same "
            "examples")
    return np.fromiter((position[value] for value in ids_a), dtype=np.int64, count=len(ids_a))


__all__ = ["example_ids", "match_examples"]
