"""Melo's shared module: wire models, E2E crypto and the client SDK.

Imports nothing from ``server``, ``melo_cli`` or ``melo_tui``.
"""

__version__ = "0.1.0"
