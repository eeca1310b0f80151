"""Sphinx configuration: the docs are Markdown (MyST) pages plus an API reference from docstrings.

Build: python -m sphinx -W -b html docs docs/_build/html (tests/test_docs.py does, in CI).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlpipeline import __version__  # noqa: E402

project = "mlpipeline"
author = "the mlpipeline developers"
release = version = __version__
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_title = f"mlpipeline {__version__}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
myst_heading_anchors = 3
