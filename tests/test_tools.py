"""The repository tools: the built-site checker and the notebook cleaner."""

import json

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
