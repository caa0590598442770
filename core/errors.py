"""The one exceptions module of npeff.

Every error raised for a user mistake is an :class:`NpeffError`. Subclasses also inherit the
matching builtin so that ``except FileNotFoundError`` and friends keep working. Messages say
what was received, what was expected and how to fix it.
"""


class NpeffError(ValueError):
    """Base class of every error npeff raises on purpose."""


class InvalidArgumentError(NpeffError, ValueError):
    """An argument has the wrong value, shape or dtype."""


class BackendUnavailableError(NpeffError, RuntimeError):
    """An explicitly requested compute backend (e.g. ``cuda``) is not available."""


class StoreNotFoundError(NpeffError, FileNotFoundError):
    """No store exists at the given path."""


class StoreExistsError(NpeffError, FileExistsError):
    """A store exists at the path and was opened with different arguments."""


class StoreCorruptError(NpeffError):
    """A store's data does not match its checksums, schema or manifest."""


class IncompatibleStoresError(NpeffError):
    """Stores differ in projection spec or parameter layout and cannot be combined."""
