"""`make bench`: every benchmark, each printing its figures beside a peer or limit from the same run.

`python -m bench NAME…` runs only those (send_latency, fanout, crypto, cli_startup, tui, calls, frames).
"""

import importlib
import sys
import traceback

ALL = ["send_latency", "fanout", "crypto", "cli_startup", "tui", "calls", "frames"]


def main(names: list[str]) -> int:
    failed = 0
    for name in names or ALL:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"\n{name}: not available in this checkout")
            continue
        try:
            module.main()
        except Exception:
            failed += 1
            print(f"\n{name}: failed")
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
