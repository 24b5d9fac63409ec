"""Print the configuration table of every service (Markdown), from the settings classes.

    .venv/bin/python scripts/config_table.py

The README embeds this table between the ``config-table`` markers; a unit test checks that
it is up to date.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    print(render())
