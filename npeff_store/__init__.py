"""Every on-disk format of npeff.

PEF stores (manifest, sharded zarr v3 tensor, Parquet table): ``_layout``, ``reader``, ``writer``,
``manifest``, ``schema``; reading them from anywhere: ``location``; sharing them: ``info``, ``verify``,
``merge``, ``card``, ``upgrade``, ``xarray_view``.
Decompositions, their checkpoints and fitted coefficients: ``decomposition``, ``checkpoint``,
``coefficients`` (arrays through ``arrays``). Atomic writes, output directories and JSON: ``_files``.
"""

from npeff.store.decomposition import Decomposition, DecompositionManifest, open_decomposition
from npeff.store.info import format_info, store_info
from npeff.store.manifest import ModelIdentity, ParameterLayout, StoreConfig, StoreManifest
from npeff.store.merge import merge_stores
from npeff.store.reader import PefStore, StoreChunk, open_store
from npeff.store.schema import EXAMPLE_SCHEMA
from npeff.store.verify import VerifyReport, verify_store
from npeff.store.writer import PefStoreWriter, create_store

__all__ = [
    "Decomposition",
    "DecompositionManifest",
    "open_decomposition",
    "EXAMPLE_SCHEMA",
    "ModelIdentity",
    "ParameterLayout",
    "PefStore",
    "PefStoreWriter",
    "StoreChunk",
    "StoreConfig",
    "StoreManifest",
    "create_store",
    "open_store",
    "VerifyReport",
    "format_info",
    "merge_stores",
    "store_info",
    "verify_store",
]
