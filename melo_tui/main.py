"""Entry point of ``melo-tui``: pick the profile and home, build the backend, run the app."""

import argparse
import os
import sys

from melo_protocol.client import CredentialStore


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="melo-tui", description="Melo terminal chat client")
    parser.add_argument("--profile", default=os.environ.get("MELO_PROFILE", "default"))
    parser.add_argument("--server", default=os.environ.get("MELO_SERVER"), help="server URL (first run)")
    parser.add_argument(
        "--notify",
        choices=["bell", "desktop"],
        default=os.environ.get("MELO_TUI_NOTIFY", "bell"),
        help="new messages ring the terminal bell (default), or also show a desktop notification "
        "(notify-send; chat and sender only, never message text)",
    )
    args = parser.parse_args(argv)

    from melo_tui.app import MeloApp
    from melo_tui.backend import Backend
    from melo_tui.media import desktop_notifier

    warnings: list[str] = []  # stderr would scribble over the screen: the app shows them as notifications

    def backends(profile: str) -> Backend:
        """A profile's backend; --server is for the profile the app starts with (its first run)."""
        store = CredentialStore(profile=profile, warn=warnings.append)
        return Backend(store, server_url=args.server if profile == args.profile else None, warnings=warnings)

    notifier = desktop_notifier() if args.notify == "desktop" else None
    if args.notify == "desktop" and notifier is None:
        warnings.append("Desktop notifications need notify-send (libnotify-bin); the terminal bell rings instead.")
    try:
        app = MeloApp(backends, args.profile, desktop_notify=notifier)
    except ValueError as exc:  # not a profile name
        print(f"melo-tui: {exc}", file=sys.stderr)
        sys.exit(2)
    app.run()
    sys.exit(app.return_code or 0)
