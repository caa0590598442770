"""What npeff tells the user while it works: log lines and progress, all on stderr.

Every message goes through the ``npeff`` logger (:data:`log`; modules may use child loggers such as
``logging.getLogger(__name__)``). The ``npeff`` command installs one handler writing
``npeff: message`` lines to stderr, at INFO by default (``-q``: WARNING, ``-v``: DEBUG); a library
user configures logging as usual.

Progress is one function, :func:`progress_bar`:

* on a terminal (or in a notebook) it is a tqdm bar;
* when stderr is not a terminal (a log file, a pipe, CI), or ``TQDM_DISABLE`` is set to anything
  but ``0``/``false``, it is a log line at most every ``NPEFF_PROGRESS_INTERVAL`` seconds (30 by
  default; ``npeff --progress-interval``) plus a last one when the work is done, e.g.
  ``npeff: decompose 1,200/5,000 steps (24%), 3.1 step/s, eta 20 min, loss=0.0123``. Nothing
  there writes a carriage return;
* when the ``npeff`` logger is set above INFO (``npeff -q``) there is neither.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Iterable, Iterator

from npeff.errors import InvalidArgumentError

#: the logger of the whole package
log = logging.getLogger("npeff")

#: seconds between two progress log lines when nobody set NPEFF_PROGRESS_INTERVAL
DEFAULT_INTERVAL = 30.0

#: the variable that sets the seconds between progress log lines
INTERVAL_VARIABLE = "NPEFF_PROGRESS_INTERVAL"

#: values of TQDM_DISABLE that leave the bars on
_FALSE_WORDS = ("", "0", "false", "no", "off")

_settings: dict[str, float | None] = {"interval": None}  # set by configure()


class StderrHandler(logging.Handler):
    """``npeff: message`` lines (``npeff: warning: message`` above INFO, ``npeff: debug: ...`` below)
    on the ``sys.stderr`` of the moment (so that a swapped stream, as in click's CliRunner, gets
    them), above any tqdm bar being drawn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
            _write_line(f"npeff: {level}{self.format(record)}", sys.stderr)
        except Exception:  # a closed or broken stream: logging's own reporting
            self.handleError(record)


def configure(*, level: int = logging.INFO, interval: float | None = None) -> None:
    """Send the ``npeff`` logger's records at ``level`` and above to stderr (one handler, however
    often this is called) and set the seconds between progress log lines (None:
    ``NPEFF_PROGRESS_INTERVAL`` or 30). The ``npeff`` command calls it once per invocation."""
    if interval is not None and not interval >= 0:
        raise InvalidArgumentError(f"the progress interval must be seconds >= 0, got {interval!r}")
    if not any(isinstance(handler, StderrHandler) for handler in log.handlers):
        log.addHandler(StderrHandler())
    log.propagate = False  # the handler above prints them; a root handler would print them twice
    log.setLevel(level)
    _settings["interval"] = interval


def progress_interval() -> float:
    """Seconds between two progress log lines: :func:`configure`'s, else ``NPEFF_PROGRESS_INTERVAL``'s,
    else 30."""
    if _settings["interval"] is not None:
        return float(_settings["interval"])
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise InvalidArgumentError(f"{INTERVAL_VARIABLE} must be a number of seconds >= 0, got {text!r}; "
                                   f"unset it for the default of {DEFAULT_INTERVAL:g}")
    return seconds


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str = "it",
                 enabled: bool = True, initial: int = 0, leave: bool = True) -> Any:
    """A progress display for ``desc``, counting ``unit``\\ s up to ``total``.

    Args:
        iterable: wrapped and iterated over (``total`` defaults to its length); without it, call
            ``update(n)``.
        enabled: False gives an object that shows nothing (the ``progress=False`` of the callers).
        initial: the count already done (a resumed run).
        leave: keep the bar on screen, and log a last line, when done (False: transient).

    Returns:
        A tqdm bar on a terminal, else a :class:`LoggedProgress`; both have ``update``,
        ``set_postfix``, ``set_postfix_str``, ``write``, ``close``, iteration and ``with``.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not enabled or not _progress_wanted():
        return LoggedProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, shown=False)
    reason = _why_no_bar()
    if reason is None:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                    dynamic_ncols=True, file=sys.stderr, disable=False)
    interval = progress_interval()
    log.debug("%s: progress as log lines every %g s (%s)", desc, interval, reason)
    return LoggedProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                          interval=interval)


class LoggedProgress:
    """The tqdm interface the callers use, shown as INFO log lines: one at most every ``interval``
    seconds while counting, and (with ``leave``) one when closed after the work finished.

    ``shown=False``: counts and shows nothing.
    """

    def __init__(self, iterable: Iterable | None = None, *, total: int | None, desc: str, unit: str,
                 initial: int = 0, leave: bool = True, interval: float = DEFAULT_INTERVAL, shown: bool = True):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.initial = initial
        self.leave, self.interval, self.shown = leave, interval, shown
        self.postfix = ""
        self.closed = False
        self._began = self._logged = time.monotonic()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError(f"progress of {self.desc!r} wraps no iterable; call update() instead")
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return self.total if self.total is not None else len(self.iterable)

    def __enter__(self) -> "LoggedProgress":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        else:  # the error says what happened; no "done" line
            self.closed = True

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; log a line if the last one is ``interval`` seconds old."""
        self.n += n
        if not self.shown or self.closed:
            return
        finished = self.total is not None and self.n >= self.total
        if finished and self.leave:
            return  # close() says it
        now = time.monotonic()
        if now - self._logged >= self.interval:
            self._logged = now
            log.info(self._line(now))

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: Any) -> None:
        """Values shown after the count (``loss=0.0123``), as tqdm's."""
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{key}={_format_value(value)}" for key, value in values.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = str(text)

    def refresh(self) -> None:
        """Nothing to redraw (tqdm's interface)."""

    def write(self, text: str, file=None, end: str = "\n") -> None:
        """``text`` on ``file`` (default: stderr), as ``tqdm.write``."""
        stream = file if file is not None else sys.stderr
        stream.write(f"{text}{end}")
        stream.flush()

    def close(self) -> None:
        """Log the last line (with ``leave``), once."""
        if self.closed:
            return
        self.closed = True
        if self.shown and self.leave:
            log.info(self._line(time.monotonic(), final=True))

    def _line(self, now: float, final: bool = False) -> str:
        """``decompose 1,200/5,000 steps (24%), 3.1 step/s, eta 20 min, loss=0.0123``; when final,
        ``... (100%) in 25 min, 3.3 step/s, ...``."""
        elapsed = now - self._began
        count = f"{self.n:,}" if self.total is None else f"{self.n:,}/{self.total:,}"
        parts = [f"{self.desc} {count} {_plural(self.unit)}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if final:
            parts[0] += f" in {_duration(elapsed)}"
        done = self.n - self.initial
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            parts.append(f"{rate:.3g} {self.unit}/s")
            if not final and self.total is not None and self.n < self.total:
                parts.append(f"eta {_duration((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)


def third_party_bars_off_unless_wanted() -> None:
    """Turn off the progress bars of ``datasets``, ``transformers`` and ``huggingface_hub`` (data
    loading, checkpoint loading, downloads) where npeff's own would be off: on non-TTY stderr,
    under ``TQDM_DISABLE`` or ``npeff -q``. Their bars draw ``\r`` frames into log files otherwise.
    Call it just before using them (it imports nothing that is not installed)."""
    if _progress_wanted() and _why_no_bar() is None:
        return
    import importlib

    for module, switch in (("datasets", "disable_progress_bars"), ("huggingface_hub.utils", "disable_progress_bars"),
                           ("transformers.utils.logging", "disable_progress_bar")):
        try:
            getattr(importlib.import_module(module), switch)()
        except (ImportError, AttributeError):
            pass


def _progress_wanted() -> bool:
    """False when the ``npeff`` logger is set above INFO (``npeff -q``); a logger nobody set (a
    library user's) leaves ``progress=True`` in charge."""
    return log.level == logging.NOTSET or log.isEnabledFor(logging.INFO)


def _why_no_bar() -> str | None:
    """Why progress cannot be a bar here (None: it can)."""
    disabled = os.environ.get("TQDM_DISABLE")
    if disabled is not None and disabled.strip().lower() not in _FALSE_WORDS:
        return f"TQDM_DISABLE={disabled}"
    stream = sys.stderr
    if type(stream).__module__.startswith("ipykernel"):
        return None  # a notebook: tqdm.auto draws a widget
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        pass
    return "stderr is not a terminal"


def _write_line(line: str, stream) -> None:
    """``line`` on ``stream``, above any tqdm bar on screen."""
    bars = sys.modules.get("tqdm.std")
    if bars is not None and getattr(bars.tqdm, "_instances", None):
        bars.tqdm.write(line, file=stream)
        return
    stream.write(line + "\n")
    stream.flush()


def _plural(unit: str) -> str:
    """``step`` -> ``steps``, ``pass`` -> ``passes``, ``ex`` -> ``examples``."""
    if unit == "ex":
        return "examples"
    return unit + ("es" if unit.endswith(("s", "x", "sh", "ch")) else "s")


def _duration(seconds: float) -> str:
    """``12 s``, ``20 min``, ``1.5 h``."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _format_value(value: Any) -> str:
    """A postfix value: floats to 4 significant digits, the rest as ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["DEFAULT_INTERVAL", "INTERVAL_VARIABLE", "LoggedProgress", "StderrHandler", "configure", "log",
           "progress_bar", "progress_interval"]
