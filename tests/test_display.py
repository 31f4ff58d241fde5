"""rlbook.display: code shown in a chapter fits the website's column and means what the package's code means."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from rlbook.agents.dqn import DQNAgent, DQNConfig
from rlbook.display import WIDTH, fit_source, markdown_table, median_iqr, show_source, source_lines
from rlbook.tabular import ModelBasedAgent
from rlbook.train import Trainer

SHOWN = [DQNAgent.compute_targets, DQNAgent.td_losses, DQNAgent.compute_loss, DQNAgent.gradient_step,
         DQNAgent.update, ModelBasedAgent.observe, ModelBasedAgent.act_batch, ModelBasedAgent.model,
         Trainer.run, DQNConfig.cartpole]


def _without_docstrings(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            body[0].value.value = " ".join(body[0].value.value.split())
    return ast.dump(tree)


@pytest.mark.parametrize("func", SHOWN, ids=lambda f: f.__qualname__)
def test_shown_source_fits_and_means_the_same(func):
    original = textwrap.dedent(inspect.getsource(func))
    lines = source_lines(func)
    too_long = [line for line in lines if len(line) > WIDTH]
    assert not too_long, too_long
    # same code (docstrings compared word by word: they were re-wrapped)
    assert _without_docstrings(ast.parse("\n".join(lines))) == _without_docstrings(ast.parse(original))


def test_long_comments_and_docstrings_are_rewrapped_not_cut():
    words = " ".join(f"word{i}" for i in range(40))
    source = f'def f(x):\n    """{words}"""\n    return x + 1  # {words}\n'
    fitted = fit_source(source, width=40)
    assert max(map(len, fitted.splitlines())) <= 40
    text = " ".join(fitted.replace('"""', " ").replace("#", " ").split())
    assert text.count("word39") == 2 and "return x + 1" in fitted


def test_show_source_with_start_and_a_missing_start(capsys):
    show_source(ModelBasedAgent.model, start="totals")
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "    ..." and "totals" in out[2]
    with pytest.raises(ValueError, match="no line of .* contains 'no such line'"):
        source_lines(ModelBasedAgent.model, start="no such line")


def test_markdown_table_refuses_ragged_rows_and_escapes_bars(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj.data))
    markdown_table(("a", "b"), [("1", "x|y")])
    assert shown == ["| a | b |\n|---|---|\n| 1 | x\\|y |"]
    with pytest.raises(ValueError, match="row 0 has 1 cells, the header 2"):
        markdown_table(("a", "b"), [("1",)])


def test_median_iqr():
    assert median_iqr({"median": 1234.0, "iqr": [1000.0, 2000.5]}) == "1,234 [1,000, 2,000]"
    assert median_iqr({"median": None, "iqr": [None, None]}) == "--"
