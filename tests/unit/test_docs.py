"""The README stays true: its settings table is the settings object's, its two commands are the Makefile's."""

from __future__ import annotations

from pathlib import Path

from opscenter.docs import render_readme

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render_readme(text) == text, "README settings table is stale: run `python -m opscenter.docs`"


def test_quick_start_commands_and_ci() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quick and "make test" in quick
    makefile = (ROOT / "Makefile").read_text()
    assert "opscenter up --simulate" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "exec make test", ".ci/run runs exactly the README's test command"
