"""The master's log lines (``key=value`` after a timestamp, level and logger), configured the same
way by ``pymaster`` and by the processes it starts (the lease lane's)."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "time=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def configure_logging(level: str | int) -> None:
    """Logs at ``level`` (a name such as "info", or a number) to stderr."""
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, format=LOG_FORMAT,
                        stream=sys.stderr)
