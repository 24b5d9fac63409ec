"""Make the NATS credentials of a deployment: one NKey per identity of the bus.

    .venv/bin/python scripts/nats_credentials.py deploy/secrets          # new keys
    .venv/bin/python scripts/nats_credentials.py deploy/secrets --force  # rotate them

Writes into the directory (created 0700; every file 0600; ``deploy/secrets/`` is ignored by
git, never commit it):

* ``<identity>.nk``: each identity's seed (the secret), e.g. ``operator.nk`` for ``chatctl``;
* ``nats.env``: ``CHAT_NKEY_<IDENTITY>=U…``, the public keys, for the NATS container of
  docker compose (``deploy/nats/nats.conf`` reads them from its environment);
* ``gateway.env``, ``session.env``, ``history.env``: each service's seed as
  ``<SERVICE>_NATS_NKEY_SEED`` for docker compose;
* ``k8s/chat-nats-credentials.yaml``: a Secret (namespace ``chat``) with the services' seeds,
  which the Deployments mount; ``k8s/chat-nats-users.yaml``: a ConfigMap with the public
  keys, for the namespace of NATS (``--nats-namespace``, default ``nats``), which
  ``deploy/nats/chart-values.yaml`` reads.

Existing credentials are kept unless ``--force`` is given (that is a rotation: redeploy NATS
and the services together; docs/security.md, "The bus").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from chat_common.buscredentials import UserKey, new_user_key, write_seed
from chat_common.buspermissions import IDENTITIES, nkey_variable

__all__ = ["main", "write_credentials"]

SERVICES = ("gateway", "session", "history")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _manifest(kind: str, name: str, namespace: str, field: str, data: dict[str, str]) -> str:
    lines = [
        "apiVersion: v1",
        f"kind: {kind}",
        f"metadata: {{name: {name}, namespace: {namespace}}}",
        *(["type: Opaque"] if kind == "Secret" else []),
        f"{field}:",
        *(f"  {key}: {json.dumps(value)}" for key, value in data.items()),
    ]
    return "\n".join(lines) + "\n"


def write_credentials(out: Path, *, nats_namespace: str = "nats") -> dict[str, UserKey]:
    """Make a key per identity and write every file above into ``out``; returns the keys."""
    keys = {ident.name: new_user_key() for ident in IDENTITIES}
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, key in keys.items():
        write_seed(out / f"{name}.nk", key)
    publics = "".join(f"{nkey_variable(name)}={key.public}\n" for name, key in keys.items())
    _write_private(out / "nats.env", publics)
    for service in SERVICES:
        _write_private(
            out / f"{service}.env", f"{service.upper()}_NATS_NKEY_SEED={keys[service].seed}\n"
        )
    seeds = {service: keys[service].seed for service in SERVICES}
    _write_private(
        out / "k8s" / "chat-nats-credentials.yaml",
        _manifest("Secret", "chat-nats-credentials", "chat", "stringData", seeds),
    )
    _write_private(
        out / "k8s" / "chat-nats-users.yaml",
        _manifest(
            "ConfigMap",
            "chat-nats-users",
            nats_namespace,
            "data",
            {name: key.public for name, key in keys.items()},
        ),
    )
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="directory to write into (e.g. deploy/secrets)")
    parser.add_argument("--force", action="store_true", help="replace existing keys (rotate)")
    parser.add_argument("--nats-namespace", default="nats", help="namespace of NATS (k8s)")
    args = parser.parse_args(argv)
    if (args.out / "nats.env").exists() and not args.force:
        print(f"{args.out} already holds NATS credentials; --force replaces them", file=sys.stderr)
        return 1
    keys = write_credentials(args.out, nats_namespace=args.nats_namespace)
    for name, key in keys.items():
        print(f"{name:<9} {key.public}  seed: {args.out / (name + '.nk')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
