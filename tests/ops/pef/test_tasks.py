"""Task files (ops/pef/tasks.py): what a valid task file reads as, and every refused one."""

import pytest

from npeff.ops import TaskSpec
from npeff.ops.pef.tasks import TaskError

GOOD = """formulation: suffixes
template: "review : {text} sentiment :"
labels: ["very good", "not good"]
label_field: label
max_length: 64
"""


def test_task_file_round_trips(tmp_path):
    (tmp_path / "task.yaml").write_text(GOOD)
    task = TaskSpec.from_yaml(tmp_path / "task.yaml")
    assert task == TaskSpec.from_dict(task.to_dict())
    assert (task.labels, task.fields, task.max_length) == (("very good", "not good"), ("text",), 64)
    assert task.render({"text": "so so"}) == "review : so so sentiment :"
    assert [task.gold_label({"label": v}) for v in (1, "1", "very good", None)] == [1, 1, 0, None]


@pytest.mark.parametrize("text,message", [
    ("formulation: vibes\ntemplate: '{text}'\n", "formulation must be one of"),
    ("template: '{text}'\n", "lacks the required key 'formulation'"),
    ("formulation: next-token\ntemplate: 'no fields'\n", "uses no data field"),
    ("formulation: next-token\ntemplate: '{text}'\nlabels: [a, b]\n", "takes no 'labels'"),
    ("formulation: label-tokens\ntemplate: '{text}'\nlabels: [a]\n", "at least two"),
    ("formulation: classifier\ntemplate: '{text}'\ncolour: red\n", "unknown task keys"),
    ("formulation: [unclosed\n", "not valid YAML"),
    (None, "does not exist"),
])
def test_bad_task_files_are_refused(tmp_path, text, message):
    path = tmp_path / "task.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(TaskError, match=message):
        TaskSpec.from_yaml(path)
