"""MkDocs hook: the command-line reference, rendered from ``ov_causal.cli``'s argparse parser at build time.

A page containing the marker ``<!-- cli-reference -->`` gets it replaced by ``ov-causal --help`` and, for
every subcommand the parser has (nested ones too), its description, usage line and a table of its
arguments. Nothing is written by hand, so the page cannot drift from the parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MARKER = "<!-- cli-reference -->"
WIDTH = "100"  # argparse wraps help text to $COLUMNS


def _parser() -> argparse.ArgumentParser:
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from ov_causal.cli import build_parser as build

    return build()


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) for each subcommand, in the order the parser lists them."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((name, helps.get(name, ""), sub))
    return found


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _arguments_table(parser: argparse.ArgumentParser) -> str:
    rows = ["| argument | choices | description (and default) |", "|---|---|---|"]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)  # the value's name is in the usage line above
        else:
            name = action.metavar or action.dest
            if action.nargs in ("?", "*"):
                name = f"[{name}]"
            if action.nargs in ("+", "*"):
                name += " ..."
        choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
        help_text = formatter._expand_help(action) if action.help else ""  # %(default)s filled in, %% -> %
        if action.required and action.option_strings:
            help_text = f"Required. {help_text}".strip()
        rows.append(f"| `{_cell(name)}` | {_cell(choices)} | {_cell(help_text)} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def _render(parser: argparse.ArgumentParser, path: str, level: int) -> list[str]:
    parts = []
    for name, help_text, sub in _subcommands(parser):
        command = f"{path} {name}"
        parts += [f"{'#' * level} `{command}`", ""]
        if help_text:
            parts += [help_text[0].upper() + help_text[1:] + ".", ""]
        parts += ["```text", sub.format_usage().strip(), "```", ""]
        table = _arguments_table(sub)
        if table:
            parts += [table, ""]
        parts += _render(sub, command, level + 1)
    return parts


def cli_reference() -> str:
    """The Markdown of the whole reference."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = _parser()
        lines = ["```text", f"$ {parser.prog} --help", parser.format_help().strip(), "```", ""]
        lines += _render(parser, parser.prog, 2)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (mkdocs hook signature)
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
