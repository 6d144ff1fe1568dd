"""Calls in the app: placing and answering them, the incoming-call modal, and the call bar kept in step."""

from aiortc.mediastreams import MediaStreamTrack
from textual import on

from melo_protocol.client.call import Call
from melo_protocol.client.call_media import AudioSink
from melo_protocol.client.call_state import CallState
from melo_tui.actions.base import AppBase
from melo_tui.sanitize import clean_line
from melo_tui.screens.incoming_call import IncomingCallScreen
from melo_tui.widgets.call_bar import CallBar
from melo_tui.workers import ui_work

ENDED_BAR_S = 5.0  # an ended call stays on the bar this long, with its reason


class CallActions(AppBase):
    def _media(self) -> tuple[MediaStreamTrack, AudioSink]:
        source, sink, notices = self.call_media()
        for notice in notices:
            self.notify(clean_line(notice, 200), severity="warning")
        return source, sink

    def _call_bar(self) -> CallBar | None:
        screen = self.chat_screen
        if screen is None or not screen.is_mounted:
            return None
        return screen.query_one(CallBar)

    def _track(self, call: Call, *, focus: bool = False) -> None:
        """Show ``call`` on the call bar and keep it up to date."""
        bar = self._call_bar()
        if bar is not None:
            bar.show_call(call)
            if focus:
                bar.focus()
        call.on_state(self._call_changed)

    def _call_changed(self, call: Call) -> None:
        bar = self._call_bar()
        if bar is not None and bar.call is call:
            bar.show()
        if call.state is CallState.ENDED:
            modal = self._incoming.pop(call.call_id, None)
            if modal is not None and self.screen is modal:
                modal.dismiss(None)  # the caller gave up before we answered
            self.set_timer(ENDED_BAR_S, lambda: self._hide_ended(call))

    def _hide_ended(self, call: Call) -> None:
        bar = self._call_bar()
        if bar is not None and bar.call is call:
            bar.show_call(None)

    def _incoming_call(self, call: Call) -> None:
        self._track(call)
        modal = IncomingCallScreen(call.peer)
        self._incoming[call.call_id] = modal

        def answered(accept: bool | None) -> None:
            self._incoming.pop(call.call_id, None)
            if accept is not None and call.state is not CallState.ENDED:
                self.answer_call(call, accept)

        self.push_screen(modal, answered)

    @ui_work(group="calls", what="Answering the call")
    async def answer_call(self, call: Call, accept: bool) -> None:
        assert self.calls is not None
        if not accept:
            await self.calls.reject(call)
            return
        bar = self._call_bar()
        if bar is not None:
            bar.focus()
        source, sink = self._media()
        try:
            await self.calls.accept(call, source=source, sink=sink)
        finally:  # what the media said (no microphone, say) matters whether or not the call went through
            for notice in call.notices:
                self.notify(clean_line(notice, 200), severity="warning")

    @ui_work(group="calls", what="Call")
    async def start_call(self, username: str, chat_id: int | None = None) -> None:
        if self.calls is None:
            self.notify("Calls need a live connection.", severity="error")
            return
        if self.calls.active is not None:
            self.notify("Another call is active.", severity="warning")
            return
        source, sink = self._media()
        call = await self.calls.start(username, source=source, sink=sink, chat_id=chat_id)
        self._track(call, focus=True)
        for notice in call.notices:
            self.notify(clean_line(notice, 200), severity="warning")

    @on(CallBar.MuteWanted)
    async def _mute(self, event: CallBar.MuteWanted) -> None:
        bar = self._call_bar()
        if self.calls is not None and bar is not None and isinstance(bar.call, Call):
            await self.calls.mute(bar.call, event.on)
            bar.show()

    @on(CallBar.HangUpWanted)
    def _hang_up_wanted(self, event: CallBar.HangUpWanted) -> None:
        self.action_hang_up()

    def action_hang_up(self) -> None:
        if self.calls is not None and self.calls.active is not None:
            self.hang_up(self.calls.active)

    @ui_work(group="calls")
    async def hang_up(self, call: Call) -> None:
        assert self.calls is not None
        await self.calls.hang_up(call)

    async def _close_calls(self) -> None:
        if self.calls is not None:
            calls, self.calls = self.calls, None
            await calls.close()
