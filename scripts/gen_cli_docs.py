"""Write docs/cli.md from the `minimind` argparse parsers, so the CLI reference cannot drift from the code.

    python scripts/gen_cli_docs.py           # rewrite docs/cli.md
    python scripts/gen_cli_docs.py --check   # exit 1 if docs/cli.md is out of date (tests/test_packaging.py)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "cli.md"
WIDTH = "100"  # argparse wraps at $COLUMNS: fix it so the file does not depend on the terminal

HEADER = """# `minimind` command reference

Generated from the argparse parsers by `python scripts/gen_cli_docs.py`; do not edit by hand (a test checks
that this file matches the code). Run any command from the repository root, or after `pip install -e .`
(`minimind ...`); without installing, `python -m core ...` is the same command.
Training settings beyond the flags are described in [training.md](training.md); the desktop app is
`python app.py` (or `minimind-studio`), the web demo `python -m webdemo --model PATH`.
"""


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each direct sub-command, in registration order."""
    out = []
    for action in parser._actions:  # argparse keeps sub-parsers only on this private list
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def walk(parser: argparse.ArgumentParser, path: list[str]):
    yield path, parser
    for name, _, sub in subcommands(parser):
        yield from walk(sub, path + [name])


def render() -> str:
    os.environ["COLUMNS"] = WIDTH
    sys.path.insert(0, str(REPO))
    from core.cli import build_parser

    root = build_parser()
    parts = [HEADER, "## Commands\n"]
    parts += [f"- [`minimind {' '.join(p)}`](#{anchor(p)})" for p, _ in walk(root, []) if p]
    parts.append("")
    for path, parser in walk(root, []):
        title = " ".join(["minimind", *path])
        level = "#" * min(2 + len(path), 4)
        parts.append(f"{level} `{title}`\n")
        parts.append("```text\n" + parser.format_help().rstrip() + "\n```\n")
    return "\n".join(parts)


def anchor(path: list[str]) -> str:
    """GitHub's heading anchor for `minimind a b` (backticks and spaces dropped/dashed)."""
    return "-".join(["minimind", *path]).lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when docs/cli.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date with the parsers: run `python scripts/gen_cli_docs.py`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
