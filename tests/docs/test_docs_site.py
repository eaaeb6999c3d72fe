"""The docs site in a real browser (Debian's chromium driven by Playwright): the home page, a guide page and an
executed gallery page render, with their titles and no missing image. The site is the one ``make docs`` built
(``docs/_build/html``); where it is absent the session builds it once, as ``make docs`` does. With
``BMI_SCREENSHOTS=1`` each page is also saved under ``docs/screenshots/``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
HTML = DOCS / "_build" / "html"
SCREENSHOTS = DOCS / "screenshots"

pytestmark = pytest.mark.timeout(900)  # a build from nothing runs the example gallery


def build_site(out: Path) -> subprocess.CompletedProcess:
    """``make docs``'s command: HTML, warnings as errors."""
    env = dict(os.environ, MPLBACKEND="Agg", WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", str(DOCS), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.fixture(scope="session")
def site() -> Path:
    if importlib.util.find_spec("sphinx") is None:
        pytest.fail("the docs need the docs extra (sphinx, pydata-sphinx-theme, numpydoc, sphinx-gallery)")
    if not (HTML / "index.html").is_file() or not (HTML / "auto_examples" / "index.html").is_file():
        proc = build_site(HTML)
        assert proc.returncode == 0, f"make docs failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return HTML


def guide_page(site: Path) -> Path:
    """A journey page when the guides have one, else the generated configuration reference."""
    journeys = sorted(p for p in (site / "journeys").glob("*.html") if p.name != "index.html")
    return journeys[0] if journeys else site / "reference" / "config.html"


def gallery_page(site: Path) -> Path:
    """The first executed example (a page with figures)."""
    pages = sorted((site / "auto_examples").glob("plot_*.html"))
    assert pages, f"no executed example under {site / 'auto_examples'}"
    return pages[0]


def check_page(browser, path: Path, shot: str, min_images: int = 0) -> dict:
    """Open ``path``; its title, headline, images (each loaded: naturalWidth > 0) and console errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    state = page.evaluate("""() => ({
        title: document.title,
        h1: (document.querySelector('article h1, main h1, h1') || {}).textContent || '',
        images: [...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth})),
        sidebar: !!document.querySelector('.bd-sidebar-primary, nav.bd-docs-nav, .bd-header'),
    })""")
    if os.environ.get("BMI_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / shot), full_page=False)
    page.close()
    broken = [i["src"] for i in state["images"] if not i["complete"] or i["width"] == 0]
    assert not broken, f"{path.name}: images that did not load: {broken}"
    assert len(state["images"]) >= min_images, f"{path.name}: {len(state['images'])} images, expected {min_images}+"
    assert state["sidebar"], f"{path.name}: the theme's navigation did not render"
    assert not errors, f"{path.name}: script errors {errors}"
    return state


def test_home_page_renders(site, browser):
    state = check_page(browser, site / "index.html", "docs-home.png")
    assert "bmi-decoder" in state["title"]
    assert "bmi-decoder" in state["h1"]


def test_home_page_says_research_use_only(site):
    text = (site / "index.html").read_text()
    assert "not a medical device" in text.lower()


def test_guide_page_renders(site, browser):
    page = guide_page(site)
    state = check_page(browser, page, "docs-guide.png")
    assert state["h1"].strip(), f"{page.name} has no heading"


def test_gallery_page_renders_its_figures(site, browser):
    page = gallery_page(site)
    state = check_page(browser, page, "docs-gallery.png", min_images=1)
    figures = [i for i in state["images"] if "sphx_glr_" in (i["src"] or "") and "thumb" not in i["src"]]
    assert figures, f"{page.name} shows no figure of its own: {state['images']}"


def _dataclass_in(tp):
    import dataclasses
    import typing

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    return next((d for d in map(_dataclass_in, typing.get_args(tp)) if d is not None), None)


def test_reference_lists_every_config_key(site):
    """The generated reference holds every key of the typed config, nested sections too (a key added to the code
    appears there)."""
    import dataclasses
    import typing

    from pipeline.record.config import ExperimentConfig

    text = (site / "reference" / "config.html").read_text()
    sections, seen = [("", ExperimentConfig)], 0
    while sections:
        prefix, cls = sections.pop()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{prefix}{f.name}"
            assert f">{key}<" in text, f"the configuration reference lacks {key!r}"
            seen += 1
            inner = _dataclass_in(hints[f.name])
            if inner is not None:
                sections.append((f"{key}.", inner))
    assert seen > 80


def test_reference_lists_every_command(site):
    """Every ``bmi`` command and each of its options is on the generated command-line page."""
    import argparse

    from pipeline.cli import build_parser

    text = (site / "reference" / "cli.html").read_text()

    def walk(parser, prog):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{prog} {name}", sub
                    yield from walk(sub, f"{prog} {name}")

    commands = list(walk(build_parser(), "bmi"))
    assert len(commands) > 15
    for full, sub in commands:
        assert f">{full}<" in text, f"the command-line reference lacks {full!r}"
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and action.help != argparse.SUPPRESS:
                    assert option in text, f"the command-line reference lacks {full} {option}"
