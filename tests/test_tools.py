"""The repository tools: the built-site checker and the notebook cleaner."""

import base64
import json
import os

import pytest

from tools import check_site
from tools.check_site import check
from tools.clean_notebooks import clean


def _page(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>")


def test_check_site_finds_broken_links_images_and_anchors(tmp_path):
    _page(tmp_path / "index.html", '<a href="book/01_mdp.html#values">ok</a> <a href="https://x.org">ext</a>')
    _page(tmp_path / "book" / "01_mdp.html",
          '<h1 id="values">V</h1><img src="../_images/plot.png"> <a href="missing.html">bad</a>'
          '<a href="../index.html#nowhere">bad anchor</a> <img src="data:image/png;base64,AAAA">')
    (tmp_path / "_images").mkdir()
    _page(tmp_path / "book" / "02_gym.html", '<p>no plots</p><img src="../_images/gone.png">')
    problems = check(tmp_path)
    assert any("01_mdp.html: broken link missing.html" in p for p in problems)
    assert any("index.html#nowhere: anchor not found" in p for p in problems)
    assert any("01_mdp.html: broken image ../_images/plot.png" in p for p in problems)
    assert any("02_gym.html: broken image ../_images/gone.png" in p for p in problems)
    (tmp_path / "_images" / "plot.png").write_bytes(b"png")
    (tmp_path / "_images" / "gone.png").write_bytes(b"png")
    _page(tmp_path / "book" / "01_mdp.html", '<h1 id="values">V</h1><img src="../_images/plot.png">')
    assert check(tmp_path) == []


def test_check_site_flags_a_chapter_without_images(tmp_path):
    _page(tmp_path / "book" / "03_pytorch.html", "<p>text only</p>")
    assert check(tmp_path) == ["book/03_pytorch.html: a chapter page without a single image"]


# The browser half of the checker: small pages, each with one defect a reader would see, and a clean one. These
# need Chromium and Playwright; they skip without them, except where RLBOOK_REQUIRE_BROWSER is set (CI), where a
# missing browser is a failure.

PNG = base64.b64decode(  # one pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
ICON = '<link rel="icon" href="favicon.svg">'
PAGES = {
    "clean.html": ICON + '<main><h1><span class="section-number">1. </span>Values</h1><p>A price in <code>$HOME</code>,'
                  ' a pipe in <code>| a | b |</code>, pages 10–20 and a dash – like this.</p>'
                  '<img src="plot.png" alt="Learning curve of DQN"><table><tr><td>a</td><td>b</td></tr></table>'
                  '<pre>print("short")</pre><a href="clean.html">top</a></main>',
    "raw_table.html": ICON + "<main><p>| method | return |\n|---|---|\n| dqn | 500 |</p>"
                      # as Sphinx typesets it, "---" become em dashes
                      "<div><p><strong>Runs</strong></p><p>| seeds | solved |\n|—|—|\n| 10 | 10/10 |</p></div></main>",
    "raw_tex.html": ICON + r"<main><p>The value $V(s)$ of a state.</p><p>Also \(\gamma\) here.</p></main>",
    "overflow.html": ICON + '<main style="width: 400px"><pre style="overflow-x: auto">' + "x = 1  # " + "long " * 60
                     + "\nshort</pre></main>",
    "math.html": ICON + r'<main><p>A <span class="math">\(x^2\)</span> MathJax never saw.</p><p>'
                 '<mjx-container><mjx-merror data-mjx-error="Double exponent: use braces to clarify">x^^2</mjx-merror>'
                 "</mjx-container></p></main>",
    "wide_table.html": ICON + '<main style="width: 300px"><table><tr><th>metric</th><td style="white-space: nowrap">'
                       + "a long cell " * 20 + "</td></tr></table></main>",
    "broken_image.html": ICON + '<main><img src="missing.png" alt="A plot that is not there"></main>',
    "console.html": ICON + '<main><p>ok</p><script>console.error("boom")</script>'
                    "<script>notAFunction()</script></main>",
    "not_found.html": ICON + '<main><p>ok</p><script src="gone.js"></script><a href="nowhere.html">x</a></main>',
    "alt_hash.html": ICON + '<main><img src="plot.png" alt="../_images/652be7181183301648bfebf2f51fbfba.png">'
                     '<img src="plot.png"></main>',
    "heading.html": ICON + '<main><h1><span class="section-number">4. </span>4. The cross-entropy method</h1></main>',
    "dash.html": ICON + "<main><p>Run <strong>python bench/cem.py –seeds 10</strong> to measure.</p></main>",
    "no_favicon.html": "<main><p>ok</p></main>",
    "external.html": ICON + '<main><img src="https://example.org/plot.png" alt="A remote plot"></main>',
}


def _site(root, pages):
    for name, body in pages.items():
        (root / name).write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
    (root / "plot.png").write_bytes(PNG)
    (root / "favicon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"/>')
    return root


def _need_browser():
    reason = check_site.browser_missing()
    if reason:
        if os.environ.get("RLBOOK_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browsed(tmp_path_factory):
    _need_browser()
    root = _site(tmp_path_factory.mktemp("site"), PAGES)
    report = check_site.browse(root)
    by_page = {}
    for page, kind, text in report.problems:
        by_page.setdefault(page, []).append((kind, text))
    return report, by_page


@pytest.mark.parametrize("page, kind, text", [
    ("raw_table.html", "raw table", 'markdown table shown as text in p: "| method | return |"'),
    ("raw_table.html", "raw table", 'markdown table shown as text in p: "| seeds | solved |"'),
    ("raw_tex.html", "math", 'raw TeX in p: "The value $V(s)$ of a state."'),
    ("raw_tex.html", "math", r'raw TeX in p: "Also \(\gamma\) here."'),
    ("raw_tex.html", "math", "the page has math but MathJax rendered none of it"),
    ("math.html", "math", r'math not rendered in span.math: "\(x^2\)"'),
    ("math.html", "math", 'MathJax error in mjx-merror: Double exponent: use braces to clarify: "x^^2"'),
    ("wide_table.html", "overflow", 'px past the column; table: "metric | a long cell a long cell'),
    ("wide_table.html", "overflow", "the whole page scrolls sideways"),
    ("overflow.html", "overflow", "wider than the column: pre,"),
    ("overflow.html", "overflow", 'line of 309 characters'),
    ("broken_image.html", "image", "broken image missing.png in img"),
    ("broken_image.html", "404", "404 for missing.png"),
    ("console.html", "console", "console error: boom"),
    ("console.html", "console", "page error: ReferenceError: notAFunction is not defined"),
    ("not_found.html", "404", "404 for gone.js"),
    ("alt_hash.html", "alt", 'alt text is a file name, not a description: "../_images/652be'),
    ("alt_hash.html", "alt", "image without alt text: plot.png in img"),
    ("heading.html", "heading", 'heading numbered twice: "4. 4. The cross-entropy method"'),
    ("dash.html", "dash", 'option typeset as a dash (write it as code): "–seeds" in strong'),
    ("no_favicon.html", "favicon", "no favicon"),
    ("external.html", "external", "external request (the site must work offline): https://example.org/plot.png"),
])
def test_browser_check_reports_what_a_reader_sees(browsed, page, kind, text):
    _, by_page = browsed
    found = by_page.get(page, [])
    assert any(k == kind and text in t for k, t in found), f"{page}: no {kind!r} problem with {text!r} in {found}"


def test_browser_check_passes_a_clean_page_and_counts(browsed):
    report, by_page = browsed
    assert "clean.html" not in by_page, by_page.get("clean.html")
    assert report.pages == len(PAGES)
    assert report.tables == 2 and report.overflow == 2 and report.images == 5


def test_check_site_main_summary_and_exit_status(tmp_path, capsys):
    _need_browser()
    raw_table = ICON + "<main><p>| method | return |\n|---|---|\n| dqn | 500 |</p></main>"
    root = _site(tmp_path, {"clean.html": PAGES["clean.html"], "raw_table.html": raw_table})
    assert check_site.main([str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'raw_table.html: markdown table shown as text in p: "| method | return |"'
    assert out[-1].startswith("check_site: 2 pages in Chromium, 0 math elements rendered, 1 tables, 1 images, "
                              "0 overflowing blocks; 1 problem(s)")
    (root / "raw_table.html").unlink()
    assert check_site.main([str(root)]) == 0


def test_check_site_says_how_to_get_a_browser(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    _site(tmp_path, {"clean.html": PAGES["clean.html"]})
    assert check_site.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sudo apt-get install chromium" in err and "pip install playwright" in err
    assert "no-such-browser does not exist" in err
    assert check_site.main([str(tmp_path), "--static"]) == 0


def test_clean_notebook_strips_noise_and_reports_machine_paths(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": 7, "metadata": {"execution": {"t": 1}, "tags": ["x"]},
             "source": "print(1)", "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}]},
            {"cell_type": "code", "execution_count": 8, "metadata": {}, "source": "p",
             "outputs": [{"output_type": "execute_result", "execution_count": 8, "metadata": {},
                          "data": {"text/plain": "'/home/alice/run'"}}]},
        ],
        "metadata": {"widgets": {"state": {}}, "kernelspec": {"name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    problems = clean(path)
    assert problems and "/home/alice/" in problems[0]
    cleaned = json.loads(path.read_text())
    assert "widgets" not in cleaned["metadata"]
    assert [c["execution_count"] for c in cleaned["cells"]] == [1, 2]
    assert cleaned["cells"][0]["metadata"] == {"tags": ["x"]}
    assert cleaned["cells"][1]["outputs"][0]["execution_count"] == 2


def test_the_repository_address_is_one_setting_and_every_chapter_agrees(tmp_path, monkeypatch):
    import tools.set_repository as setting

    assert setting.main(["--check"]) == 0  # every chapter's install cell holds book/repository.txt's address
    # on copies: setting an address writes it into the file and into every chapter, and --check sees drift
    book = tmp_path / "book"
    book.mkdir()
    chapter = book / "01_x.ipynb"
    chapter.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# T"]}],
                                   "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    monkeypatch.setattr(setting, "SETTING", book / "repository.txt")
    monkeypatch.setattr(setting, "CHAPTERS", [chapter])
    assert setting.main(["https://example.org/org/rlbook"]) == 0
    cell = json.loads(chapter.read_text())["cells"][1]
    assert 'REPOSITORY = "https://example.org/org/rlbook"' in "".join(cell["source"])
    assert (book / "repository.txt").read_text().strip() == "https://example.org/org/rlbook"
    (book / "repository.txt").write_text("https://example.org/other\n")
    assert setting.main(["--check"]) == 1
    code = "".join(cell["source"]).replace(setting.MARKER, "")
    namespace = {}
    exec(compile(code.replace("importlib.util.find_spec(\"rlbook\") is None", "False"), "cell", "exec"), namespace)
