"""``pyctl create configmap`` and ``pyctl create secret generic|tls|docker-registry``: kubectl's
commands of those names, with its flags (``--from-literal``, ``--from-file``,
``--from-env-file``, ``--type``, ``--cert``/``--key``, ``--docker-*``), ``--dry-run=client`` and
``-o yaml|json|name``. The objects are built by ``pymaster.cli.config_sources``; the server
validates them again.

Output as kubectl's: ``configmap/NAME created`` (``... created (dry run)``), or the object in
the ``-o`` format (with ``--dry-run=client``: as it would be sent, a Secret's data in base64). A
refusal reads ``error: failed to create configmap: <the server's message>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from google.protobuf.message import Message

from pymaster.api import errors, manifest
from pymaster.api.kinds import kind_of_message
from pymaster.cli import config_sources, printers
from pymaster.cli.context import CommandError, Context, is_fatal

DRY_RUN_VALUES = ("none", "client", "server")


def check_dry_run(value: str) -> str:
    """The --dry-run value, checked (kubectl's message); "server" is refused: the master has no
    dry-run."""
    if value not in DRY_RUN_VALUES:
        raise CommandError(f'Invalid dry-run value ({value}). Must be "none", "server", or "client".')
    if value == "server":
        raise CommandError("--dry-run=server is not supported: the pykube master has no dry run; "
                           "use --dry-run=client")
    return value


def _name(args: argparse.Namespace) -> str:
    if len(args.name) != 1:
        raise CommandError(f"exactly one NAME is required, got {len(args.name)}")
    return args.name[0]


async def _finish(args: argparse.Namespace, ctx: Context, obj: Message) -> int:
    """Creates ``obj`` (unless --dry-run=client) and prints what kubectl prints."""
    kind = kind_of_message(obj)
    dry_run = check_dry_run(args.dry_run) == "client"
    stored = obj
    if not dry_run:
        obj.metadata.namespace = ctx.ns
        try:
            stored = await ctx.client.create(obj)
        except errors.ApiError as exc:
            if is_fatal(exc):
                raise
            message = printers.one_line(exc.message)
            raise CommandError(f"failed to create {kind.singular}: {message}") from None
    name = printers.resource_name(kind.singular, stored.metadata.name)
    if args.output == "name":
        ctx.print(name)
    elif args.output == "json":
        ctx.write(printers.dump_json(manifest.to_dict(stored)))
    elif args.output == "yaml":
        ctx.write(printers.dump_yaml(manifest.to_dict(stored)))
    else:
        ctx.print(f"{name} created{' (dry run)' if dry_run else ''}")
    return 0


async def create_configmap(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl create configmap NAME [--from-literal K=V]... [--from-file [K=]PATH]...
    [--from-env-file PATH]..."""
    config_map = config_sources.config_map_from_sources(
        _name(args), ctx.namespace or "", args.from_literal, args.from_file, args.from_env_file
    )
    return await _finish(args, ctx, config_map)


async def create_secret_generic(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl create secret generic NAME [--type T] (the sources of create configmap)."""
    secret = config_sources.secret_from_sources(
        _name(args), ctx.namespace or "", args.type, args.from_literal, args.from_file, args.from_env_file
    )
    return await _finish(args, ctx, secret)


async def create_secret_tls(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl create secret tls NAME --cert FILE --key FILE."""
    secret = config_sources.tls_secret(_name(args), ctx.namespace or "", args.cert, args.key)
    return await _finish(args, ctx, secret)


async def create_secret_docker_registry(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl create secret docker-registry NAME --docker-username U --docker-password P
    [--docker-server S] [--docker-email E] | --from-file [K=]PATH."""
    secret = config_sources.docker_registry_secret(
        _name(args), ctx.namespace or "", args.docker_server, args.docker_username, args.docker_password,
        args.docker_email, args.from_file,
    )
    return await _finish(args, ctx, secret)


def build_parsers(
    make: Callable[[str, str], argparse.ArgumentParser],
) -> dict[str, argparse.ArgumentParser]:
    """The parsers of ``create configmap`` and ``create secret ...`` by their words ("create
    configmap"): kept apart from ``create -f``, as argparse cannot intermix sub-commands and
    flags. ``make(words, description)`` makes an empty parser (with the global flags)."""

    def parser(words: str, help_: str, handler: object) -> argparse.ArgumentParser:
        cmd = make(words, help_)
        cmd.add_argument("name", nargs="*", metavar="NAME", help="the object's name")
        cmd.add_argument("--dry-run", nargs="?", const="client", default="none", metavar="none|client",
                         help="client: print the object without sending it")
        cmd.add_argument("-o", "--output", choices=("yaml", "json", "name"), help="print the object so")
        cmd.set_defaults(handler=handler)
        return cmd

    def sources(cmd: argparse.ArgumentParser, env: bool = True) -> None:
        cmd.add_argument("--from-file", action="append", default=[], metavar="[KEY=]PATH",
                         help="a file (key: its base name) or a directory (one key per file); repeatable")
        if env:
            cmd.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE",
                             help="a key and its value; repeatable")
            cmd.add_argument("--from-env-file", action="append", default=[], metavar="PATH",
                             help="KEY=VALUE lines; repeatable; not with --from-file/--from-literal")

    configmap = parser("create configmap", "create a ConfigMap from files, directories or literals",
                       create_configmap)
    sources(configmap)
    generic = parser("create secret generic", "create a Secret from files, directories or literals",
                     create_secret_generic)
    sources(generic)
    generic.add_argument("--type", default="", help="the Secret's type (default: Opaque)")
    tls = parser("create secret tls", "create a TLS Secret from a certificate and its key", create_secret_tls)
    tls.add_argument("--cert", default="", metavar="FILE", help="PEM certificate (chain) file")
    tls.add_argument("--key", default="", metavar="FILE", help="PEM private key file")
    docker = parser("create secret docker-registry", "create a Secret for a container registry",
                    create_secret_docker_registry)
    docker.add_argument("--docker-server", default=config_sources.DEFAULT_DOCKER_SERVER, metavar="URL",
                        help="the registry (default: %(default)s)")
    docker.add_argument("--docker-username", default="", metavar="USER")
    docker.add_argument("--docker-password", default="", metavar="PASSWORD")
    docker.add_argument("--docker-email", default="", metavar="EMAIL")
    sources(docker, env=False)
    return {
        "create configmap": configmap, "create secret generic": generic, "create secret tls": tls,
        "create secret docker-registry": docker,
    }
