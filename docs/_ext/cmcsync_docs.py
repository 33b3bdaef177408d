"""Sphinx extension: reference tables generated from cmcsync's own tables, so they cannot drift.

Directives:

- ``.. cmcsync-fields:: cmcsync.events.Kline``: every attribute of an attrs event (or window)
  class with its wire key, type and meaning, read from the fields' metadata (the very data the
  codec decodes with). Each attribute becomes a ``py:attribute`` target, so ``:attr:`` links
  to it work. Event classes documented with ``autoclass`` get this table automatically in place
  of the ``:ivar:`` list their docstring carries.
- ``.. cmcsync-channels::``: the channel table, from :data:`cmcsync.channels.CHANNELS`.
- ``.. cmcsync-hooks::``: one row per hook specification, from :mod:`cmcsync.hookspecs`.
- ``.. cmcsync-cli::``: the command line, from :func:`cmcsync.cli.build_parser`.

It also resolves references written against the public names (``cmcsync.Backoff``) when the
object is documented under them but the reference is relative to its defining module.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import attrs
from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective, SphinxRole
from sphinx.util.nodes import nested_parse_with_titles

_IVAR = re.compile(r"^(\s*):ivar (\w+):\s?(.*)$")
_RST_SPECIAL = re.compile(r"([\\*`|_])")


def _import(path: str) -> Any:
    """Import ``package.module.Name`` (or a module) and return the object."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def _escape(text: str) -> str:
    """Escape text meant to be read literally inside reST."""
    return _RST_SPECIAL.sub(r"\\\1", text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -------------------------------------------------------------------------------------------
# Event fields and their wire keys
# -------------------------------------------------------------------------------------------


_RELATIVE_ATTR = re.compile(r":attr:`(\w+)`")


def _ivar_docs(cls: type) -> dict[str, str]:
    """The ``:ivar name: text`` entries of the class's docstrings, nearest class first.

    A relative ``:attr:`` in an entry inherited from a base class is qualified with that base,
    so it still points at the base's attribute from the subclass's page.
    """
    found: dict[str, str] = {}
    for klass in cls.__mro__:
        doc = inspect.cleandoc(klass.__doc__ or "")
        owner = f"{klass.__module__}.{klass.__qualname__}"
        name: str | None = None
        text: list[str] = []
        for line in [*doc.splitlines(), ""]:
            match = _IVAR.match(line)
            if match or not line.startswith(" "):
                if name is not None and name not in found:
                    entry = _one_line(" ".join(text))
                    if klass is not cls:
                        entry = _RELATIVE_ATTR.sub(rf":attr:`~{owner}.\1`", entry)
                    found[name] = entry
                name, text = None, []
            if match:
                name, text = match.group(2), [match.group(3)]
            elif name is not None:
                text.append(line)
    return found


def _event_base() -> type:
    from cmcsync.events import Event

    return Event


def field_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """``(attribute, wire key, type, meaning)`` for the attrs fields of ``cls``, in order.

    An event subclass leaves out the fields every event has (they are on the base class).
    Meanings come from the field metadata (``doc``), else from the class's ``:ivar:`` lines.
    """
    base = _event_base()
    common = {f.name for f in attrs.fields(base)}
    envelope = common - {"extra"}
    ivars = _ivar_docs(cls)
    rows = []
    for field in attrs.fields(cls):
        if cls is not base and field.name in common:
            continue  # shown once, on the base class
        meta = field.metadata
        if meta.get("wire") is not None:
            key = f"``{meta['wire']}``"
        elif meta.get("wire_pattern") is not None:
            key = f"keys matching ``{meta['wire_pattern']}``"
        elif field.name == "extra":
            key = "every other key"
        elif field.name in envelope:
            key = f"envelope ``{field.name}``"
        else:  # pragma: no cover - every field of cmcsync.events is one of the above
            key = "—"
        meaning = meta.get("doc") or ivars.get(field.name, "")
        if meta.get("required"):
            meaning += " Required."
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        rows.append((field.name, key, f"``{kind}``" if kind else "", _one_line(meaning)))
    return rows


class FieldTargetRole(SphinxRole):
    """``:cmcsync-field:`cmcsync.events.Kline.open```: an attribute name that is a link target."""

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        fullname = self.text
        node_id = fullname
        short = fullname.rsplit(".", 1)[-1]
        domain: Any = self.env.get_domain("py")
        domain.note_object(fullname, "attribute", node_id, location=self.get_location())
        node = nodes.inline(ids=[node_id])
        node += nodes.literal(short, short)
        return [node], []


class FieldsDirective(SphinxDirective):
    """``.. cmcsync-fields:: cmcsync.events.Kline``: the attribute / wire key table."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        path = self.arguments[0]
        cls = _import(path)
        base = _event_base()
        lines = []
        if cls is not base and issubclass(cls, base):
            common = "``channel``, ``params``, ``ts`` and ``extra``"
            lines += [
                f"Besides {common}, which every event has (:class:`~cmcsync.events.Event`):",
                "",
            ]
        lines += [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 28 18 20 34",
            "   :class: cmcsync-fields",
            "",
            "   * - Attribute",
            "     - Wire key",
            "     - Type",
            "     - Meaning",
        ]
        for name, key, kind, meaning in field_rows(cls):
            lines += [
                f"   * - :cmcsync-field:`{path}.{name}`",
                f"     - {key}",
                f"     - {kind}",
                f"     - {meaning}",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=path), self.content_offset, container)
        return container.children


def _strip_ivars(lines: list[str], fields: set[str]) -> None:
    """Remove the ``Wire keys:`` heading and the ``:ivar:`` entries of ``fields``, in place."""
    out: list[str] = []
    skipping = False
    for line in lines:
        match = _IVAR.match(line)
        if match and match.group(2) in fields:
            skipping = True
            continue
        if skipping and line.startswith(" ") and line.strip():
            continue
        skipping = False
        if line.strip() == "Wire keys:":
            continue
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    lines[:] = out


def _attrs_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """autodoc: no constructor signature for events, ``<factory>`` for attrs factories.

    An event class takes every attribute of its table as a keyword argument; repeating two
    dozen of them in the heading helps nobody.
    """
    if what != "class" or not attrs.has(obj) or signature is None:
        return None
    if obj.__module__ == "cmcsync.events":
        return "", return_annotation
    return signature.replace("=NOTHING", "=<factory>"), return_annotation


def _wire_table_in_docstring(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """autodoc: replace an event class's ``:ivar:`` list with the generated table."""
    if what != "class" or not attrs.has(obj) or obj.__module__ != "cmcsync.events":
        return
    fields = {f.name for f in attrs.fields(obj)}
    _strip_ivars(lines, fields)
    lines += ["", f".. cmcsync-fields:: {name}", ""]


# -------------------------------------------------------------------------------------------
# Channels and hooks
# -------------------------------------------------------------------------------------------


class ChannelsDirective(SphinxDirective):
    """``.. cmcsync-channels::``: one row per channel of the table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from cmcsync.channels import CHANNELS

        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 28 26 20 26",
            "",
            "   * - Channel",
            "     - Params (the list param last)",
            "     - Event class",
            "     - Hook",
        ]
        for row in CHANNELS.values():
            params = ", ".join(f"``{p}``" for p in row.scalar_params)
            params = f"{params}, " if params else ""
            params += f"``{row.list_param}`` (one or a list)"
            if row.intervals:
                params += "; ``interval``: " + ", ".join(f"``{i}``" for i in row.intervals)
            notes = []
            if row.cadence is not None:
                notes.append(f"pushed about every {row.cadence:g} s")
            elif row.intervals:
                notes.append("pushed once per interval")
            else:
                notes.append("pushed as events happen")
            if row.dedupe_key:
                notes.append("the second copy of an event is dropped")
            lines += [
                f"   * - ``{row.name}``",
                "",
                f"       {row.title}; {'; '.join(notes)}.",
                f"     - {params}",
                f"     - :class:`~cmcsync.events.{row.event_type.__name__}`",
                f"     - :func:`~cmcsync.hookspecs.{row.hook}`",
            ]
        container = nodes.container()
        self.state.nested_parse(
            StringList(lines, source="CHANNELS"), self.content_offset, container
        )
        return container.children


def hook_specs() -> list[tuple[str, inspect.Signature, str, str]]:
    """``(name, signature, summary, thread)`` of every hook specification, in source order.

    ``thread`` is the first sentence of the docstring's **Thread** paragraph.
    """
    from cmcsync import hookspecs

    specs = []
    for name, func in vars(hookspecs).items():
        if callable(func) and hasattr(func, f"{hookspecs.PROJECT_NAME}_spec"):
            doc = inspect.getdoc(func) or ""
            summary = doc.split("\n\n")[0]
            thread = doc.partition("**Thread**:")[2].split("\n\n")[0]
            thread = _one_line(thread).split("; ")[0].rstrip(".")
            specs.append((name, inspect.signature(func), _one_line(summary), thread))
    return specs


class HooksDirective(SphinxDirective):
    """``.. cmcsync-hooks::``: a summary table of every hook."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 30 24 28 18",
            "",
            "   * - Hook",
            "     - Arguments",
            "     - Summary",
            "     - Thread",
        ]
        for name, signature, summary, thread in hook_specs():
            args = ", ".join(f"``{p}``" for p in signature.parameters)
            lines += [
                f"   * - :func:`~cmcsync.hookspecs.{name}`",
                f"     - {args}",
                f"     - {summary}",
                f"     - {thread}",
            ]
        container = nodes.container()
        self.state.nested_parse(
            StringList(lines, source="hookspecs"), self.content_offset, container
        )
        return container.children


# -------------------------------------------------------------------------------------------
# The command line
# -------------------------------------------------------------------------------------------


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _option_lines(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    lines: list[str] = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                metavar = " " + formatter._format_args(action, action.dest.upper())
            names = ", ".join(f"{flag}{metavar}" for flag in action.option_strings)
        else:
            names = formatter._format_args(action, action.dest).strip("[]")
        help_text = formatter._expand_help(action) if action.help else ""
        if help_text and not help_text.endswith((".", ":", "!", "?")):
            help_text += "."
        extra = []
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            extra.append("One of " + ", ".join(f"``{c}``" for c in action.choices) + ".")
        default = action.default
        shown = "default" in (action.help or "").lower()
        if (
            action.option_strings
            and action.nargs != 0
            and default not in (None, argparse.SUPPRESS)
            and not shown
        ):
            extra.append(f"Default: ``{default}``.")
        if isinstance(action, argparse._AppendAction):
            extra.append("May be given more than once.")
        body = " ".join([_escape(help_text[:1].upper() + help_text[1:]), *extra]).strip()
        lines += [f".. option:: {names}", "", f"   {body or 'See the description above.'}", ""]
    return lines


def _text_lines(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """A description or epilog: a literal block when the parser keeps its line breaks."""
    if issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter):
        body = inspect.cleandoc(text).splitlines()
        return ["::", "", *(f"   {line}" if line.strip() else "" for line in body), ""]
    return [_escape(_one_line(text)), ""]


def _usage_lines(parser: argparse.ArgumentParser) -> list[str]:
    return ["::", "", *("   " + line for line in parser.format_usage().strip().splitlines()), ""]


def cli_lines(parser: argparse.ArgumentParser, underline: str = "-") -> list[str]:
    """reST for ``parser`` and each of its subcommands, one section per subcommand."""
    prog = parser.prog
    lines = [f".. program:: {prog}", "", *_usage_lines(parser)]
    if parser.description:
        lines += _text_lines(parser, parser.description)
    lines += _option_lines(parser)
    if parser.epilog:
        lines += _text_lines(parser, parser.epilog)
    for name, summary, sub in _subcommands(parser):
        title = f"{prog} {name}"
        lines += [title, underline * len(title), "", f".. program:: {title}", ""]
        lines += _usage_lines(sub)
        text = sub.description or summary
        if text:
            lines += _text_lines(sub, text)
        lines += _option_lines(sub)
        if sub.epilog:
            lines += _text_lines(sub, sub.epilog)
    return lines


class CliDirective(SphinxDirective):
    """``.. cmcsync-cli::``: every subcommand and option of the ``cmcsync`` command."""

    has_content = False
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {"underline": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        underline = self.options.get("underline", "-") or "-"
        try:
            from cmcsync.cli import build_parser

            lines = cli_lines(build_parser(), underline)
        except Exception as exc:  # noqa: BLE001 - reported as a build error, with its cause
            message = f"cannot document the command line: {type(exc).__name__}: {exc}"
            return [self.state.document.reporter.error(message, line=self.lineno)]
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="cmcsync.cli"), container)
        return container.children


# -------------------------------------------------------------------------------------------
# References written relative to an object's defining module
# -------------------------------------------------------------------------------------------


def _resolve_public_alias(
    app: Sphinx, env: BuildEnvironment, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    """Resolve ``:data:`OverflowPolicy``` inside ``cmcsync.DispatchConfig``'s docstring.

    Public classes are documented under ``cmcsync.Name``, but their docstrings refer to
    neighbours relative to the module that defines them (``cmcsync.config``).
    """
    if node.get("refdomain") != "py":
        return None
    import cmcsync

    target = node["reftarget"]
    module = node.get("py:module") or ""
    classname = node.get("py:class") or ""
    candidates: list[str] = []
    owner = getattr(cmcsync, classname.split(".")[0], None) if classname else None
    if module == "cmcsync" and owner is not None and hasattr(owner, "__module__"):
        candidates += [f"{owner.__module__}.{target}", f"{owner.__module__}.{classname}.{target}"]
    for public in cmcsync.__all__:
        obj = getattr(cmcsync, public)
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str) or module == "cmcsync":
            continue
        # Both directions: cmcsync.Backoff.compute <-> cmcsync.config.Backoff.compute.
        for written, other in ((f"cmcsync.{public}", f"{module}.{qualname}"),) * 1:
            for a, b in ((written, other), (other, written)):
                if target == a or target.startswith(a + "."):
                    candidates.append(b + target[len(a) :])
    domain = env.get_domain("py")
    for candidate in candidates:
        found = domain.resolve_xref(
            env, node.get("refdoc", ""), app.builder, node["reftype"], candidate, node, contnode
        )
        if found is not None:
            return found
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_role("cmcsync-field", FieldTargetRole())
    app.add_directive("cmcsync-fields", FieldsDirective)
    app.add_directive("cmcsync-channels", ChannelsDirective)
    app.add_directive("cmcsync-hooks", HooksDirective)
    app.add_directive("cmcsync-cli", CliDirective)
    app.connect("autodoc-process-docstring", _wire_table_in_docstring)
    app.connect("autodoc-process-signature", _attrs_signature)
    app.connect("missing-reference", _resolve_public_alias)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


__all__ = ["cli_lines", "field_rows", "hook_specs", "setup"]
