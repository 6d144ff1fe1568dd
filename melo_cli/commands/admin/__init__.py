"""``melo admin``: the server admin toolkit (needs an admin account; every call is audited server-side).

One module per sub-group, as in Hatch: users, sessions, keys, registration (and tokens), reports.
Destructive commands confirm on a terminal, accept --yes, and support --dry-run.
"""

from melo_cli.commands.admin import keys, registration, reports, retention, sessions, users
from melo_cli.options import command_group

app = command_group(
    "Server administration (admin accounts only). Destructive commands ask first on a terminal; "
    "in scripts pass --yes, and --dry-run shows what would happen."
)
app.add_typer(users.app, name="users")
app.add_typer(sessions.app, name="sessions")
app.add_typer(keys.app, name="keys")
app.add_typer(retention.app, name="retention")
app.command("registration")(registration.registration)
app.add_typer(registration.tokens_app, name="tokens")
app.command("stats")(reports.stats)
app.command("audit")(reports.audit)
