"""Entry point of ``melo-tui``; a placeholder for now."""

import sys


def run() -> None:
    print("melo-tui: coming soon", file=sys.stderr)
    sys.exit(0)
