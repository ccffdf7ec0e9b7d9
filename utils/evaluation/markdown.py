"""Markdown for the notebooks: fenced code blocks and a rendered example (docstring, output, reference)."""
from __future__ import annotations

from collections.abc import Sequence

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
