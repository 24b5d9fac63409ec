"""Print the configuration table of every service (Markdown), from the settings classes.

    .venv/bin/python scripts/config_table.py            # print it
    .venv/bin/python scripts/config_table.py --write    # update README.md in place

The README embeds this table between the ``config-table`` markers; a unit test checks that
it is up to date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic_settings import BaseSettings

from chat_gateway.settings import GatewaySettings
from chat_history.settings import HistorySettings
from chat_session.settings import SessionSettings

__all__ = ["render"]

SERVICES: list[type[BaseSettings]] = [GatewaySettings, SessionSettings, HistorySettings]


def _default(field: object) -> str:
    default = getattr(field, "default", None)
    if getattr(field, "default_factory", None) is not None:
        return "`<host>-<pid>`"
    if hasattr(default, "get_secret_value"):
        default = default.get_secret_value()
    return f"`{default}`"


def render() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for cls in SERVICES:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            desc = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{prefix}{name.upper()}` | {_default(field)} | {desc} |")
    return "\n".join(lines)


def write_readme(readme: Path) -> None:
    text = readme.read_text()
    block = f"<!-- config-table:start -->\n{render()}\n<!-- config-table:end -->"
    pattern = re.compile(r"<!-- config-table:start -->.*<!-- config-table:end -->", re.S)
    readme.write_text(pattern.sub(lambda _: block, text))


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme(Path(__file__).resolve().parents[1] / "README.md")
    else:
        print(render())
