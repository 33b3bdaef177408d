"""Sphinx configuration for the cmcsync documentation.

Build it as CI does, warnings as errors and every reference checked::

    python -m sphinx -W -n --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "cmcsync"
author = "The cmcsync developers"
copyright = "2026, The cmcsync developers"
try:
    release = importlib.metadata.version("cmcsync")
except importlib.metadata.PackageNotFoundError:
    release = "0.0.0"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "cmcsync_docs",
]

# Every reference must resolve (-n); the docs are built offline, so names from the standard
# library and the dependencies are shown as code rather than linked.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        (
            r"(builtins\.)?(int|str|float|bool|bytes|object|type|dict|list|tuple|set|frozenset"
            r"|None|Ellipsis|BaseException|Exception|ValueError|TypeError|RuntimeError"
            r"|TimeoutError|ConnectionError|OSError|KeyError|AttributeError|OverflowError)"
        ),
    ),
    (
        r"py:.*",
        (
            r"(collections\.abc|typing|types|decimal|datetime|threading|random|argparse|enum"
            r"|logging|ssl|importlib\.metadata|pathlib|asyncio|re|json|os|queue|socket)(\.\w+)*"
        ),
    ),
    (
        r"py:.*",
        (
            r"(Any|Callable|Iterable|Iterator|Mapping|Sequence|Literal|ClassVar|TypeVar|Generic"
            r"|Decimal|TracebackType|Random|Path|_T|C|T|T_contra)"
        ),
    ),
    (r"py:.*", r"(pluggy|attrs|cattrs|websocket|websockets|pytest|_pytest)(\.\w+)*"),
    (r"py:.*", r"(flask|django|click)(\.\w+)*"),
    (r"py:.*", r"(PluginManager|HookimplMarker|HookspecMarker|HookImpl|Converter|Flask|Signal)"),
    # Machinery (modules and names starting with "_") is not documented on purpose.
    (r"py:.*", r"(_asyncio|cmcsync(\.\w+)*\._\w+)(\.\w+)*|.*\._T"),
]

# The web framework integrations are documented even where the frameworks are not installed.
autodoc_mock_imports = [
    name for name in ("django", "flask", "click") if importlib.util.find_spec(name) is None
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"

exclude_patterns = ["_build", "samples", "examples"]
html_theme = "furo"
html_title = f"cmcsync {release}"
html_theme_options = {"navigation_with_keys": True}
