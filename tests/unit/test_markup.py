from __future__ import annotations

from shared.relay.markup import BLANK, MarkdownEscaper, by_risk, cut


def test_risk_bands() -> None:
    bands = [by_risk(r, "high", "medium", "low", "none") for r in (None, 0, 39, 40, 69, 70, 100)]
    assert bands == ["none", "low", "low", "medium", "medium", "high", "high"]


def test_cut_never_splits_a_piece() -> None:
    assert cut(["ab", "c"], 3) == "abc"
    assert cut(["\\*", "a", "b", "c"], 3) == "\\*…"
    assert cut(["a", "\\*", "b"], 3) == "a…"
    assert cut(["😀", "a"], 2, measure=lambda p: 2 if ord(p[0]) > 0xFFFF else 1) == "…"


def test_markdown_escaper() -> None:
    md = MarkdownEscaper("\\*_", "-#", lambda char, after: after in BLANK or after == char)
    assert md.escape("a*b_c") == "a\\*b\\_c"
    assert md.escape("- item\n  # head\nx-y") == "\\- item\n  \\# head\nx-y"
    assert md.escape("1. one") == "1\\. one"
    assert md.escape("see https://x.example/a_b*c now*") == "see https://x.example/a_b*c now\\*"
