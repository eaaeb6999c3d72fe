"""Sphinx configuration of the docs site (``make docs`` builds it into ``docs/_build/html``).

The reference pages are generated from the code at every build (``docs/_ext/bmi_reference.py``), the API pages
from the numpydoc docstrings (autosummary, ``api.rst``), the example gallery by running ``docs/examples/*.py``
(sphinx-gallery, into ``docs/auto_examples/``) and the benchmark tables from their results files
(``docs/benchmarks/tables.py``). Warnings are errors (``-W``): a broken reference, a public function without a
docstring in the validated modules, or an example that raises fails the build.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]
if (DOCS / "benchmarks" / "tables.py").is_file():
    sys.path.insert(0, str(DOCS / "benchmarks"))

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

project = "bmi-decoder"
author = "the bmi-decoder developers"
copyright = f"{date.today().year}, {author}"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "bmi_reference",
]
if (DOCS / "benchmarks" / "tables.py").is_file():
    extensions.append("tables")

templates_path = ["_templates"]
exclude_patterns = ["_build", "examples", "_templates", "screenshots", "**/README.md", "benchmarks/results", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
root_doc = "index"
highlight_language = "text"  # "::" blocks in docstrings are wire formats and tables, not Python
nitpicky = False
# config.cache: sphinx_gallery_conf holds functions, so Sphinx cannot cache it (it rebuilds: fine).

suppress_warnings = ["config.cache"]

# -- API reference: autosummary + numpydoc -------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": True}
autodoc_typehints = "none"  # the numpydoc Parameters sections say the types
autodoc_member_order = "bysource"
autodoc_mock_imports = []
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
numpydoc_xref_param_type = False
# Validation: a public object without a docstring (GL08) fails the build in the modules listed in
# VALIDATED (their docstrings are checked); the others are documented but not yet held to it.
numpydoc_validation_checks = {"GL08"}
VALIDATED = (
    "models.registry", "models.base", "models.eegnet", "models.shallow", "models.logvar", "models.gated",
    "datasets.dsp", "datasets.synthetic", "datasets.typed",
    "pipeline.record", "pipeline.plots", "pipeline.rehearse",
    "exports.metadata", "exports.onnx", "exports.runtime.protocol",
    # the runtime a lab deploying to the rig reads
    "exports.runtime.server", "exports.runtime.chain", "exports.runtime.inputs", "exports.runtime.outputs",
    "exports.runtime.smoothing", "exports.runtime.safety",
)
_validated = "|".join(m.replace(".", r"\.") for m in VALIDATED)
numpydoc_validation_exclude = {
    rf"^(?!({_validated})(\.|$))",  # everything outside the validated modules
    r"\._[^.]*$",  # private names
    r"\.__[a-z]+__$",
    r"\.registry_name$",  # a class attribute documented by its #: comment, which numpydoc does not see
}

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
}
intersphinx_disabled_reftypes = ["*"]
intersphinx_timeout = 1
# no network in CI: intersphinx is listed for local builds with an inventory cache only
if os.environ.get("BMI_DOCS_OFFLINE", "1") == "1":
    extensions.remove("sphinx.ext.intersphinx")

# -- the example gallery ----------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": ["examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",  # every plot_*.py runs at build
    "ignore_pattern": r"(__init__|_tutorial_run)\.py",  # the examples' shared helper is imported, not shown
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "plot_gallery": "True",
    "show_memory": False,
    "reference_url": {},
    "matplotlib_animations": False,
    "capture_repr": ("_repr_html_",),
}

# -- HTML ----------------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "bmi-decoder"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_context = {"default_mode": "light"}


# -- optional pages --------------------------------------------------------------------------------------------
def _drop_empty_globs(app, docname: str, source: list[str]) -> None:
    """Drop the index's toctree glob entries that match no page yet (Sphinx warns on them, untyped, so that
    ``suppress_warnings`` cannot silence it): the guides are listed as soon as they are written."""
    if docname != "index":
        return
    kept = []
    for line in source[0].splitlines(keepends=True):
        entry = line.strip()
        if line.startswith("   ") and re.fullmatch(r"[\w/.-]+\*", entry):  # a toctree's glob entry
            if not any(p.suffix == ".rst" for p in DOCS.glob(entry + ("" if entry.endswith(".rst") else ".rst"))):
                continue
        kept.append(line)
    source[0] = "".join(kept)


def _undocumented_methods(app, what, name, obj, skip, options):
    """autodoc leaves a member without a docstring out silently, where numpydoc never sees it: in the validated
    modules, a public function or method without its own docstring is a warning (an error with ``-W``)."""
    import inspect

    func = getattr(obj, "__func__", obj)
    qualname = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', name)}"
    if (not name.startswith("_") and inspect.isfunction(func) and re.match(rf"({_validated})(\.|$)", qualname)
            and not (func.__doc__ or "").strip()):
        from sphinx.util import logging

        logging.getLogger(__name__).warning("%s has no docstring (a public function of a validated module)",
                                            qualname, type="bmi", subtype="undocumented")
    return None


def setup(app):
    app.connect("source-read", _drop_empty_globs)
    app.connect("autodoc-skip-member", _undocumented_methods)
