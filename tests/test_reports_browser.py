"""Every protocol's smoke report in headless Chromium, in a 1280 x 900 window: no script errors, nothing wider than the
window (tables in their scrolling boxes included), every figure loaded, a headline with the question and its answer,
and content under every section. A full-page screenshot of each report is saved as ``<protocol>.png`` in the folder
named by ``$XAITRUST_SCREENSHOTS`` (else in the test's temporary folder) to be looked at."""

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from xaitrust.protocols import PROTOCOL_MODULES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
WINDOW = {"width": 1280, "height": 900}

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright package is not installed (pip install -e '.[test]')"),
]

#: Measures the opened page (with every folded table unfolded): what passes the right edge of the window, scrolling
#: boxes whose content is cut off, the images, the headline and the sections left empty.
MEASURE = """() => {
    const root = document.documentElement, edge = root.clientWidth;
    const text = e => (e.textContent || "").trim().replace(/\\s+/g, " ");
    const name = e => `<${e.tagName.toLowerCase()}${e.getAttribute("class") ? ` class='${e.getAttribute("class")}'` : ""}> `
        + JSON.stringify(text(e).slice(0, 60));
    const right = e => e.getBoundingClientRect().right + window.scrollX;
    const passes = e => {
        const box = e.getBoundingClientRect();
        return (box.width > 0 || box.height > 0) && right(e) > edge + 0.5;
    };
    const all = Array.from(document.body.querySelectorAll("*"));
    // Only the outermost element passing the edge: its children pass it with it.
    const wide = all.filter(e => passes(e) && !(e.parentElement !== document.body && passes(e.parentElement)))
        .map(e => `${name(e)} ends at ${Math.round(right(e))} px`);
    const title = box => {
        const before = box.previousElementSibling;
        if (before && /^H[1-6]$/.test(before.tagName)) return text(before);
        const summary = box.closest("details") && box.closest("details").querySelector("summary");
        return summary ? text(summary) : "";
    };
    const scrolling = e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
    const cut = all.filter(e => (e.matches(".table") || scrolling(e)) && e.scrollWidth > e.clientWidth + 1)
        .map(e => `${name(e)} under ${JSON.stringify(title(e))}: ${e.scrollWidth} px of content in a `
            + `${e.clientWidth} px box`);
    const headline = document.querySelector(".headline");
    const question = headline && headline.querySelector(".question");
    const empty = Array.from(document.querySelectorAll("h2")).filter(h => {
        for (let e = h.nextElementSibling; e && e.tagName !== "H2"; e = e.nextElementSibling) {
            if (!/^H[1-6]$/.test(e.tagName) && (text(e) || e.matches("img") || e.querySelector("img"))) return false;
        }
        return true;
    }).map(text);
    return {
        scrollWidth: root.scrollWidth, innerWidth: window.innerWidth, wide, cut,
        images: Array.from(document.images).map(i => ({complete: i.complete, naturalWidth: i.naturalWidth, alt: i.alt})),
        headline: headline === null ? null : {
            question: question ? text(question) : "",
            answers: Array.from(headline.querySelectorAll("li")).map(text).filter(line => line),
        },
        empty,
    };
}"""


@pytest.fixture(scope="module", params=sorted(PROTOCOL_MODULES))
def rendered(request, run_smoke, tmp_path_factory):
    """``(protocol, page)``: the protocol's smoke report as Chromium shows it (``page``: the script errors and what
    ``MEASURE`` found), after saving its full-page screenshot."""
    from playwright.sync_api import sync_playwright

    protocol = request.param
    _, report, _ = run_smoke(protocol)
    folder = Path(os.environ.get("XAITRUST_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport=WINDOW)
        page.on("console", lambda message: message.type == "error" and errors.append(f"console: {message.text}"))
        page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
        page.goto(report.as_uri())
        page.screenshot(path=folder / f"{protocol}.png", full_page=True)
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        measured = page.evaluate(MEASURE)
        browser.close()
    return protocol, {"errors": errors, **measured}


def test_report_has_no_script_errors(rendered):
    protocol, page = rendered
    assert page["errors"] == [], f"the {protocol} report logs errors in Chromium; fix what they name"


def test_report_is_no_wider_than_the_window(rendered):
    protocol, page = rendered
    assert page["scrollWidth"] <= page["innerWidth"], (
        f"the {protocol} report scrolls sideways in a {page['innerWidth']} px window ({page['scrollWidth']} px wide); "
        f"these pass its right edge: {page['wide']}")
    assert page["wide"] == [], (
        f"in the {protocol} report these elements pass the right edge of the window; make them wrap or shrink")
    assert page["cut"] == [], (
        f"in the {protocol} report these scrolling boxes cut off their content; make the tables narrower (fewer "
        "columns, shorter headers, wrapping) so that they fit their box")


def test_every_figure_loads(rendered):
    protocol, page = rendered
    broken = [image["alt"] for image in page["images"] if not (image["complete"] and image["naturalWidth"] > 0)]
    assert broken == [], f"these figures of the {protocol} report do not load; check the PNG written for each"


def test_report_opens_with_a_headline_question_and_answer(rendered):
    protocol, page = rendered
    headline = page["headline"]
    assert headline is not None, (
        f"the {protocol} report has no headline: pass write_report a Headline (the question and its answer)")
    assert headline["question"], f"the {protocol} report's headline has no question (<p class='question'>)"
    assert headline["answers"], f"the {protocol} report's headline has no answer line (<li> in its <ul>)"


def test_every_section_has_content(rendered):
    protocol, page = rendered
    assert page["empty"] == [], (
        f"these sections of the {protocol} report are empty: give them a paragraph, table or figure, or leave them "
        "out")
