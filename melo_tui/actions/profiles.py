"""Switching profile: another account of this home, in the same app."""

from melo_tui.actions.base import AppBase
from melo_tui.screens.login import LoginScreen
from melo_tui.workers import ui_work


class ProfileActions(AppBase):
    def action_switch_profile(self) -> None:
        current = self.backend.store.profile
        others = [p for p in self.backend.store.profiles() if p != current]
        label = f"Profile (now {current}; others: {', '.join(others) or 'none yet'}; a new name starts one)"
        self._prompt("Switch profile", [("profile", label)], lambda v: self.switch_profile(v["profile"].strip()))

    @ui_work(exclusive=True, group="profile")
    async def switch_profile(self, profile: str) -> None:
        """Log this profile's connection out of the app (it stays logged in) and open ``profile``."""
        if not profile or profile == self.backend.store.profile:
            return
        try:
            new = self.backends(profile)
        except ValueError as exc:  # not a profile name
            self.notify(f"Cannot switch: {exc}", severity="error")
            return
        self.workers.cancel_group(self, "events")
        if self._state_poll is not None:
            self._state_poll.stop()
            self._state_poll = None
        await self._close_calls()
        old = self.backend
        await old.close()
        self.backend = new
        self.connection_state = "offline"
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        self.notify(f"Profile {profile}.")
        if self.backend.has_stored_login():
            self.auto_login()
        else:
            self.push_screen(LoginScreen(new.store.stored_server() or new.server_url or old.default_server))
