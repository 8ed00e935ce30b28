"""The CLI's plain console prints to a pipe exactly what rich would, without importing rich."""

from __future__ import annotations

import io
import random
import subprocess
import sys

import pytest
from rich.console import Console
from rich.markup import escape as rich_escape

from nni_pl.cli._common import console, escape, plain

PIECES = [
    "[bold]",
    "[/]",
    "[red on white]",
    "\\",
    "\\\\",
    "[",
    "]",
    "x",
    " ",
    "[0.1]",
    "[/bold]",
    "a=b",
    "[@click]",
    "é",
]


def _rich_plain(markup: str) -> str:
    out = io.StringIO()
    Console(
        file=out, highlight=False, soft_wrap=True, emoji=False, force_terminal=False, color_system=None
    ).print(markup)
    return out.getvalue()[:-1]


@pytest.mark.parametrize("seed", range(5))
def test_escape_and_plain_agree_with_rich(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))
        assert escape(text) == rich_escape(text), text
        assert plain(escape(text)) == _rich_plain(rich_escape(text)), text
        markup = f"[bold]{escape(text)}[/] and {escape(text)}"
        assert plain(markup) == _rich_plain(markup), markup


def test_a_pipe_gets_plain_lines_and_tables_still_render(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.table import Table

    out = console()
    out.print(f"experiment [bold]{escape('x[bold]y')}[/] DONE")
    table = Table("a")
    table.add_row("1")
    out.print(table)
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "experiment x[bold]y DONE"
    assert "1" in printed.splitlines()[-2] or "1" in printed


def test_printing_a_line_imports_no_rich() -> None:
    code = (
        "import sys\n"
        "from nni_pl.cli._common import console, escape\n"
        "console().print('[bold]hi[/] ' + escape('[x]'))\n"
        "assert not any(m == 'rich' or m.startswith('rich.') for m in sys.modules), 'rich imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi [x]\n"
