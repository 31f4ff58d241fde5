"""Showing code and tables in a chapter so that they fit the website's text column.

The rendered book's column holds about 77 characters of code. :func:`show_source` prints a function of the
package (written to a 120-character line) re-wrapped to that width; :func:`markdown_table` shows rows of
strings as a table the website renders as HTML, not as text in a code block; :func:`median_iqr` formats
one metric of a results file as "median [q1, q3]".
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

#: Characters of code that fit the website's text column.
WIDTH = 77


def _rewrap(lines: list[str], width: int) -> list[str]:
    """Re-wrap text lines (a docstring or a block of comments) to ``width``, paragraph by paragraph, each
    paragraph keeping its indent and its ``# `` prefix if it has one."""
    out, para = [], []

    def prefix(line: str) -> str:
        stripped = line.lstrip()
        return line[:len(line) - len(stripped)] + ("# " if stripped.startswith("#") else "")

    def flush():
        if para:
            first = prefix(para[0])
            text = " ".join(p.strip().removeprefix("#").strip() for p in para)
            out.extend(textwrap.wrap(text, width, initial_indent=first, subsequent_indent=first,
                                     break_long_words=False, break_on_hyphens=False))
            para.clear()

    for line in lines:
        if line.strip() in ('"""', "'''"):  # closing quotes on their own line stay there
            flush()
            out.append(line)
            continue
        blank = not line.strip().removeprefix("#").strip()
        if para and (blank or prefix(line) != prefix(para[-1])):
            flush()
        if blank:
            out.append(line.rstrip())
        else:
            para.append(line)
    flush()
    return out


def _comments_above(source: str) -> str:
    """Move each comment that follows code on its line to a line of its own above that line."""
    import io
    import tokenize

    lines = source.splitlines()
    moves = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            row, col = tok.start
            if tok.type == tokenize.COMMENT and lines[row - 1][:col].strip():
                moves[row - 1] = col
    except (tokenize.TokenError, SyntaxError):
        return source
    out = []
    for k, line in enumerate(lines):
        if k in moves:
            code = line[:moves[k]].rstrip()
            out.append(" " * (len(code) - len(code.lstrip())) + line[moves[k]:])
            out.append(code)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def fit_source(source: str, width: int = WIDTH) -> str:
    """``source`` (Python code) reformatted to lines of at most ``width`` characters: the code by Black
    (``line_length=width``; the code's meaning is unchanged), then docstrings and comments that are still too
    long re-wrapped as text. A line that still does not fit (a long string, say) is left as it is."""
    import black

    try:
        code = black.format_str(_comments_above(source), mode=black.Mode(line_length=width))
    except black.parsing.InvalidInput as error:
        raise ValueError(f"not Python code that Black can format: {error}") from None
    lines, out, k = code.splitlines(), [], 0
    while k < len(lines):
        stripped = lines[k].lstrip()
        quote = stripped[:3]
        if quote in ('"""', "'''") and stripped.count(quote) == 1:  # a docstring over several lines
            end = next((j for j in range(k + 1, len(lines)) if quote in lines[j]), None)
            if end is not None:
                block = lines[k:end + 1]
                out.extend(_rewrap(block, width) if max(map(len, block)) > width else block)
                k = end + 1
                continue
        if stripped.startswith("#"):  # a block of comment lines
            end = k
            while end + 1 < len(lines) and lines[end + 1].lstrip().startswith("#"):
                end += 1
            block = lines[k:end + 1]
            out.extend(_rewrap(block, width) if max(map(len, block)) > width else block)
            k = end + 1
            continue
        if len(lines[k]) > width and quote in ('"""', "'''"):
            out.extend(_rewrap([lines[k]], width))
            k += 1
            continue
        out.append(lines[k])
        k += 1
    return "\n".join(out)


def source_lines(func: Callable[..., Any], start: str | None = None, width: int = WIDTH) -> list[str]:
    """The source of ``func``, dedented and fitted to ``width`` (:func:`fit_source`): all of it, or its
    first line, ``...`` and the lines from the first one that contains ``start``. Docstrings are kept."""
    lines = fit_source(textwrap.dedent(inspect.getsource(func)), width).splitlines()
    if start is not None:
        at = next((i for i, line in enumerate(lines) if start in line), None)
        if at is None:
            raise ValueError(f"no line of {func.__qualname__} contains {start!r}")
        lines = [lines[0], "    ...", *lines[at:]]
    return lines
def show_source(*funcs: Callable[..., Any], start: str | None = None, width: int = WIDTH) -> None:
    """Print the source of each function in ``funcs`` (see :func:`source_lines`), a blank line between."""
    print("\n\n".join("\n".join(source_lines(f, start, width)) for f in funcs))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Display ``rows`` under ``header`` as a Markdown table (rendered as HTML in Jupyter and on the website).

    Cells are converted with ``str``; a ``|`` inside a cell is escaped. Raises ``ValueError`` if a row has
    another number of cells than the header."""
    from IPython.display import Markdown, display

    def cells(row):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"

    for k, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {k} has {len(row)} cells, the header {len(header)}: {row!r}")
    lines = [cells(header), "|" + "---|" * len(header), *(cells(r) for r in rows)]
    display(Markdown("\n".join(lines)))


def median_iqr(entry: dict, fmt: str = "{:,.0f}") -> str:
    """``"median [q1, q3]"`` of one metric of a results file (see :func:`rlbook.results.summarize`);
    ``"--"`` when the median is missing (no run solved)."""
    if entry.get("median") is None:
        return "--"
    low, high = (fmt.format(q) for q in entry["iqr"])
    return f"{fmt.format(entry['median'])} [{low}, {high}]"


def solved_runs(entry: dict) -> str:
    """``"solved/runs"`` of one metric of a results file."""
    return f"{entry['solved']}/{entry['runs']}"
