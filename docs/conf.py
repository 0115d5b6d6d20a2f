"""Sphinx configuration of the pykmr documentation site.

Built by scripts/test.sh (CI) with warnings as errors, against the *installed* pykmr (the wheel):
``python -m sphinx -W --keep-going -b html docs docs/_build/html``. Pages are Markdown (MyST) or reST;
the op reference is generated at build time from the parser's op table (docs/_ext/kmr_sphinx.py); the
API reference comes from the docstrings (autodoc + napoleon); the examples gallery from examples/
(sphinx-gallery), run with ``--small`` (KMR_DOCS_EXAMPLES=0: rendered without running them).
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "_ext"))

import pykmr  # noqa: E402  (the installed package: autodoc documents what users get)

project = "pykmr"
author = "the pykmr developers"
copyright = "the pykmr developers (MIT license)"
release = pykmr.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "kmr_sphinx",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = [
    "_build",
    "**.ipynb_checkpoints",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
]
templates_path: list[str] = []
html_theme = "alabaster"
html_title = f"pykmr {release}"
html_static_path: list[str] = []

autodoc_default_options: dict[str, object] = {}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = True
nitpicky = False

# The gallery: examples/ (written as sphinx-gallery scripts with examples/README.txt). A branch without
# examples builds the site without a gallery. The scripts run with --small (a quick size, as their CI
# smoke test) and write their PNGs to a temporary folder; KMR_DOCS_EXAMPLES=0 renders them unrun.
EXAMPLES = os.path.join(ROOT, "examples")
HAS_GALLERY = os.path.exists(os.path.join(EXAMPLES, "README.txt"))
if HAS_GALLERY:
    extensions.append("sphinx_gallery.gen_gallery")
    run_examples = os.environ.get("KMR_DOCS_EXAMPLES", "1") != "0"
    sphinx_gallery_conf = {
        "examples_dirs": EXAMPLES,
        "gallery_dirs": "auto_examples",
        # Every plot_*.py runs (with --small); none when KMR_DOCS_EXAMPLES=0.
        "filename_pattern": r"/plot_" if run_examples else r"^$",
        "plot_gallery": "True" if run_examples else "False",
        "reset_argv": "kmr_sphinx.gallery_argv",
        "abort_on_example_error": True,
        "only_warn_on_example_error": False,
        "download_all_examples": False,
        "remove_config_comments": True,
        "within_subsection_order": "FileNameSortKey",
    }
