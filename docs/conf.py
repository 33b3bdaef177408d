"""Sphinx configuration for the cmcsync documentation."""

from __future__ import annotations

import importlib.metadata

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
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
intersphinx_mapping = {"python": ("https://docs.python.org/3", None)}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "cmcsync"
