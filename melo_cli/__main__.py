"""``python -m melo_cli``."""

from melo_cli.main import run

run()
