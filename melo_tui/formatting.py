"""How times and days appear on screen; injected so snapshot tests can pin them."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


def _local(dt: datetime) -> datetime:
    return dt.astimezone() if dt.tzinfo else dt


def _time(dt: datetime) -> str:
    return _local(dt).strftime("%H:%M")


def _day(dt: datetime) -> str:
    return _local(dt).strftime("%A %d %B %Y")


def _day_key(dt: datetime) -> str:
    return _local(dt).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Formatting:
    time: Callable[[datetime], str] = _time
    day: Callable[[datetime], str] = _day
    day_key: Callable[[datetime], str] = _day_key


FIXED = Formatting(time=lambda dt: "12:00", day=lambda dt: "Monday 01 January 2024", day_key=lambda dt: "2024-01-01")
