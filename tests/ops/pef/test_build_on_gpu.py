"""Building on a CUDA GPU (``device="cuda"``): the per-example gradients, their per-layer taps and
the projection run on the device, and the stored rows equal those of a CPU build."""

import numpy as np
import pytest
import torch

from npeff.cuda_ops import last_backend
from npeff.ops import PefSpec, build_store
from npeff.ops.pef import load_model_and_tokenizer
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import TASKS

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name, formulation, pef", [
    ("gpt2", "label-tokens", PefSpec()),
    ("llama", "label-tokens", PefSpec(exact_rows="classes")),
    ("llama", "suffixes", PefSpec(kind="gradient")),
    ("classifier", "classifier", PefSpec(kind="eps", eps_rows=2)),
])
def test_rows_built_on_the_gpu_equal_the_cpu_build(tmp_path, tiny_models, name, formulation, pef):
    task = TASKS[formulation]
    stores = {}
    for device in ("cpu", "cuda"):
        model, tokenizer = load_model_and_tokenizer(tiny_models[name], formulation, device=device)
        # a small budget sends rows through the projection in groups, as a large model would
        stores[device] = build_store(model, REVIEWS, task, tmp_path / device, tokenizer=tokenizer, pef=pef,
                                     dim=64, device=device, backend=device, batch_size=2, memory_budget=4096)
        assert last_backend() == device
    cpu, gpu = stores["cpu"].read(), stores["cuda"].read()
    rtol = tolerances.FLOAT32_BUILD_ON_ANOTHER_DEVICE["rtol"]
    np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=rtol * np.abs(cpu).max())
    np.testing.assert_allclose(stores["cuda"].examples["pef_norm"], stores["cpu"].examples["pef_norm"], rtol=rtol)

