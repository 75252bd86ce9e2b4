"""pyctl: kubectl's habits over the pykube master (console script ``pyctl``).

This module owns the command line: the argparse tree, kubectl-style flag handling and the
process's exit codes. The commands themselves live in ``pymaster.cli.get`` (get, describe),
``pymaster.cli.create_config`` (create configmap, create secret ...), ``pymaster.cli.metadata_edit``
(label, annotate), ``pymaster.cli.patch`` and ``pymaster.cli.commands`` (the others); the kinds
they work on in ``pymaster.cli.kinds``.

kubectl habits kept on purpose:

- global flags (``--config``, ``-s/--server``, ``--request-timeout``, ``-n/--namespace``) go
  before or after the subcommand; ``--config`` (kubectl's ``--kubeconfig``, also accepted) is the
  client config file with the master's address, CA and the client's certificate: it defaults to
  $PYKUBE_CONFIG, then ~/.pykube/config (which ``make up`` writes); ``--server`` defaults to
  $PYKUBE_SERVER, then the config's server;
- resource types take kubectl's names and short forms of every kind in ``pymaster.cli.kinds``
  (``pods``, ``pod``, ``po``, ``nodes``, ``no``, ``events``, ``ev``, ``configmaps``, ``cm`` ...) and
  ``TYPE/NAME`` arguments (``get pod/web``); ``get`` and ``describe`` take several kinds at once
  (``get cm,secrets``, ``get pod/web node/n1``);
- sub-commands of ``create`` (``create configmap``, ``create secret generic``) may follow flags
  (``pyctl -n team create configmap app ...``), as with cobra;
- boolean flags also take ``--flag=true|false`` (``delete --wait=false``);
- usage errors print ``error: <message>`` and exit 1, as kubectl does (not argparse's 2);
- an API error prints one line (``Error from server (NotFound): pods "web" not found``,
  ``Error from server (Forbidden): ...``, ``error: You must be logged in to the server
  (Unauthorized): ...``, ``error: TLS handshake with the pykube master at ... failed``), and so
  does a missing or unusable config; both exit 1; Ctrl-C exits 130 quietly, or 0 while watching (``get -w``).
"""

from __future__ import annotations

import os

# gRPC's C core logs a failed TLS handshake on stderr at INFO; pyctl says it in its one error line.
# Read when grpc is first imported, so set before that (GRPC_VERBOSITY=debug still wins).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from pymaster.api import errors
from pymaster.cli import (
    commands,
    create_config,
    drain,
    expose,
    get,
    kinds,
    metadata_edit,
    printers,
    rollout,
    scale,
    set_image,
    taint,
)
from pymaster.cli import errors as cli_errors
from pymaster.cli import patch as patch_command
from pymaster.cli.context import CommandError, Context
from pymaster.cli.exec import exec_command
from pymaster.cli.targets import UsageError, cascade_policy, resolve_groups, resolve_targets, resource_of
from pymaster.client import Client, InvalidConfigError, MissingConfigError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

OUTPUT_FORMATS = ("wide", "yaml", "json", "name")
EXEC_WITHOUT_DASHES = "exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead"
GLOBAL_VALUE_FLAGS = ("--config", "--kubeconfig", "-s", "--server", "--request-timeout", "-n", "--namespace")
GLOBAL_DESTS = ("config", "server", "request_timeout", "namespace")
# Boolean flags that also take "=true"/"=false"; the value says whether the flag has a --no- form
# (a switch defaulting to true, or one defaulting to true for some command: rollout status --watch).
BOOL_FLAGS = {
    "--watch": True,
    "--all-namespaces": False,
    "--force": False,
    "--wait": True,
    "--follow": False,
    "--timestamps": False,
    "--show-labels": False,
    "--no-headers": False,
    "--all": False,
    "--ignore-not-found": False,
    "--stdin": False,
    "--tty": False,
    "--overwrite": False,
    "--ignore-daemonsets": False,
    "--delete-emptydir-data": False,
}
# The words of create's sub-commands (kubectl's names and aliases).
CREATE_SUBCOMMANDS = {"configmap": "create configmap", "cm": "create configmap", "secret": "create secret"}
SECRET_SUBCOMMANDS = ("generic", "tls", "docker-registry")
EDITED = {"label": "label", "annotate": "annotation"}  # what label and annotate change
# Go's strconv.ParseBool, which kubectl's flags use.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting 2.

    The top-level parser also keeps its subcommands' parsers in ``commands``.
    """

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        raise UsageError(message, command)


def parse_duration(text: str) -> float:
    """Seconds of a ``--request-timeout``/``--timeout`` value: "5", "2.5", "500ms", "30s", "1m", "1h".

    Raises:
        argparse.ArgumentTypeError: not a non-negative duration.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use seconds (5, 2.5) or 500ms, 30s, 1m")
    return float(match["number"]) * _UNIT_SECONDS[match["unit"]]


def normalize_bool_flags(argv: Sequence[str]) -> list[str]:
    """Rewrites kubectl's ``--flag=true|false`` for the boolean flags argparse knows as switches.

    ``--wait=false`` becomes ``--no-wait``, ``--force=true`` becomes ``--force``, and
    ``--force=false`` (the default) is dropped. Arguments after ``--`` are left alone.

    Raises:
        UsageError: a value that is not a boolean.
    """
    result: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            result.extend(argv[i:])
            break
        flag, sep, value = arg.partition("=")
        if not sep or flag not in BOOL_FLAGS:
            result.append(arg)
            continue
        if value in _TRUE:
            result.append(flag)
        elif value not in _FALSE:
            raise UsageError(f'invalid argument "{value}" for "{flag}" flag: must be true or false')
        elif BOOL_FLAGS[flag]:
            result.append("--no-" + flag[2:])
    return result


def _global_flags(suppress: bool) -> argparse.ArgumentParser:
    """The flags every command takes. On subcommands their default is SUPPRESS, so a value
    given before the subcommand is not reset by the subcommand's default."""
    parent = argparse.ArgumentParser(add_help=False)
    default = {"default": argparse.SUPPRESS} if suppress else {}
    parent.add_argument(
        "--config", "--kubeconfig", dest="config", metavar="PATH", **default,
        help="client config: the master's address, CA and this client's certificate "
        "(default: $PYKUBE_CONFIG, else ~/.pykube/config, written by `make up`; a master writes "
        "its admin config to <data-dir>/admin.yaml)",
    )
    parent.add_argument(
        "-s", "--server", metavar="HOST:PORT", **default,
        help="the pykube master (default: $PYKUBE_SERVER, else the config's server)",
    )
    parent.add_argument(
        "--request-timeout", metavar="DURATION", type=parse_duration, **default,
        help="deadline of each request in seconds (or 500ms, 30s, 1m); 0 for none (default 10)",
    )
    parent.add_argument(
        "-n", "--namespace", metavar="NS", **default,
        help="the namespace (default: default)",
    )
    return parent


_RESOURCE_HELP = f"TYPE [NAME...] or TYPE/NAME...; TYPE is one of {kinds.listing()}"


def _selector_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--selector", default="", metavar="SELECTOR",
                        help="label selector, e.g. app=web,tier!=db or 'env in (a,b)'")


def _filename_flag(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("-f", "--filename", action="append", default=[], required=required, metavar="FILE",
                        help="manifest file, directory of manifests, or - for stdin (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    """The whole pyctl command line."""
    parser = _Parser(
        prog="pyctl", parents=[_global_flags(suppress=False)],
        description="Control a pykube cluster, the kubectl way.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = [_global_flags(suppress=True)]

    get_cmd = sub.add_parser("get", parents=common, help="list objects of a kind, or show some by name")
    get_cmd.add_argument("targets", nargs="*", metavar="RESOURCE", help=_RESOURCE_HELP)
    get_cmd.add_argument("-A", "--all-namespaces", action="store_true", help="objects of every namespace")
    _selector_flags(get_cmd)
    get_cmd.add_argument("--field-selector", default="", metavar="SELECTOR",
                         help="e.g. spec.nodeName=n1,status.phase=Running or involvedObject.name=web")
    get_cmd.add_argument("-o", "--output", choices=OUTPUT_FORMATS, help="wide, yaml, json or name")
    get_cmd.add_argument("-w", "--watch", action=argparse.BooleanOptionalAction, default=False,
                         help="after listing, print every change")
    get_cmd.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    get_cmd.add_argument("--no-headers", action="store_true", help="print tables without a header")
    get_cmd.set_defaults(handler=get.get)

    describe = sub.add_parser("describe", parents=common, help="show objects in detail, with their events")
    describe.add_argument("targets", nargs="+", metavar="RESOURCE", help=_RESOURCE_HELP)
    describe.add_argument("-A", "--all-namespaces", action="store_true", help="objects of every namespace")
    _selector_flags(describe)
    describe.set_defaults(handler=get.describe)

    apply = sub.add_parser("apply", parents=common, help="create or update objects from manifests")
    _filename_flag(apply, required=True)
    apply.set_defaults(handler=commands.apply)

    create = sub.add_parser(
        "create", parents=common, help="create objects from manifests, or a configmap or secret",
        usage="pyctl create -f FILE | configmap NAME ... | secret generic|tls|docker-registry NAME ...",
    )
    _filename_flag(create, required=True)
    create.set_defaults(handler=commands.create)

    delete = sub.add_parser("delete", parents=common, help="delete objects by name, label or file")
    delete.add_argument("targets", nargs="*", metavar="RESOURCE", help=_RESOURCE_HELP)
    _filename_flag(delete, required=False)
    _selector_flags(delete)
    delete.add_argument("--all", action="store_true", help="every object of the kind in the namespace")
    delete.add_argument("--grace-period", type=int, default=-1, metavar="SECONDS",
                        help="seconds the pod gets to stop; -1 (default) uses the pod's own")
    delete.add_argument("--force", action="store_true",
                        help="with --grace-period 0 (the default with --force): remove at once")
    delete.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                        help="wait until the objects are gone (default; --wait=false to return at once)")
    delete.add_argument("--ignore-not-found", action="store_true",
                        help="a missing object is not an error")
    delete.add_argument("--timeout", type=parse_duration, default=0.0, metavar="DURATION",
                        help="how long --wait waits; 0 (default) for as long as it takes")
    delete.add_argument("--cascade", nargs="?", const="background", default="background",
                        metavar="background|foreground|orphan",
                        help="what happens to the dependents (a deployment's replicasets, their pods): "
                        "deleted in the background (default), before the owner (foreground), or kept "
                        "(orphan)")
    delete.set_defaults(handler=commands.delete)

    logs = sub.add_parser("logs", parents=common, help="print a container's logs")
    logs.add_argument("pod", metavar="POD",
                      help="the pod (or pod/NAME, or TYPE/NAME of a workload: its first pod)")
    logs.add_argument("container_arg", nargs="?", default="", metavar="CONTAINER", help="the container")
    logs.add_argument("-c", "--container", default="", help="the container (needed when several)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep streaming new output")
    logs.add_argument("--tail", type=int, default=-1, metavar="N", help="only the last N lines (-1: all)")
    logs.add_argument("--timestamps", action="store_true", help="prefix each line with its RFC 3339 time")
    logs.set_defaults(handler=commands.logs)

    exe = sub.add_parser("exec", parents=common, help="run a command in a container of a pod",
                         usage="pyctl exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]")
    exe.add_argument("pod", metavar="POD", help="the pod (or pod/NAME)")
    exe.add_argument("-c", "--container", default="", help="the container (needed when several)")
    exe.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    exe.add_argument("-t", "--tty", action="store_true", help="stdin is a TTY (with -i)")
    exe.set_defaults(handler=exec_command)

    for name, verb in (("cordon", "mark nodes unschedulable"), ("uncordon", "mark nodes schedulable")):
        node_cmd = sub.add_parser(name, parents=common, help=verb)
        node_cmd.add_argument("nodes", nargs="*", metavar="NODE", help="node names (or node/NAME)")
        _selector_flags(node_cmd)
        node_cmd.set_defaults(handler=commands.cordon if name == "cordon" else commands.uncordon)

    taint.add_parser(sub, common)
    scale.add_parser(sub, common)
    expose.add_parser(sub, common)
    rollout.add_parser(sub, common, parse_duration)
    set_image.add_parser(sub, common)
    drain.add_parser(sub, common, parse_duration)

    for name, handler, what in (("label", metadata_edit.label, "labels"),
                                ("annotate", metadata_edit.annotate, "annotations")):
        usage = f"pyctl {name} TYPE NAME...|TYPE/NAME... KEY=VALUE... KEY-... [--overwrite]"
        edit = sub.add_parser(name, parents=common, help=f"set or remove {what} of objects", usage=usage)
        edit.add_argument("words", nargs="+", metavar="WORD", help=f"{_RESOURCE_HELP}; then KEY=VALUE sets, "
                          "KEY- removes")
        edit.add_argument("--overwrite", action="store_true", help=f"change {what} that already have a value")
        _selector_flags(edit)
        edit.add_argument("--all", action="store_true", help="every object of the kind in the namespace")
        edit.set_defaults(handler=handler)

    patch = sub.add_parser("patch", parents=common, help="change objects with a JSON merge patch (RFC 7386)")
    patch.add_argument("targets", nargs="+", metavar="RESOURCE", help=_RESOURCE_HELP)
    patch.add_argument("-p", "--patch", default="", metavar="PATCH", help="the patch, JSON or YAML")
    patch.add_argument("--type", default="strategic", metavar="merge",
                       help="merge (strategic, the default, is taken when the patch has no lists)")
    patch.add_argument("--subresource", default="", metavar="status",
                       help="status: patch the status (of a pod or node)")
    patch.set_defaults(handler=patch_command.patch)

    version = sub.add_parser("version", parents=common, help="print the client version")
    version.set_defaults(handler=commands.version)
    parser.commands = dict(sub.choices)

    def make(words: str, description: str) -> argparse.ArgumentParser:
        return _Parser(prog=f"pyctl {words}", parents=common, description=description)

    parser.commands.update(create_config.build_parsers(make))
    return parser


def _pod_name(word: str, command: str) -> str:
    """A pod argument of logs: "web" or "pod/web"."""
    return _name_of(word, command, "pods")


def _node_name(word: str, command: str) -> str:
    """A node argument of cordon/uncordon: "n1" or "node/n1"."""
    return _name_of(word, command, "nodes")


def _name_of(word: str, command: str, resource: str) -> str:
    if "/" not in word:
        return word
    kind, _, name = word.partition("/")
    if resource_of(kind, command) != resource or not name:
        raise UsageError(f"{command} works on {resource} only: {word}", command)
    return name


def _check(args: argparse.Namespace) -> None:
    """kubectl's cross-flag checks, and the resource arguments resolved into args.resource and
    args.names."""
    command = args.command
    if command in ("get", "describe"):
        args.groups = resolve_groups(args.targets, command)
        args.resource, args.names = args.groups[0] if len(args.groups) == 1 else ("", [])
        named = any(names for _, names in args.groups)
        if named and args.all_namespaces:
            raise UsageError("a resource cannot be retrieved by name across all namespaces", command)
        if named and args.selector:
            raise UsageError("name cannot be provided when a selector is specified", command)
    if command == "get":
        if named and args.field_selector:
            raise UsageError("name cannot be provided when a selector is specified", command)
        if args.watch and len(args.groups) > 1:
            raise UsageError("watch is only supported on individual resources and resource collections, "
                             f"but {len(args.groups)} resource types were given", command)
        if args.watch and len(args.names) > 1:
            raise UsageError("watch is only supported on one name or a whole collection", command)
    elif command in ("label", "annotate", "patch"):
        _check_edit(args)
    elif command == "delete":
        _check_delete(args)
    elif command == "logs":
        args.owner = _logs_owner(args.pod, command)
        args.pod = args.pod if args.owner else _pod_name(args.pod, command)
        if args.container and args.container_arg and args.container != args.container_arg:
            raise UsageError("only one of -c or an inline container name is allowed", command)
        args.container = args.container or args.container_arg
        if args.tail < -1:
            raise UsageError("--tail must be -1 (all) or a number of lines", command)
    elif command == "exec":
        args.pod = _pod_name(args.pod, command)
        if not args.remote_command:
            raise UsageError("you must specify at least one command for the container", command)
    elif command == "scale":
        scale.check(args)
    elif command == "expose":
        expose.check(args)
    elif command == "rollout":
        rollout.check(args)
    elif command == "set":
        set_image.check(args)
    elif command in ("cordon", "uncordon"):
        args.nodes = [_node_name(word, command) for word in args.nodes]
        if args.nodes and args.selector:
            raise UsageError("name cannot be provided when a selector is specified", command)
        if not args.nodes and not args.selector:
            raise UsageError("resource(s) were provided, but no name was specified", command)
    elif command == "drain":
        args.node = _node_name(args.node, command)
        if args.grace_period < -1:
            raise UsageError("--grace-period must be -1 (the pod's own) or a number of seconds", command)


def _logs_owner(word: str, command: str) -> str:
    """logs TYPE/NAME of a kind with a pod template (job/pi, deploy/web): its plural type, else ""."""
    if "/" not in word:
        return ""
    resource = resource_of(word.partition("/")[0], command)
    if kinds.of(resource).template is None:
        return ""
    return resource


def _check_edit(args: argparse.Namespace) -> None:
    """label, annotate and patch: the objects (and label's and annotate's changes)."""
    command = args.command
    words = args.targets if command == "patch" else args.words
    if command == "patch":
        args.pairs = []
    else:
        try:
            words, args.pairs = metadata_edit.split_pairs(words, EDITED[command])
        except CommandError as exc:
            raise UsageError(str(exc), command) from None
    if not words:
        raise UsageError("one or more resources must be specified as <resource> <name> or <resource>/<name>",
                         command)
    args.resource, args.names = resolve_targets(words, command)
    selected = bool(getattr(args, "selector", "")) or getattr(args, "all", False)
    if args.names and selected:
        raise UsageError("names cannot be combined with -l or --all", command)
    if not args.names and not selected:
        raise UsageError("resource(s) were provided, but no name was specified", command)
    if command == "patch" and args.subresource not in ("", "status"):
        raise UsageError(f'invalid subresource value: "{args.subresource}"; supported: status', command)


def _check_delete(args: argparse.Namespace) -> None:
    command = "delete"
    if args.filename:
        if args.targets:
            raise UsageError("when -f is given, you may not specify resource arguments as well", command)
        if args.selector or args.all:
            raise UsageError("-f cannot be combined with -l or --all", command)
        args.resource, args.names = "", []  # the manifests' kinds
    else:
        if args.targets and all("/" in word for word in args.targets):
            # TYPE/NAME of several types at once (kubectl delete deploy/web job/pi).
            args.groups = resolve_groups(args.targets, command)
            args.resource = args.groups[0][0]
            args.names = [name for _, names in args.groups for name in names]
        else:
            args.resource, args.names = resolve_targets(args.targets, command)
            args.groups = [(args.resource, args.names)]
        if args.names and (args.selector or args.all):
            raise UsageError("names cannot be combined with -l or --all", command)
        if not args.names and not args.selector and not args.all:
            raise UsageError("resource(s) were provided, but no name was specified", command)
        if not kinds.of(args.resource).delete_by_selector and (args.selector or args.all):
            raise UsageError(f"delete {args.resource} by name", command)
    if args.grace_period < -1:
        raise UsageError("--grace-period must be -1 (the pod's own) or a number of seconds", command)
    args.propagation_policy = cascade_policy(args.cascade, command)


def _command_index(argv: Sequence[str], known: dict[str, argparse.ArgumentParser]) -> int | None:
    """Where the subcommand is: the first word that is neither a flag nor a global flag's value."""
    i = _first_word(argv)
    return i if i is not None and argv[i] in known else None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parses a pyctl command line.

    Returns:
        The namespace: ``command`` (None when none was given), ``handler``, the global ``config``,
        ``server``, ``request_timeout`` and ``namespace`` (None when not given) and the command's flags;
        get/describe/delete also get ``resource`` ("pods", "events" ...; "" for delete -f) and ``names``.

    Raises:
        UsageError: a bad command line.
    """
    argv = normalize_bool_flags(argv)
    parser = build_parser()
    index = _command_index(argv, parser.commands)
    if index is None:
        return parser.parse_args(argv)  # help, or the error for an unknown command
    top = parser.parse_args(argv[:index])
    # exec: what follows "--" is the remote command, never pyctl's flags.
    rest, remote = argv[index + 1 :], []
    if argv[index] == "exec" and "--" in rest:
        cut = rest.index("--")
        rest, remote = rest[:cut], rest[cut + 1 :]
    command = argv[index]
    if command == "create":
        command, rest = _create_subcommand(rest)
    # Intermixed parsing takes names after flags too (delete pod --force web), as kubectl does;
    # argparse cannot do that through subparsers, so the command's own parser parses its part.
    command_parser = parser.commands[command]
    if command == "exec":
        args, stray = command_parser.parse_known_intermixed_args(rest)
        if stray:
            raise UsageError(EXEC_WITHOUT_DASHES, "exec")
    else:
        args = command_parser.parse_intermixed_args(rest)
    args.remote_command = remote
    for name in GLOBAL_DESTS:
        if not hasattr(args, name):
            setattr(args, name, getattr(top, name))
    args.command = command
    _check(args)
    return args


def _first_word(words: Sequence[str], start: int = 0) -> int | None:
    """The index of the first word from ``start`` that is neither a flag nor a global flag's value."""
    i = start
    while i < len(words):
        if words[i] in GLOBAL_VALUE_FLAGS:
            i += 2
        elif words[i].startswith("-"):
            i += 1
        else:
            return i
    return None


def _create_subcommand(rest: list[str]) -> tuple[str, list[str]]:
    """The create command a command line names ("create", "create configmap", "create secret
    tls" ...) and its words without the sub-command's.

    Raises:
        UsageError: ``create secret`` without a known type.
    """
    i = _first_word(rest)
    if i is None or rest[i] not in CREATE_SUBCOMMANDS:
        return "create", rest
    command = CREATE_SUBCOMMANDS[rest[i]]
    if command == "create configmap":
        return command, rest[:i] + rest[i + 1 :]
    j = _first_word(rest, i + 1)
    # The help of `create` names the secret types ("create secret" has no parser of its own).
    if j is None:
        raise UsageError(f"you must specify the type of secret: {', '.join(SECRET_SUBCOMMANDS)}", "create")
    if rest[j] not in SECRET_SUBCOMMANDS:
        raise UsageError(f'unknown command "{rest[j]}" for "pyctl create secret"; '
                         f"use one of {', '.join(SECRET_SUBCOMMANDS)}", "create")
    return f"{command} {rest[j]}", rest[:i] + rest[i + 1 : j] + rest[j + 1 :]


def _interrupt_code(args: argparse.Namespace) -> int:
    return EXIT_OK if getattr(args, "watch", False) else EXIT_INTERRUPTED


async def _run(args: argparse.Namespace) -> int:
    timeout = args.request_timeout
    # kubectl's --request-timeout=0 means no deadline; without the flag, the client's default.
    options = {} if timeout is None else {"timeout": timeout or None}

    def connect() -> Client:
        return Client(args.server, config_path=args.config, **options)

    ctx = Context(connect=connect, namespace=args.namespace)
    try:
        return await args.handler(args, ctx)
    except CommandError as exc:
        ctx.print_error(f"error: {exc}")
    except (MissingConfigError, InvalidConfigError) as exc:
        ctx.print_error(f"error: {printers.one_line(str(exc))}")
    except errors.ApiError as exc:
        ctx.print_error(cli_errors.format_api_error(exc, ctx.client.server, ctx.client.timeout))
    finally:
        await ctx.close()
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """The pyctl console script.

    Args:
        argv: the arguments after the program name; sys.argv[1:] when None.

    Returns:
        The exit code: 0 on success, 1 on any error, 130 on Ctrl-C (0 while watching).
    """
    args = argparse.Namespace()
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.command is None:
            build_parser().print_help()
            return EXIT_OK
        return asyncio.run(_run(args))
    except UsageError as exc:
        see = f"pyctl {exc.command} -h" if exc.command else "pyctl -h"
        print(f"error: {exc.message}\nSee '{see}' for help.", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return _interrupt_code(args)
    except BrokenPipeError:
        # The reader went away (pyctl get pods | head): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
