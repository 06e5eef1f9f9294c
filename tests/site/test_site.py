"""The built site in headless Chromium, offline: every page loads, no broken images, chapters
show figures, ipywidgets and bertviz outputs render (screenshots go to _build/screenshots/)."""

import os
from pathlib import Path

import pytest

from chromium import Browser, find_chromium

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"

PROBE = r"""
(() => {
  const imgs = [...document.querySelectorAll('main img, article img')];
  const outputs = document.querySelectorAll('.cell_output img, .output img');
  const widgetViews = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  const widgetsDrawn = document.querySelectorAll('.jupyter-widgets, .widget-box, .widget-slider, .widget-text, .widget-output');
  const bertviz = [...document.querySelectorAll('[id^="bertviz-"]')];
  return {
    title: document.title,
    bodyText: document.body ? document.body.innerText.length : 0,
    images: imgs.length,
    broken: imgs.filter(i => i.complete && i.naturalWidth === 0).map(i => i.getAttribute('src')).slice(0, 5),
    figures: outputs.length,
    widgetViews: widgetViews.length,
    widgetsDrawn: widgetsDrawn.length,
    bertviz: bertviz.length,
    bertvizDrawn: bertviz.filter(el => el.querySelector('svg')).length,
  };
})()
"""


def _pages():
    if not SITE.is_dir():
        return []
    skip = {"genindex.html", "search.html"}
    return sorted(p for p in SITE.rglob("*.html") if p.name not in skip and "_sources" not in p.parts
                  and "_static" not in p.parts)


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required for the site check in CI (.ci/sysdeps installs it)")
        pytest.skip("chromium is not installed: sudo apt-get install chromium")
    with Browser() as b:
        yield b


def test_site_was_built():
    assert (SITE / "index.html").is_file(), "build the site first: make book (or make html)"
    assert len(_pages()) >= 4


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(SITE)))
def test_page_renders_offline(page, browser):
    browser.open(page.as_uri())
    info = browser.evaluate(PROBE)
    rel = page.relative_to(SITE)
    browser.screenshot(SHOTS / (str(rel).replace("/", "__").replace(".html", ".png")))
    assert info["title"] and info["bodyText"] > 200, f"{rel} looks empty: {info}"
    assert not info["broken"], f"{rel} has broken images: {info['broken']}"
    if rel.parts[0] == "book" and rel.name[:2].isdigit():
        assert info["figures"] >= 1, f"chapter page {rel} shows no figure"
    if info["widgetViews"]:
        assert info["widgetsDrawn"] >= 1, f"{rel}: {info['widgetViews']} widget outputs but none rendered"
    if info["bertviz"]:
        assert info["bertvizDrawn"] == info["bertviz"], f"{rel}: bertviz views not drawn ({info})"


LAB_PAGES = sorted((SITE / "labs").glob("*.html")) if (SITE / "labs").is_dir() else []


@pytest.mark.skipif(not LAB_PAGES, reason="site not built")
@pytest.mark.parametrize("page", LAB_PAGES, ids=lambda p: p.name)
def test_lab_pages_show_no_solution_source(page):
    """The site's lab pages are the learner versions: no line of a reference solution appears."""
    import html
    import re

    from genai_lab import labs, solutions

    topic = labs.lab_topic(page.with_suffix(".ipynb").name)
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
    answers = solutions.answer_lines(solutions.module_source(topic), min_length=20)
    leaked = sorted(line for line in answers if line in text)
    assert not leaked, f"{page.name} shows solution lines: {leaked[:3]}"
