"""The one exceptions module: every npeff error is an NpeffError (a ValueError), and each also is the
builtin a caller would catch, so `except FileNotFoundError` and friends keep working."""

import pytest

from npeff import errors


@pytest.mark.parametrize("error, bases", [
    (errors.InvalidArgumentError, (errors.NpeffError, ValueError)),
    (errors.TaskError, (errors.InvalidArgumentError,)),
    (errors.BackendUnavailableError, (errors.InvalidArgumentError, RuntimeError)),
    (errors.OutputExistsError, (errors.NpeffError, FileExistsError)),
    (errors.StoreExistsError, (errors.OutputExistsError, FileExistsError)),
    (errors.NotFoundError, (errors.NpeffError, FileNotFoundError)),
    (errors.StoreNotFoundError, (errors.NotFoundError, FileNotFoundError)),
    (errors.CorruptError, (errors.NpeffError,)),
    (errors.StoreCorruptError, (errors.CorruptError,)),
    (errors.IncompatibleStoresError, (errors.NpeffError,)),
    (errors.DecompositionError, (errors.NpeffError,)),
], ids=lambda value: getattr(value, "__name__", None))
def test_hierarchy(error, bases):
    for base in bases + (errors.NpeffError, ValueError):
        assert issubclass(error, base), f"{error.__name__} is not a {base.__name__}"


def test_every_public_exception_is_listed_above():
    """A new exception class gets its place in the hierarchy test."""
    public = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)}
    tested = {"NpeffError", "InvalidArgumentError", "TaskError", "BackendUnavailableError", "OutputExistsError",
              "StoreExistsError", "NotFoundError", "StoreNotFoundError", "CorruptError", "StoreCorruptError",
              "IncompatibleStoresError", "DecompositionError"}
    assert public == tested
