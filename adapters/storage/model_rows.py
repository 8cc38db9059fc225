"""Model-registry rows <-> :class:`ModelRecord`, and the checks both registries make."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from domain.ports import MODEL_STATUSES, PRUNABLE_STATUSES, ModelNotFound, ModelRecord

# rl_models columns a ModelRecord is built from, in order.
MODEL_COLUMNS = (
    "id", "model_name", "version", "algorithm", "status", "path", "created_ms", "hyperparameters", "metrics"
)

_PRUNABLE = ", ".join(f"'{status}'" for status in PRUNABLE_STATUSES)


def prunable_ids_sql(placeholder_keep: str, placeholder_name: str | None) -> str:
    """Ids of the prunable versions beyond the ``keep`` newest of their name (of one name when
    ``placeholder_name`` is given). Both backends have window functions."""
    one_name = f" AND model_name = {placeholder_name}" if placeholder_name else ""
    return (
        "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY model_name ORDER BY version DESC) AS newer"
        f" FROM rl_models WHERE status IN ({_PRUNABLE}){one_name}) AS ranked WHERE newer > {placeholder_keep}"
    )


def still_prunable_sql() -> str:
    """The condition a row must still meet when it is deleted (its status may have changed)."""
    return f"status IN ({_PRUNABLE})"


# A version that paper-traded keeps its row: deleting it would cascade to that history.
PAPER_TRADED_SQL = (
    "EXISTS (SELECT 1 FROM rl_trading_episodes AS episodes"
    " WHERE episodes.model_id = rl_models.id AND episodes.mode = 'paper')"
)


def by_name_and_version(records: Iterable[ModelRecord]) -> tuple[ModelRecord, ...]:
    return tuple(sorted(records, key=lambda record: (record.name, record.version)))


def next_version_sql(placeholder_name: str) -> str:
    """Hands out the name's next version number (the row lock serialises registrations)."""
    return (
        f"INSERT INTO rl_model_names (model_name, last_version) VALUES ({placeholder_name}, 1)"
        " ON CONFLICT (model_name) DO UPDATE SET last_version = rl_model_names.last_version + 1"
        " RETURNING last_version"
    )


def bump_generation_sql(placeholder_name: str) -> str:
    """The name's row exists: it was made when its first version was registered."""
    return f"UPDATE rl_model_names SET active_generation = active_generation + 1 WHERE model_name = {placeholder_name}"


def active_generation_sql(placeholder_name: str) -> str:
    return f"SELECT active_generation FROM rl_model_names WHERE model_name = {placeholder_name}"


def changes_active(old_status: str | None, new_status: str | None) -> bool:
    """Whether a status change moves the name's active version (``old_status`` None: a new row)."""
    if new_status is None or new_status == old_status:
        return False
    return new_status == "active" or old_status == "active"


def checked_keep(keep: int) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ValueError(f"keep must be a whole number of versions >= 0, got {keep!r}")
    return keep


def checked_status(status: str) -> str:
    if status not in MODEL_STATUSES:
        raise ValueError(f"model status must be one of {', '.join(MODEL_STATUSES)}; got {status!r}")
    return status


def checked_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"a model's {what} must be a non-empty string, got {value!r}")
    return value


def json_object(mapping: Mapping[str, Any], what: str) -> str:
    """A mapping as JSON text; numpy scalars (as training metrics often are) become numbers."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(mapping).__name__}")
    try:
        return orjson.dumps(dict(mapping), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as error:  # orjson.JSONEncodeError is a TypeError
        raise ValueError(f"{what} cannot be stored as JSON: {error}") from None


def not_found(model_id: int) -> ModelNotFound:
    return ModelNotFound(f"no model with id {model_id}")


def check_promotable(record: ModelRecord) -> None:
    if record.status == "failed":
        raise ValueError(
            f"model {record.name} v{record.version} (id {record.model_id}) failed; refusing to make it active"
        )


def model_record(row: Sequence[Any]) -> ModelRecord:
    """``row`` holds :data:`MODEL_COLUMNS`."""
    model_id, name, version, algorithm, status, path, created_ms, hyperparameters, metrics = row
    return ModelRecord(
        model_id=model_id,
        name=name,
        version=version,
        algorithm=algorithm,
        status=status,
        path=path,
        created_ms=created_ms,
        hyperparameters=orjson.loads(hyperparameters),
        metrics=orjson.loads(metrics),
    )
