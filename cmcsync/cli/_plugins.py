"""``cmcsync plugins``: the installed plugins, their versions and the hooks they implement."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cmcsync.cli._common import EXIT_OK, CommandError, Console, paragraph, use_color
from cmcsync.exceptions import ConfigError
from cmcsync.plugins import (
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PLUGINS_ENV,
    PluginInfo,
    make_plugin_manager,
    plugin_info,
)

__all__ = ["add_parser", "run"]

_PREFIX = "cmcsync_"


def add_parser(commands: Any) -> None:
    """Add the ``plugins`` subcommand."""
    p = commands.add_parser(
        "plugins",
        help="list the installed plugins, their versions and the hooks they implement",
        description=paragraph(
            f"List the plugins every Client loads: packages with an entry point in the "
            f"{ENTRY_POINT_GROUP!r} group, narrowed by {PLUGINS_ENV} and turned off by "
            f"{DISABLE_AUTOLOAD_ENV}. Exit code 1 when a plugin cannot be loaded."
        ),
        epilog=(
            "write one: a package whose setup.cfg declares\n"
            "  [options.entry_points]\n"
            "  cmcsync =\n"
            "      myplugin = my_package.module\n"
            "and whose module has functions marked @cmcsync.hookimpl (see plugins/cmcsync-example)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table for reading, json for scripts (default: table)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``cmcsync plugins``; return the exit code."""
    try:
        pm = make_plugin_manager(autoload=True)
    except ConfigError as exc:
        raise CommandError(
            f"a plugin failed to load: {exc}",
            f"fix or uninstall that package, or leave it out with {PLUGINS_ENV}=name,... "
            f"(only those) or {DISABLE_AUTOLOAD_ENV}=1 (none)",
        ) from None
    infos = plugin_info(pm)
    if args.format == "json":
        records = [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "hooks": list(info.hooks),
            }
            for info in infos
        ]
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        return EXIT_OK
    sys.stdout.write(_table(infos, use_color(sys.stdout)))
    for note in _notes(infos):
        console.say(note)
    return EXIT_OK


def _table(infos: list[PluginInfo], color: bool) -> str:
    if not infos:
        return "no cmcsync plugins installed\n"
    bold, dim, reset = ("\x1b[1m", "\x1b[2m", "\x1b[0m") if color else ("", "", "")
    rows = [
        (
            info.name,
            f"{info.distribution or '(registered in code)'} {info.version or ''}".strip(),
        )
        for info in infos
    ]
    name_w = max(4, *(len(r[0]) for r in rows))
    dist_w = max(12, *(len(r[1]) for r in rows))
    lines = [f"{bold}{'NAME':<{name_w}}  {'DISTRIBUTION':<{dist_w}}  HOOKS{reset}"]
    for info, (name, dist) in zip(infos, rows, strict=False):
        hooks = [h.removeprefix(_PREFIX) for h in info.hooks] or ["(none)"]
        lines.append(f"{name:<{name_w}}  {dist:<{dist_w}}  {', '.join(hooks)}")
    lines.append(f"{dim}hooks are listed without their cmcsync_ prefix{reset}")
    return "\n".join(lines) + "\n"


def _notes(infos: list[PluginInfo]) -> list[str]:
    notes = []
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        notes.append(f"{DISABLE_AUTOLOAD_ENV} is set: clients load no installed plugin")
    allow = os.environ.get(PLUGINS_ENV, "").strip()
    if allow:
        notes.append(f"{PLUGINS_ENV}={allow}: clients load only these")
    if not infos and not notes:
        notes.append(
            f"install a package with a {ENTRY_POINT_GROUP!r} entry point, e.g. "
            "python3 -m pip install ./plugins/cmcsync-example"
        )
    return notes
