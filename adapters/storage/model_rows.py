"""Model-registry rows <-> :class:`ModelRecord`, and the checks both registries make."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from domain.ports import MODEL_STATUSES, ModelNotFound, ModelRecord

# rl_models columns a ModelRecord is built from, in order.
MODEL_COLUMNS = (
    "id", "model_name", "version", "algorithm", "status", "path", "created_ms", "hyperparameters", "metrics"
)


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
