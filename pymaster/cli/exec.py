"""pyctl exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]: run a command in a container of a
pod, kubectl's way, over ``Client.exec`` (the master proxies it to the pod's agent).

- The command's stdout and stderr go to pyctl's own, as bytes, as they come (with a TTY the
  remote terminal merges them into stdout).
- ``-i`` streams pyctl's stdin to the command (read in a thread of its own, so a terminal that
  stays silent holds nothing); its end of file is the command's (``cat`` ends).
- ``-t`` allocates a terminal for the command, only together with ``-i`` and only when pyctl's
  stdin is a terminal: otherwise kubectl's warning ``Unable to use a TTY - input is not a
  terminal or the right kind of file`` and no TTY (``-t`` without ``-i`` is silently ignored, as
  in kubectl). With a TTY the local terminal is put in raw mode (keys, Ctrl-C included, go to
  the command) and restored on the way out, whatever happens; its size is sent at the start
  and again on every SIGWINCH.
- The exit code is the command's. A non-zero one is also said on stderr, as kubectl does:
  ``command terminated with exit code 3``. An API error prints kubectl's line and exits 1, e.g.
  ``Error from server (NotFound): pods "web" not found``.

``exec_command(args, ctx)`` takes arguments already parsed (``pod``, ``container``,
``remote_command``: the words after ``--``, ``stdin``, ``tty``; not ``command``, which is pyctl's
own subcommand name) and a context with ``client``, ``ns``, ``out_bytes``, ``err`` and ``stdin``
(``pymaster.cli.context.Context``); the binary streams are the text streams' ``buffer`` when they
have one (sys.stdin/sys.stderr), else the streams themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import termios
import threading
import tty as tty_mode
from collections.abc import AsyncIterator, Iterator
from typing import Any, BinaryIO

from pymaster.api import errors
from pymaster.cli import errors as cli_errors

TTY_UNAVAILABLE = "Unable to use a TTY - input is not a terminal or the right kind of file"
READ_SIZE = 32 * 1024  # bytes per read of stdin
EXIT_ERROR = 1


async def exec_command(args: argparse.Namespace, ctx: Any) -> int:
    """Runs ``args.remote_command`` in ``args.pod`` (see the module docstring); returns the exit
    code."""
    stdin, stdout, stderr = _binary(ctx.stdin), _binary(ctx.out_bytes), _binary(ctx.err)
    use_tty = args.tty and args.stdin and _is_terminal(stdin)
    if args.tty and args.stdin and not use_tty:
        ctx.print_error(TTY_UNAVAILABLE)
    terminal = stdin.fileno() if use_tty else None
    failure = ""  # printed once the terminal is restored: raw mode has no carriage returns
    with contextlib.ExitStack() as cleanup:
        size = resizes = None
        if terminal is not None:
            cleanup.enter_context(raw_terminal(terminal))
            size = terminal_size(terminal)
            resizes = cleanup.enter_context(window_changes(terminal))
        session = ctx.client.exec(
            ctx.ns,
            args.pod,
            list(args.remote_command),
            container=args.container,
            stdin=read_chunks(stdin) if args.stdin else None,
            tty=use_tty,
            size=size,
            resizes=resizes,
        )
        try:
            async with session:
                async for stream, data in session:
                    out = stdout if stream == "stdout" else stderr
                    out.write(data)
                    out.flush()
        except errors.ValidationError as exc:
            if exc.field != "container":
                raise
            # kubectl: "error: a container name must be specified for pod web, choose one of: [...]"
            failure = f"error: {exc.detail}"
        except errors.ApiError as exc:
            failure = cli_errors.format_api_error(exc, ctx.client.server, ctx.client.timeout)
    if failure:
        ctx.print_error(failure)
        return EXIT_ERROR
    code = session.exit_code or 0
    if code:
        ctx.print_error(f"command terminated with exit code {code}")
    return code


def _binary(stream: Any) -> BinaryIO:
    """The bytes side of a text stream (sys.stdin.buffer), or a binary stream itself."""
    return getattr(stream, "buffer", stream)


def _is_terminal(stream: BinaryIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.BytesIO and the like have no descriptor
        return False


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal ``fd`` in raw mode for the block, restored afterwards whatever happens."""
    saved = termios.tcgetattr(fd)
    try:
        tty_mode.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int) -> tuple[int, int] | None:
    """The terminal's (width, height); None when it has none."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.columns, size.lines


@contextlib.contextmanager
def window_changes(fd: int) -> Iterator[AsyncIterator[tuple[int, int]]]:
    """The terminal's new size after every SIGWINCH, while the block runs."""
    loop = asyncio.get_running_loop()
    changes: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    def changed() -> None:
        size = terminal_size(fd)
        if size is not None:
            changes.put_nowait(size)

    async def sizes() -> AsyncIterator[tuple[int, int]]:
        while True:
            yield await changes.get()

    loop.add_signal_handler(signal.SIGWINCH, changed)
    try:
        yield sizes()
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


async def read_chunks(stream: BinaryIO, size: int = READ_SIZE) -> AsyncIterator[bytes]:
    """What ``stream`` holds, as it comes, until its end of file.

    The reads block, so they run in a daemon thread of their own (not the loop's executor, which
    ``asyncio.run`` would wait for at exit while a silent terminal holds a read), one chunk ahead
    of the consumer.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue(1)
    stopped = threading.Event()  # the consumer is gone: the reader hands nothing more over
    read = getattr(stream, "read1", stream.read)  # read1: what is there, not a full buffer

    def hand_over(data: bytes | BaseException) -> bool:
        put = chunks.put(data)
        try:
            future = asyncio.run_coroutine_threadsafe(put, loop)
        except RuntimeError:  # the loop is closed
            put.close()
            return False
        while not stopped.is_set():
            try:
                future.result(timeout=0.2)
                return True
            except TimeoutError:
                continue
            except Exception:  # cancelled with the loop
                return False
        future.cancel()
        return False

    def reader() -> None:
        while not stopped.is_set():
            try:
                data: bytes | BaseException = read(size)
            except Exception as err:  # a stdin that cannot be read ends the input; say why
                data = err
            if not hand_over(data) or not isinstance(data, bytes) or not data:
                return

    threading.Thread(target=reader, name="pyctl-exec-stdin", daemon=True).start()
    try:
        while True:
            data = await chunks.get()
            if isinstance(data, BaseException):
                raise data
            if not data:
                return
            yield data
    finally:
        stopped.set()
