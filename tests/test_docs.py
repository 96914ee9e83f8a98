"""The README stays true: CI runs exactly its test command, and every command it shows parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from srtool.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _code_lines() -> list[str]:
    blocks = re.findall(r"```(?:bash|console|sh)?\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command() -> None:
    section = README.split("## Tests", 1)[1]
    command = re.search(r"```bash\n(.+?)\n```", section, flags=re.S).group(1).strip()
    ci_script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci_script.splitlines()


def test_every_srtool_command_in_the_readme_is_valid() -> None:
    """Each `srtool ...` line names a real command and only options that command accepts."""
    runner = CliRunner()
    commands = [line for line in _code_lines() if line.startswith("srtool ")]
    assert len(commands) >= 5
    for line in commands:
        words = shlex.split(line.split(" #", 1)[0])[1:]
        path = [w for w in words[:2] if not w.startswith("-")][:2]
        result = runner.invoke(app, [*path, "--help"])
        if result.exit_code != 0:  # a sub-command group: only the first word is a command
            result = runner.invoke(app, [path[0], "--help"])
        assert result.exit_code == 0, f"{line}: {result.output}"
        for option in (w.split("=", 1)[0] for w in words if w.startswith("--")):
            assert option in result.output, f"README uses {option} which `{line}` does not take"
