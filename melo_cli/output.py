"""All output goes through one ``Output``: rich tables and messages for people, one JSON document for
``--json``. Data goes to stdout, diagnostics to stderr; NO_COLOR is honoured.
"""

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Output:
    def __init__(self, *, json_mode: bool = False, verbosity: int = 0) -> None:
        self.json_mode = json_mode
        self.verbosity = verbosity  # -1 quiet, 0 normal, 1+ verbose
        no_color = bool(os.environ.get("NO_COLOR"))
        self.out = Console(file=sys.stdout, no_color=no_color, highlight=False, soft_wrap=True)
        self.err = Console(file=sys.stderr, no_color=no_color, highlight=False, soft_wrap=True)

    # -- data (stdout) -------------------------------------------------------------------------

    def emit(self, document: dict[str, Any], human: Callable[[], None]) -> None:
        """The command's result: ``document`` as JSON with --json, else whatever ``human`` prints."""
        if self.json_mode:
            sys.stdout.write(json.dumps(document, indent=2, default=_json_default) + "\n")
            sys.stdout.flush()
        else:
            human()

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
        no_wrap: Sequence[str] = (),
    ) -> None:
        """A table; columns named in ``no_wrap`` (ids people copy) are never cut or folded."""
        table = Table(title=title, show_lines=False, header_style="bold")
        for column in columns:
            keep = column in no_wrap
            table.add_column(column, no_wrap=keep, overflow="ignore" if keep else "fold")
        for row in rows:
            # Text cells: data (a message, a display name) is never read as rich markup
            table.add_row(*(Text("" if v is None else str(v)) for v in row))
        self.out.print(table)

    def result(self, text: str) -> None:
        """A one-line human result ("Logged in as …"); --quiet drops it."""
        if self.verbosity >= 0:
            self.out.print(text, markup=False)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            self.out.print(f"[bold]{key.ljust(width)}[/bold]  ", end="")
            self.out.print("" if value is None else str(value), markup=False)

    # -- diagnostics (stderr) ------------------------------------------------------------------

    def warn(self, text: str) -> None:
        """A warning people must see even with --json (it goes to stderr, so it never breaks the JSON)."""
        if self.verbosity >= 0:
            self.err.print(f"melo: warning: {text}", markup=False, style="yellow")

    def info(self, text: str) -> None:
        if self.verbosity >= 0 and not self.json_mode:
            self.err.print(text, markup=False)

    def debug(self, text: str) -> None:
        if self.verbosity > 0:
            self.err.print(f"debug: {text}", markup=False, style="dim")

    def error(
        self, message: str, *, code: str = "error", exit_code: int = 1, details: dict[str, Any] | None = None
    ) -> None:
        if self.json_mode:
            doc: dict[str, Any] = {"error": {"code": code, "message": message, "exit_code": exit_code}}
            if details:
                doc["error"]["details"] = details
            sys.stderr.write(json.dumps(doc) + "\n")
            sys.stderr.flush()
        else:
            self.err.print(f"melo: error: {message}", markup=False, style="red")
