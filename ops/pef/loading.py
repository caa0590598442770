"""Loading what a build reads: Hugging Face models and tokenizers, local or hub data, and the
identity of a model as a store's manifest records it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from npeff.errors import BackendUnavailableError, InvalidArgumentError, first_line
from npeff.progress import third_party_bars_off_unless_wanted
from npeff.store import ModelIdentity

#: ``--dtype`` names of the parameter dtypes a model may be loaded in
MODEL_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}

#: data file suffix -> the ``datasets`` builder that reads it
DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def load_model_and_tokenizer(name_or_path: str, formulation: str, *, device: str = "cpu",
                             dtype: str = "float32", gguf_file: str | None = None, revision: str | None = None):
    """``from_pretrained`` a causal LM (or a sequence classifier for ``classifier``).

    Args:
        gguf_file: a GGUF file in the folder or hub repository ``name_or_path``: transformers reads
            its architecture and tokenizer from it and dequantises the weights (needs ``gguf``).
        revision: the hub revision (branch, tag or commit) to load.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    third_party_bars_off_unless_wanted()
    torch_dtype = MODEL_DTYPES[dtype]
    loader = AutoModelForSequenceClassification if formulation == "classifier" else AutoModelForCausalLM
    options = {key: value for key, value in (("gguf_file", gguf_file), ("revision", revision)) if value is not None}
    if not Path(name_or_path).exists():
        options.update(_hub_model_options(name_or_path, revision))
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **options)
        model = loader.from_pretrained(name_or_path, **options)
    except (OSError, EnvironmentError) as error:
        raise InvalidArgumentError(f"cannot load model {name_or_path!r}: {first_line(error)}") from None
    except ImportError as error:
        if gguf_file is None:
            raise
        raise BackendUnavailableError(f"--gguf-file needs the gguf package ({first_line(error)}): "
                                      f"pip install 'npeff[build]'") from None
    except ValueError as error:
        kind = "sequence classifier" if formulation == "classifier" else "causal language model"
        raise InvalidArgumentError(f"{name_or_path!r} cannot be loaded as a {kind} (needed by the "
                                   f"{formulation} formulation): {first_line(error)}") from None
    return model.to(device=device, dtype=torch_dtype), tokenizer


def _hub_model_options(name: str, revision: str | None) -> dict:
    """Check a model name that is no local folder against the Hub in one quick request, before
    transformers' many (each with its own retries and timeouts).

    Returns:
        ``{"local_files_only": True}`` when the Hub cannot be reached but the model is in the
        cache (loaded from there), else nothing.

    Raises:
        InvalidArgumentError: a name that looks like a path, a repository the Hub does not have,
            or an unreachable Hub and no cached copy (saying how to use the cache only).
    """
    import os

    if name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)) or name.count("/") > 1:
        raise InvalidArgumentError(f"the model folder {name} does not exist")
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE:
        return {}
    try:
        model_info(name, revision=revision, timeout=10)
    except HFValidationError as error:
        raise InvalidArgumentError(f"{name!r} is neither a local folder nor a Hub model name: {first_line(error)}") from None
    except RevisionNotFoundError:
        raise InvalidArgumentError(f"the Hub model {name} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise InvalidArgumentError(f"there is no local folder {name} and no Hub model of that name "
                                   f"(or it is private: log in with `hf auth login`)") from None
    except Exception as error:  # the network: httpx and OS errors, timeouts, HTTP 5xx
        if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
            return {"local_files_only": True}
        raise InvalidArgumentError(
            f"there is no local folder {name}, and the Hugging Face Hub cannot be reached to fetch it "
            f"({first_line(error)}); give a local folder, or set HF_HUB_OFFLINE=1 to load from the cache "
            f"only") from None
    return {}


def load_examples(data: str, *, config: str | None = None, split: str = "train", revision: str | None = None):
    """A local jsonl/json/csv/parquet file, or a hub dataset ``name`` (with ``config``/``split`` and
    optionally a ``revision``)."""
    import datasets

    third_party_bars_off_unless_wanted()
    path = Path(data)
    try:
        if path.exists():
            if path.suffix not in DATA_FILE_BUILDERS:
                raise InvalidArgumentError(f"data file {path} must be .jsonl, .json, .csv or .parquet")
            if path.is_file() and path.stat().st_size == 0:
                raise InvalidArgumentError(f"data file {path} is empty")
            return datasets.load_dataset(DATA_FILE_BUILDERS[path.suffix], data_files=str(path), split="train")
        if path.suffix in DATA_FILE_BUILDERS or ("/" in data and path.parent.exists()):
            raise InvalidArgumentError(f"data file {path} does not exist")
        return datasets.load_dataset(data, config, split=split, revision=revision)
    except InvalidArgumentError:
        raise
    except Exception as error:  # datasets raises many types for missing/unreachable data
        raise InvalidArgumentError(f"cannot load data {data!r}: {first_line(error)}") from None


def model_identity(model: nn.Module, name: str | None, *, gguf_file: str | None = None) -> ModelIdentity:
    """The model as the manifest records it: a name, the hub revision when known (the commit it
    was loaded from), a hash of its configuration (of its ``repr`` for a module without a Hugging
    Face config) and the GGUF file it was loaded from."""
    config = getattr(model, "config", None)
    config_text = config.to_json_string(use_diff=False) if hasattr(config, "to_json_string") else repr(model)
    return ModelIdentity(
        name=name or type(model).__name__,
        revision=getattr(config, "_commit_hash", None) if config is not None else None,
        config_hash=hashlib.sha256(config_text.encode()).hexdigest()[:16],
        gguf_file=gguf_file,
    )
