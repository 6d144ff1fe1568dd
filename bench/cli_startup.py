"""`melo --help`, `melo whoami` and `melo send` start-up, beside `python -c pass` and a bare Typer hello-world.

Each command runs N times as a fresh process; the table shows the median wall time and its ratio to
`python -c pass` (issue 5 aims at ≤ 3×) and to the Typer hello-world (DESIGN.md aims at ≤ 1.3×).
`melo whoami` runs logged out against an empty home (exit 4): it still pays every import a command does.
`melo send @bob …` is a whole repeated send to a local server (E2E DM, logged in, after a first send):
start-up, the encrypted store, one request (the aim: ≤ 250 ms).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(os.environ.get("MELO_BENCH_CLI_RUNS", "15"))
TYPER_HELLO = '''import typer

app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    print(f"hello {name}")


app()
'''


def _melo() -> list[str]:
    script = Path(sys.executable).with_name("melo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "melo_cli"]


def median_ms(argv: list[str], env: dict[str, str], runs: int = RUNS) -> float:
    subprocess.run(argv, env=env, capture_output=True, check=False)  # warm the page cache once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _send_case(tmp: str, env: dict[str, str], runs: int) -> tuple[str, float]:
    """A repeated `melo send` to a DM on a local server (bench.common.melo_server)."""
    from bench.common import melo_server

    with melo_server(str(Path(tmp) / "server")) as server:
        env = {**env, "MELO_SERVER": f"http://127.0.0.1:{server.port}"}
        for name in ("alice", "bob"):
            home = {**env, "MELO_HOME": str(Path(tmp) / name)}
            subprocess.run([*_melo(), "register", name, "--password-stdin"], env=home, input=b"bench password 123\n",
                           capture_output=True, check=True)
        env["MELO_HOME"] = str(Path(tmp) / "alice")
        argv = [*_melo(), "send", "@bob", "a benchmark message"]
        subprocess.run(argv, env=env, capture_output=True, check=True)  # the first send looks everything up
        return "melo send @bob (repeated)", median_ms(argv, env, runs)


def measure(runs: int = RUNS) -> list[tuple[str, float]]:
    with tempfile.TemporaryDirectory(prefix="melo-bench-cli-") as tmp:
        hello = Path(tmp) / "typer_hello.py"
        hello.write_text(TYPER_HELLO)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
        env.update({"MELO_HOME": str(Path(tmp) / "home"), "MELO_KEYRING": "file", "NO_COLOR": "1"})
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("typer hello-world", [sys.executable, str(hello)]),
            ("typer hello-world --help", [sys.executable, str(hello), "--help"]),
            ("melo --help", [*_melo(), "--help"]),
            ("melo whoami (logged out)", [*_melo(), "whoami"]),
        ]
        return [(name, median_ms(argv, env, runs)) for name, argv in cases] + [_send_case(tmp, env, runs)]


def main() -> None:
    results = measure()
    base = results[0][1]
    typer_hello = results[1][1]
    print(f"\nCLI start-up, median of {RUNS} runs (wall time, fresh process each)")
    print(f"{'command':<28} {'median ms':>10} {'× python -c pass':>17} {'× typer hello':>14}")
    for name, ms in results:
        print(f"{name:<28} {ms:>10.1f} {ms / base:>17.2f} {ms / typer_hello:>14.2f}")
    print("aims: melo ≤ 1.3× typer hello (DESIGN.md); ≤ 3× python -c pass (issue 5, not reachable with Typer); "
          "melo send ≤ 250 ms (issue 12)")


if __name__ == "__main__":
    main()
