"""Times as kubectl prints them: ages ("45s", "3d4h", kubectl's ``HumanDuration``) and describe's
RFC 1123 dates."""

from __future__ import annotations

import datetime

from google.protobuf.timestamp_pb2 import Timestamp

UNKNOWN = "<unknown>"


def human_duration(seconds: float) -> str:
    """kubectl's HumanDuration: "45s", "3m2s", "15m", "5h30m", "20h", "3d4h", "45d", "2y30d".

    A duration down to 2 seconds in the future still reads "0s" (clock skew between machines);
    further in the future is "<invalid>".
    """
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def timestamp_seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def age(ts: Timestamp, now: float, *, present: bool = True) -> str:
    """The time since ``ts`` as kubectl prints it, "<unknown>" when the timestamp is not set.

    Args:
        ts: the timestamp.
        now: the current time in epoch seconds.
        present: whether the timestamp field is set (``msg.HasField(...)``).
    """
    if not present or (ts.seconds == 0 and ts.nanos == 0):
        return UNKNOWN
    return human_duration(now - timestamp_seconds(ts))


def format_time(ts: Timestamp, tz: datetime.tzinfo | None = None) -> str:
    """RFC 1123 with numeric zone, as kubectl describe prints times: "Tue, 25 Nov 2026 17:04:32 +0000".

    Args:
        ts: the timestamp.
        tz: the zone to show it in; None for the local zone (kubectl's choice).
    """
    moment = datetime.datetime.fromtimestamp(ts.seconds, tz=datetime.UTC)
    moment = moment.astimezone(tz) if tz is not None else moment.astimezone()
    return moment.strftime("%a, %d %b %Y %H:%M:%S %z")
