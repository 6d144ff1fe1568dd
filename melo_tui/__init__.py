"""``melo-tui``: the Textual chat client."""
