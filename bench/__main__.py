"""`make bench`: every benchmark, each printing its figures beside a peer or limit from the same run."""

from bench import fanout, send_latency


def main() -> None:
    send_latency.main()
    fanout.main()


if __name__ == "__main__":
    main()
