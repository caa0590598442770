"""Task formulations: how a model's output becomes a distribution over classes (appendix D).

A task file is YAML::

    formulation: label-tokens        # label-tokens | suffixes | next-token | classifier
    template: "Review: {text}\\nSentiment:"
    labels: [" negative", " positive"]   # label-tokens and suffixes
    label_field: label               # optional: data field with the gold label index
    max_length: 512                  # optional: inputs are truncated (from the left) to this
"""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path
from typing import Any

from npeff.errors import InvalidArgumentError, TaskError, first_line

FORMULATIONS = ("label-tokens", "suffixes", "next-token", "classifier")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A task formulation (paper, appendix D).

    Attributes:
        formulation: ``label-tokens`` (distribution over the first tokens of the label words,
            renormalised), ``suffixes`` (log-probability of each multi-token label suffix,
            renormalised), ``next-token`` (the full vocabulary) or ``classifier`` (a
            sequence-classification head).
        template: Python format string over the data's fields, e.g. ``"Review: {text}"``.
        labels: label strings (``label-tokens`` and ``suffixes``).
        label_field: optional data field holding the gold label index.
        max_length: inputs longer than this many tokens keep their last ``max_length`` tokens.
    """

    formulation: str
    template: str
    labels: tuple[str, ...] = ()
    label_field: str | None = None
    max_length: int = 512

    def __post_init__(self) -> None:
        if self.formulation not in FORMULATIONS:
            raise TaskError(f"formulation must be one of {', '.join(FORMULATIONS)}; got {self.formulation!r}")
        if not isinstance(self.template, str) or not self.template:
            raise TaskError("the task needs a non-empty 'template' string")
        try:
            fields = self.fields
        except ValueError as error:
            raise TaskError(f"template {self.template!r} is not a valid format string: {error}") from None
        if not fields:
            raise TaskError(f"template {self.template!r} uses no data field (write e.g. '{{text}}')")
        object.__setattr__(self, "labels", tuple(self.labels))
        needs_labels = self.formulation in ("label-tokens", "suffixes")
        if needs_labels and len(self.labels) < 2:
            raise TaskError(f"formulation {self.formulation} needs at least two 'labels', got {list(self.labels)}")
        if not needs_labels and self.labels:
            raise TaskError(f"formulation {self.formulation} takes no 'labels' (got {list(self.labels)})")
        if len(set(self.labels)) != len(self.labels):
            raise TaskError(f"labels must be distinct, got {list(self.labels)}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1:
            raise TaskError(f"max_length must be a positive integer, got {self.max_length!r}")

    @property
    def fields(self) -> tuple[str, ...]:
        """Data fields the template reads."""
        names = [name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None]
        return tuple(dict.fromkeys(name.split(".")[0].split("[")[0] for name in names))

    def render(self, example: dict) -> str:
        """The model input for one example."""
        try:
            return self.template.format(**example)
        except KeyError as error:
            raise TaskError(
                f"template field {error} is not in the data; fields present: {', '.join(sorted(example))}"
            ) from None

    def gold_label(self, example: dict, num_classes: int | None = None) -> int | None:
        """The gold class index of ``example`` (None without ``label_field`` or for a null label).

        Raises:
            TaskError: the field is missing, the value is neither an index nor one of the labels,
                or (given ``num_classes``) an index outside ``[0, num_classes)``.
        """
        label = self._label_index(example)
        if label is not None and num_classes is not None and not 0 <= label < num_classes:
            raise TaskError(f"label {label} in field {self.label_field!r} is outside the {num_classes} classes "
                            f"(0 to {num_classes - 1})")
        return label

    def check_examples(self, columns: dict, num_classes: int | None, offset: int = 0) -> None:
        """Refuse, before anything is computed, data the build would store wrongly: a null in a
        field the template reads (it would be rendered as "None") or a gold label outside the
        classes. ``columns`` maps field names to their values over the examples built (the first
        is example ``offset``)."""
        for name in self.fields:
            values = columns.get(name)
            if values is None:
                continue
            nulls = [offset + i for i, value in enumerate(values) if value is None]
            if nulls:
                raise TaskError(f"field {name!r} is null in {len(nulls)} examples (first: example {nulls[0]}); "
                                f"fill or drop them")
        if self.label_field is not None and columns.get(self.label_field) is not None:
            for i, value in enumerate(columns[self.label_field]):
                try:
                    self.gold_label({self.label_field: value}, num_classes)
                except TaskError as error:
                    raise TaskError(f"example {offset + i}: {error}") from None

    def _label_index(self, example: dict) -> int | None:
        if self.label_field is None:
            return None
        if self.label_field not in example:
            raise TaskError(f"label_field {self.label_field!r} is not in the data; fields present: "
                            f"{', '.join(sorted(example))}")
        value = example[self.label_field]
        if value is None:
            return None
        if isinstance(value, str) and value in self.labels:
            return self.labels.index(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise TaskError(f"label {value!r} in field {self.label_field!r} is neither an index nor one of "
                            f"the labels") from None

    def check_fields(self, columns) -> None:
        """Fail early (before any store is written) when the data lacks a field the task reads."""
        missing = [f for f in self.fields if f not in columns]
        if self.label_field is not None and self.label_field not in columns:
            missing.append(self.label_field)
        if missing:
            raise TaskError(f"the data has no field {', '.join(repr(m) for m in missing)} used by the task; "
                            f"fields present: {', '.join(sorted(columns))}")

    def to_dict(self) -> dict:
        return {"formulation": self.formulation, "template": self.template, "labels": list(self.labels),
                "label_field": self.label_field, "max_length": self.max_length}

    @classmethod
    def from_dict(cls, data: Any) -> "TaskSpec":
        if not isinstance(data, dict):
            raise TaskError(f"a task must be a mapping of keys to values, got {type(data).__name__}")
        known = {"formulation", "template", "labels", "label_field", "max_length"}
        unknown = set(data) - known
        if unknown:
            raise TaskError(f"unknown task keys {sorted(unknown)}; known: {', '.join(sorted(known))}")
        for key in ("formulation", "template"):
            if key not in data:
                raise TaskError(f"the task lacks the required key {key!r}")
        labels = data.get("labels") or ()
        if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels):
            raise TaskError(f"labels must be a list of strings, got {labels!r}")
        return cls(formulation=data["formulation"], template=data["template"], labels=tuple(labels),
                   label_field=data.get("label_field"), max_length=data.get("max_length", 512))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TaskSpec":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise TaskError(f"task file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise TaskError(f"task file {path} is not UTF-8 text: {error}") from None
        except (yaml.YAMLError, RecursionError) as error:
            raise TaskError(f"task file {path} is not valid YAML: {first_line(error)}") from None
        return cls.from_dict(data)


__all__ = ["FORMULATIONS", "TaskError", "TaskSpec", "InvalidArgumentError"]
