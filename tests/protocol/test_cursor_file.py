"""The SDK's saved resume cursor: read back as saved, and never sent when the server would refuse it."""

from pathlib import Path

import pytest

from melo_protocol.client.stream import CursorFile


def test_a_saved_cursor_reads_back(tmp_path: Path) -> None:
    store = CursorFile(tmp_path / "cursor.json")
    assert store.load() is None
    store.save({"1": 0, "42": 7, str(2**63 - 1): 2**63 - 1})
    assert store.load() == {"1": 0, "42": 7, str(2**63 - 1): 2**63 - 1}


@pytest.mark.parametrize("content", [
    "{not json", "[1, 2]", "null", '{"1": "many"}', '{"1": null}', '{"abc": 1}', '{"0": 1}', '{"-1": 1}',
    '{"1": -1}', f'{{"{2**63}": 1}}', f'{{"1": {2**63}}}', f'{{"{2**70}": 1}}',
])
def test_a_cursor_the_server_would_refuse_is_not_used(tmp_path: Path, content: str) -> None:
    """The server refuses an auth frame over one bad cursor entry (4001): the client resumes from now instead."""
    path = tmp_path / "cursor.json"
    path.write_text(content)
    assert CursorFile(path).load() is None
