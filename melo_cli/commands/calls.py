"""``melo call USER`` places an audio call; ``melo call answer`` waits for one and answers it (bots, tests).

Audio from --tone HZ, --play FILE, or the microphone (silence, with a notice, when there is none);
received audio to --record FILE (WAV), else the speaker (discarded, with a notice, when there is none).
"""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import JsonOpt

if TYPE_CHECKING:
    from melo_protocol.client.messenger import Messenger

CALL_HELP = """Call USER (audio, end-to-end authenticated), or with USER "answer" wait for a call and answer it.

Exit 0 when the call ended normally (hung up by either side), 1 when it did not connect (rejected,
busy, no answer, offline: said at once when no device of USER is online) or USER does not exist.
--duration S hangs up S seconds after connecting; --timeout S (answer) gives up waiting for a call
after S seconds. --json prints one JSON line per state change.
"""


def call(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(metavar="USER", help='who to call, or "answer" to answer an incoming call')],
    tone: Annotated[float | None, typer.Option("--tone", metavar="HZ", help="send a sine tone")] = None,
    play: Annotated[str | None, typer.Option("--play", metavar="FILE", help="send a wav, ogg or mp3 file")] = None,
    record: Annotated[str | None, typer.Option("--record", metavar="FILE", help="record what you hear (WAV)")] = None,
    duration: Annotated[float | None, typer.Option("--duration", min=0, help="hang up after S seconds")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0, help="answer: wait at most S s")] = None,
    json_flag: JsonOpt = False,
) -> None:
    application = get_app(ctx, json_flag)
    out = application.output
    if tone is not None and play is not None:
        application.fail("give --tone or --play, not both", code="usage", exit_code=2)

    async def go(m: "Messenger") -> int:
        import asyncio
        import json
        import sys

        from melo_protocol.client import events as ev
        from melo_protocol.client.call import Call
        from melo_protocol.client.call_manager import CallManager
        from melo_protocol.client.call_media import ToneTrack, WavRecorder, open_file, open_microphone, open_speaker
        from melo_protocol.client.call_state import CallState
        from melo_protocol.client.errors import CallError

        def report(cl: Call) -> None:
            doc: dict[str, Any] = {
                "call_id": cl.call_id,
                "peer": cl.peer,
                "direction": cl.direction,
                "state": str(cl.state),
                "reason": cl.reason,
            }
            if out.json_mode:
                sys.stdout.write(json.dumps(doc) + "\n")
                sys.stdout.flush()
            else:
                reason = cl.reason or ""
                if reason == "offline":
                    reason = f"offline: no device of {cl.peer} is online to ring"
                out.err.print(f"melo: call {cl.state}{' (' + reason + ')' if reason else ''}", markup=False)

        def source() -> Any:
            if tone is not None:
                return ToneTrack(tone)
            if play is not None:
                return open_file(play)
            track, notice = open_microphone()
            if notice:
                out.warn(notice)
            return track

        def sink() -> Any:
            if record is not None:
                return WavRecorder(record)
            s, notice = open_speaker()
            if notice:
                out.warn(notice)
            return s

        manager = CallManager(m)

        async def pump() -> None:
            async for event in m.events():
                if isinstance(event, ev.CallSignal):
                    await manager.handle(event)

        pump_task = asyncio.create_task(pump())
        try:
            if user == "answer":
                out.err.print("melo: waiting for a call", markup=False)
                async with asyncio.timeout(timeout):
                    the_call = await manager.incoming.get()
                the_call.on_state(report)
                report(the_call)
                await manager.accept(the_call, source=source(), sink=sink())
            else:
                the_call = await manager.start(user, source=source, sink=sink)  # opened if the call goes ahead
                the_call.on_state(report)
                report(the_call)
            state = await the_call.wait_for(CallState.CONNECTED)
            if state is CallState.CONNECTED:
                if duration is not None:
                    with_limit = asyncio.timeout(duration)
                    try:
                        async with with_limit:
                            await the_call.wait_for(CallState.ENDED)
                    except TimeoutError:
                        await manager.hang_up(the_call)
                else:
                    await the_call.wait_for(CallState.ENDED)
            return 0 if the_call.connected_at is not None else 1
        except TimeoutError:
            application.fail("no call came", code="timeout", exit_code=1)
        except CallError as exc:
            application.fail(exc.message, code="call_failed", exit_code=1)
        finally:
            await manager.close()
            pump_task.cancel()

    code = application.run_messenger(go, live=True)
    if code:
        raise typer.Exit(code)


call.__doc__ = CALL_HELP
