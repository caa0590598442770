"""Forward passes of the task formulations: texts in, class log-probabilities ``[B, C]`` out.

Inputs are right-padded; a causal LM's distribution is read at each example's last real token.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from npeff.ops.pef.tasks import TaskError, TaskSpec


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


class Formulation:
    """Base class: ``log_probs(texts) -> (log_probs [B, C], sequence_owner [N] or None)``."""

    num_classes: int

    def __init__(self, task: TaskSpec, model: nn.Module, tokenizer, device):
        self.task, self.model, self.tokenizer, self.device = task, model, tokenizer, device
        forward = getattr(model, "forward", None)
        try:
            self._keeps_logits = forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
        except (TypeError, ValueError):
            self._keeps_logits = False

    def _encode(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]
        limit = self.task.max_length
        return [seq[-limit:] if len(seq) > limit else seq for seq in ids]

    def _pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            if not seq:
                raise TaskError("an input renders to no tokens; check the template and the data")
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _last_token_logits(self, texts):
        """``[B, V]`` logits at each text's last token. A causal LM that takes ``logits_to_keep``
        (Hugging Face's) computes its head at the distinct last positions only: ``[B, P, V]``
        instead of ``[B, T, V]`` in the forward pass, and as a gradient in each backward pass."""
        ids, mask = self._pad(self._encode(texts))
        last = mask.sum(dim=1) - 1
        rows = torch.arange(len(texts), device=ids.device)
        if not self._keeps_logits:
            return _logits(self.model(input_ids=ids, attention_mask=mask))[rows, last]
        keep, position = torch.unique(last, return_inverse=True)
        logits = _logits(self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep))
        if logits.shape[1] == keep.numel():
            return logits[rows, position]
        if logits.shape[1] == ids.shape[1]:  # a model that takes the argument but keeps every position
            return logits[rows, last]
        raise TaskError(f"the model returned logits at {logits.shape[1]} positions for logits_to_keep of "
                        f"{keep.numel()} positions in sequences of {ids.shape[1]}")

    def log_probs(self, texts: list[str]):
        raise NotImplementedError


def _label_ids(tokenizer, label: str) -> list[int]:
    ids = tokenizer(label, add_special_tokens=False)["input_ids"]
    if not ids:
        raise TaskError(f"label {label!r} tokenizes to nothing; write it as the model sees it "
                        f"(often with a leading space, e.g. ' {label.strip()}')")
    return ids


class LabelTokens(Formulation):
    """Distribution over the first token of each label word, renormalised (SST-2 / YAT style)."""

    def __init__(self, task, model, tokenizer, device):
        super().__init__(task, model, tokenizer, device)
        firsts = [_label_ids(tokenizer, label)[0] for label in task.labels]
        if len(set(firsts)) != len(firsts):
            clash = [label for label, t in zip(task.labels, firsts) if firsts.count(t) > 1]
            raise TaskError(f"labels {clash} start with the same token; use distinct first tokens or "
                            f"the 'suffixes' formulation")
        self.token_ids = torch.tensor(firsts, device=device)
        self.num_classes = len(firsts)

    def log_probs(self, texts):
        logits = self._last_token_logits(texts)
        return torch.log_softmax(logits[:, self.token_ids], dim=1), None


class NextToken(Formulation):
    """The full next-token distribution (TriviaQA style): one class per vocabulary entry."""

    def __init__(self, task, model, tokenizer, device):
        super().__init__(task, model, tokenizer, device)
        self.num_classes = int(model.get_output_embeddings().weight.shape[0]) if hasattr(
            model, "get_output_embeddings") and model.get_output_embeddings() is not None else int(
            model.config.vocab_size)

    def log_probs(self, texts):
        return torch.log_softmax(self._last_token_logits(texts), dim=1), None


class Suffixes(Formulation):
    """Log-probability of each (multi-token) label suffix, renormalised (CLINC150 style).

    All ``B * C`` input+suffix sequences go through the model in one batch.
    """

    def __init__(self, task, model, tokenizer, device):
        super().__init__(task, model, tokenizer, device)
        self.suffixes = [_label_ids(tokenizer, label) for label in task.labels]
        self.num_classes = len(self.suffixes)

    def log_probs(self, texts):
        prompts = self._encode(texts)
        sequences, owner, targets = [], [], []
        for b, prompt in enumerate(prompts):
            for suffix in self.suffixes:
                sequences.append(prompt + suffix)
                owner.append(b)
                targets.append((len(prompt), suffix))
        ids, mask = self._pad(sequences)
        logits = _logits(self.model(input_ids=ids, attention_mask=mask))
        log_softmax = torch.log_softmax(logits, dim=-1)
        rows, positions, tokens = [], [], []
        for n, (start, suffix) in enumerate(targets):
            for k, token in enumerate(suffix):
                rows.append(n)
                positions.append(start - 1 + k)
                tokens.append(token)
        picked = log_softmax[torch.tensor(rows), torch.tensor(positions), torch.tensor(tokens)]
        per_sequence = torch.zeros(len(sequences), dtype=picked.dtype, device=picked.device)
        per_sequence = per_sequence.index_add(0, torch.tensor(rows, device=picked.device), picked)
        scores = per_sequence.view(len(prompts), self.num_classes)
        return torch.log_softmax(scores, dim=1), torch.tensor(owner, device=picked.device)


class Classifier(Formulation):
    """A sequence-classification head's distribution."""

    def __init__(self, task, model, tokenizer, device):
        super().__init__(task, model, tokenizer, device)
        labels = getattr(getattr(model, "config", None), "num_labels", None)
        if labels is None:
            raise TaskError("the classifier formulation needs a sequence-classification model "
                            "(its config has no num_labels)")
        self.num_classes = int(labels)

    def log_probs(self, texts):
        ids, mask = self._pad(self._encode(texts))
        return torch.log_softmax(_logits(self.model(input_ids=ids, attention_mask=mask)), dim=1), None


class TensorClassifier:
    """Any module mapping a batch of input tensors to logits ``[B, C]`` (an MLP, a vision model)."""

    def __init__(self, model: nn.Module, num_classes: int, device):
        self.model, self.num_classes, self.device = model, num_classes, device

    def log_probs(self, inputs: torch.Tensor):
        logits = _logits(self.model(inputs.to(self.device)))
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise TaskError(f"the model must return logits [B, {self.num_classes}], got {list(logits.shape)}")
        return torch.log_softmax(logits, dim=1), None


class TensorRegressor:
    """Any module mapping a batch of input tensors to real outputs ``[B]`` or ``[B, K]`` (a regression
    head); its PEF rows are divergence gradients only (:func:`~npeff.ops.pef.spec.regression_divergence_rows`).

    Attributes:
        num_outputs: K, found from one forward pass of a first input (``probe``).
    """

    def __init__(self, model: nn.Module, device, probe: torch.Tensor):
        self.model, self.device = model, device
        with torch.no_grad():
            self.num_outputs = int(self.outputs(probe[None])[0].shape[1])

    def outputs(self, inputs: torch.Tensor):
        """``([B, K] outputs, None)`` (no sequence owners: one input per example)."""
        out = _logits(self.model(inputs.to(self.device)))
        if out.ndim not in (1, 2) or out.shape[0] != inputs.shape[0]:
            raise TaskError(f"a regression model must return outputs [B] or [B, K] for a batch of {inputs.shape[0]}, "
                            f"got {list(out.shape)}")
        return out.reshape(out.shape[0], -1), None


FORMULATION_CLASSES = {
    "label-tokens": LabelTokens,
    "suffixes": Suffixes,
    "next-token": NextToken,
    "classifier": Classifier,
}


def make_formulation(task: TaskSpec, model: nn.Module, tokenizer, device) -> Formulation:
    return FORMULATION_CLASSES[task.formulation](task, model, tokenizer, device)
