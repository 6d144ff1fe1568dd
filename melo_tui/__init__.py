"""``melo-tui``: the Textual chat client (``melo_tui.main`` starts it)."""
