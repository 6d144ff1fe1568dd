"""`python -m bench NAME` runs that benchmark: the names on the command line are not its arguments."""

import pytest

import bench.__main__ as bench_main
import bench.calls


def test_bench_calls_by_name_runs_a_call(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # `python -m bench calls` once read "calls" from sys.argv as the call's length and crashed
    monkeypatch.setattr("sys.argv", ["bench", "calls"])
    monkeypatch.setattr(bench.calls, "DEFAULT_SECONDS", 2.0)
    assert bench_main.main(["calls"]) == 0
    out = capsys.readouterr().out
    assert "calls: one Opus audio call" in out
    assert "mouth-to-ear, median (ms)" in out
    assert "failed" not in out


def test_bench_frames_measures_json_and_pydantic(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import bench.frames

    monkeypatch.setattr(bench.frames, "N", 50)
    assert bench_main.main(["frames"]) == 0
    out = capsys.readouterr().out
    assert "json (stdlib), untyped" in out and "pydantic v2 models" in out
    assert "failed" not in out
