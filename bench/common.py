"""Shared bench plumbing: start a melo-server process, register users, read a process's CPU time."""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BENCH_ENV = {
    "MELO_ARGON2_TIME_COST": "2",
    "MELO_ARGON2_MEMORY_KIB": "19456",
    "MELO_RATE_LOGIN_IP": "100000/minute",
    "MELO_RATE_LOGIN_ACCOUNT": "100000/minute",
    "MELO_RATE_REGISTER_IP": "100000/minute",
    "MELO_RATE_USER": "10000000/minute",
    "MELO_RATE_WS_COMMANDS": "1000000/10seconds",
    "MELO_LOG_LEVEL": "warning",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, argv: list[str], env: dict[str, str], port: int, health: str | None) -> None:
        self.argv, self.env, self.port, self.health = argv, env, port, health
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "ServerProcess":
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.health:
                    if httpx.get(f"http://127.0.0.1:{self.port}{self.health}", timeout=1).status_code == 200:
                        return self
                else:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return self
            except (httpx.HTTPError, OSError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}")
            time.sleep(0.05)  # waiting for a process to listen
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cpu_seconds(self) -> float:
        """user+system CPU of the server process and its children (uvicorn workers)."""
        assert self.proc is not None
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total


def melo_server(tmp: str | None = None, **extra: str) -> ServerProcess:
    data = tmp or tempfile.mkdtemp(prefix="melo-bench-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env.update(BENCH_ENV)
    env.update({"MELO_DATA_DIR": data, **extra})
    argv = [sys.executable, "-c", "from server.cli import main; main()", "run", "--port", str(port)]
    return ServerProcess(argv, env, port, "/healthz")


async def register_users(base: str, names: list[str], concurrency: int = 4) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        async def one(name: str) -> dict[str, Any]:
            async with sem:
                r = await http.post("/v1/auth/register", json={"username": name, "password": "bench password 123"})
                r.raise_for_status()
                return r.json()  # type: ignore[no-any-return]

        return list(await asyncio.gather(*(one(n) for n in names)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def table(title: str, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for i, r in enumerate(rows):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
