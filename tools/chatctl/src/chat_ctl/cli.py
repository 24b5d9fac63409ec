"""``chatctl``: the operator's entry point (commands are added in their own modules)."""

from __future__ import annotations

import typer

__all__ = ["app", "main"]

app = typer.Typer(help="Ask the running chat backend about itself.", no_args_is_help=True)


def main() -> None:
    """Console entry point ``chatctl``."""
    app()
