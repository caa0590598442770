"""Per-example Fisher matrices from torch models: tasks, formulations, per-example gradients, the
build loop that writes a PEF store (paper, section 2.1 and appendix D)."""

from npeff.ops.pef.build import BuildPlan, build_store, load_examples, load_model_and_tokenizer, parse_shard
from npeff.ops.pef.spec import PefSpec
from npeff.ops.pef.tasks import TaskSpec

__all__ = ["BuildPlan", "PefSpec", "TaskSpec", "build_store", "load_examples", "load_model_and_tokenizer",
           "parse_shard"]
