"""Per-example Fisher matrices from torch models: tasks, formulations, per-layer gradient rules,
per-example gradients, one batch, loading, and the build loop that writes a PEF store (paper,
section 2.1 and appendix D)."""

from npeff.ops.pef.build import BuildPlan, build_store, parse_shard
from npeff.ops.pef.layers import LayerRule, register_layer_rule
from npeff.ops.pef.loading import load_examples, load_model_and_tokenizer
from npeff.ops.pef.spec import PefSpec
from npeff.ops.pef.tasks import TaskSpec

__all__ = ["BuildPlan", "LayerRule", "PefSpec", "TaskSpec", "build_store", "load_examples",
           "load_model_and_tokenizer", "parse_shard", "register_layer_rule"]
