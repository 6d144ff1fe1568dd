"""``melo-tui``: the Textual chat client (placeholder until the TUI lands)."""
