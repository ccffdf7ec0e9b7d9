"""Markdown for the notebooks and the reports: fenced code blocks, a rendered example (docstring,
output, reference), tables and their cells."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from utils.data.tokenizer import detokenize


def code_block(text: str, language: str = "python") -> str:
    """A Markdown fenced block that survives backticks inside ``text``."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def render_example(row: dict, hypothesis: Sequence[str], title: str = "") -> str:
    """Markdown: the docstring, the detokenized output and the detokenized reference."""
    out = detokenize(list(hypothesis))
    head = f"**{title}** " if title else ""
    return (f"{head}`{row.get('func_name', '')}` — *{row.get('summary') or ' '.join(row['docstring_tokens'])}*\n\n"
            f"Model output:\n\n{code_block(out) if out.strip() else '*(empty output)*'}\n\n"
            f"Reference:\n\n{code_block(detokenize(list(row['code_tokens'])))}")


def cell(value: object, digits: int | None) -> str:
    """A table cell: ``digits`` decimals (None: a whole number with thousands separators), blank for NaN."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if digits is None:
        return f"{int(value):,}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if digits == 0 and float(value).is_integer():
            return f"{int(value):,}"
        rounded = round(float(value), digits) or 0.0  # -0.0 (a tiny negative figure) shows as 0.000
        return f"{rounded:,.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A GitHub Markdown table; ``|`` inside a cell is escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])
