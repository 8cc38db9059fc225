"""Versioned schema migrations: one directory of numbered SQL files per backend.

``sqlite/NNNN_description.sql`` and ``postgres/NNNN_description.sql`` describe the same schema
version by version; :mod:`adapters.storage.migrations.runner` applies the pending ones.
"""

from __future__ import annotations

import re
from importlib import resources

import attrs

BACKENDS = ("sqlite", "postgres")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


class MigrationError(RuntimeError):
    """The migration files, or the database's record of them, are inconsistent."""


def load_migrations(backend: str) -> tuple[Migration, ...]:
    """Every migration of ``backend``, by version; versions must run 1, 2, 3, ... without gaps."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown storage backend {backend!r}; expected one of {BACKENDS}")
    migrations = []
    for entry in resources.files(__name__).joinpath(backend).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{backend} migration {entry.name!r} is not named NNNN_description.sql")
        migrations.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise MigrationError(f"{backend} migration versions must be 1..N without gaps, found {versions}")
    return tuple(migrations)


def pending_migrations(backend: str, applied: set[int]) -> tuple[Migration, ...]:
    """The migrations not yet in ``applied``; refuses a database newer than this code."""
    migrations = load_migrations(backend)
    unknown = sorted(applied - {migration.version for migration in migrations})
    if unknown:
        raise MigrationError(
            f"the database has schema versions {unknown} that this code does not know; "
            "it was migrated by a newer kalshiflow-rl"
        )
    return tuple(migration for migration in migrations if migration.version not in applied)
