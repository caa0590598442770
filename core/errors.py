"""The one exceptions module of npeff.

Every error raised for a user mistake is an :class:`NpeffError`. Subclasses also inherit the
matching builtin so that ``except FileNotFoundError`` and friends keep working. Messages say
what was received, what was expected and how to fix it.

Hierarchy::

    NpeffError (ValueError)
    ├── InvalidArgumentError
    │   ├── TaskError                    a task file or task spec is invalid
    │   └── BackendUnavailableError (RuntimeError)   a requested device or backend is missing
    ├── OutputExistsError (FileExistsError)      an output is there; --overwrite replaces it
    │   └── StoreExistsError
    ├── NotFoundError (FileNotFoundError)        an input is not there
    │   └── StoreNotFoundError
    ├── CorruptError                              an artifact does not match its checksums/format
    │   └── StoreCorruptError
    ├── IncompatibleStoresError                   projection or parameter layout differ
    └── DecompositionError                        the optimisation cannot go on
"""


class NpeffError(ValueError):
    """Base class of every error npeff raises on purpose."""


class InvalidArgumentError(NpeffError, ValueError):
    """An argument has the wrong value, shape or dtype."""


class TaskError(InvalidArgumentError):
    """A task file or task specification is invalid."""


class BackendUnavailableError(InvalidArgumentError, RuntimeError):
    """An explicitly requested compute backend or device (e.g. ``cuda``) is not available."""


class OutputExistsError(NpeffError, FileExistsError):
    """An output (store, decomposition, report, export) already exists and was not to be replaced."""


class StoreExistsError(OutputExistsError):
    """A store exists at the path and was opened with different arguments."""


class NotFoundError(NpeffError, FileNotFoundError):
    """An input (store, decomposition, file) does not exist."""


class StoreNotFoundError(NotFoundError):
    """No store exists at the given path."""


class CorruptError(NpeffError):
    """An artifact's data does not match its checksums, schema or format."""


class StoreCorruptError(CorruptError):
    """A store's data does not match its checksums, schema or manifest."""


class IncompatibleStoresError(NpeffError):
    """Stores differ in projection spec or parameter layout and cannot be combined."""


class DecompositionError(NpeffError):
    """The optimisation cannot go on (e.g. the loss became non-finite)."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message for a one-line report (its type's name when empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
