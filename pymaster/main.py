"""``pymaster``: the master daemon's command line.

    pymaster --data-dir ./pykube-data --listen 127.0.0.1:6443 --metrics-addr 127.0.0.1:8080 \\
             --node-monitor-grace-period 40 --log-level info

Logs are key=value lines on stderr. SIGTERM or SIGINT stops it gracefully: health turns
NOT_SERVING, in-flight calls get a short grace, then the store is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import prometheus_client

from pymaster.server.app import MasterApp

log = logging.getLogger("pymaster")

LOG_FORMAT = "time=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value!r}")
    return seconds


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymaster", description="The pykube master: API server, store and scheduler."
    )
    parser.add_argument(
        "--data-dir", default="./pykube-data", help="where the SQLite store lives (default: %(default)s)"
    )
    parser.add_argument(
        "--listen",
        type=_address,
        default="127.0.0.1:6443",
        help="gRPC address HOST:PORT (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-addr",
        type=_address,
        default="127.0.0.1:8080",
        help="HOST:PORT serving /metrics and /healthz (default: %(default)s)",
    )
    parser.add_argument(
        "--node-monitor-grace-period",
        type=_positive_seconds,
        default=40.0,
        help="seconds without a lease renewal before a node turns Ready=Unknown (default: 40)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    return parser


async def _run(args: argparse.Namespace) -> None:
    app = MasterApp(args.data_dir, args.listen, args.metrics_addr, args.node_monitor_grace_period)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        await stop.wait()
        log.info("pymaster stopping on signal")
    finally:
        await app.stop()


def main(argv: list[str] | None = None) -> int:
    """Runs the master until SIGTERM/SIGINT. Returns the exit status."""
    args = build_parser().parse_args(argv)
    # Kubernetes components export no *_created series; dashboards written for them expect none.
    prometheus_client.disable_created_metrics()
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    try:
        asyncio.run(_run(args))
    except OSError as err:
        log.error("pymaster failed to start error=%r", str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
