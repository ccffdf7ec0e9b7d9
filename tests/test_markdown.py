"""Markdown rendering of examples."""
from __future__ import annotations

from utils.evaluation.markdown import code_block, render_example


def test_code_block_and_render_example(rows):
    assert code_block("x = 1\n") == "```python\nx = 1\n```"
    block = code_block('s = """```"""')
    assert block.startswith("````python\n") and block.endswith("\n````")
    md = render_example(rows[0], rows[0]["code_tokens"], title="ok")
    assert md.count("def add(a, b):") == 2 and "**ok**" in md
    assert "*(empty output)*" in render_example(rows[0], [])
