"""One file per model: Stable-Baselines3's zip, plus what acting with the model needs.

SB3 saves the network and the algorithm's state; it does not know how observations were
normalised (``VecNormalize`` keeps that in the environment wrapper) or whether the policy was
trained with action masks. Both are written into the same zip as one JSON entry,
``kalshiflow.json`` (SB3's loader reads only its own entries and ignores it), so a model file is
complete on its own: the registry keeps one path per version, and training, evaluation and the
live actor normalise an observation the same way.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from domain.features import FEATURE_NAMES

# 2: the observation's feature names are recorded (a model is refused by code that builds others).
FORMAT_VERSION = 2
METADATA_ENTRY = "kalshiflow.json"

# The algorithm classes by the name a model file records.
ALGORITHM_CLASSES: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "maskable-ppo": MaskablePPO, "a2c": A2C}


class ModelFileError(ValueError):
    """A file that is not a model this project saved (or saved by an incompatible version)."""


@attrs.frozen(eq=False)
class ObservationNormalizer:
    """``VecNormalize``'s observation transform, frozen: ``clip((x - mean) / sqrt(var + eps))``."""

    mean: np.ndarray
    var: np.ndarray
    clip: float
    epsilon: float

    @classmethod
    def from_vec_normalize(cls, environment: VecNormalize) -> ObservationNormalizer:
        statistics = environment.obs_rms
        return cls(
            np.array(statistics.mean, dtype=np.float64),
            np.array(statistics.var, dtype=np.float64),
            float(environment.clip_obs),
            float(environment.epsilon),
        )

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(observation, dtype=np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        # Python floats print their shortest round-tripping form: the JSON reloads bit for bit.
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "clip": self.clip, "epsilon": self.epsilon}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObservationNormalizer:
        return cls(
            np.array(data["mean"], dtype=np.float64),
            np.array(data["var"], dtype=np.float64),
            float(data["clip"]),
            float(data["epsilon"]),
        )


@attrs.frozen
class ModelMetadata:
    algorithm: str  # a key of ALGORITHM_CLASSES
    masked: bool  # trained with action masks: act with them too
    normalizer: ObservationNormalizer | None = attrs.field(default=None, eq=False)


def save_model(model: BaseAlgorithm, path: str | Path, metadata: ModelMetadata) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    entry = {
        "format": FORMAT_VERSION,
        "algorithm": metadata.algorithm,
        "masked": metadata.masked,
        "observation_normalization": None if metadata.normalizer is None else metadata.normalizer.as_dict(),
        "observation_features": list(FEATURE_NAMES),
    }
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(METADATA_ENTRY, json.dumps(entry))


def load_model(path: str | Path) -> tuple[BaseAlgorithm, ModelMetadata]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            entry = json.loads(archive.read(METADATA_ENTRY))
    except (zipfile.BadZipFile, KeyError) as error:
        raise ModelFileError(f"{path} is not a kalshiflow-rl model file ({error})") from None
    if entry.get("format") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format {entry.get('format')!r}, this code reads {FORMAT_VERSION}: "
            "retrain the model with this version"
        )
    features = tuple(entry["observation_features"])
    if features != FEATURE_NAMES:
        changed = sorted(set(features) ^ set(FEATURE_NAMES)) or ["their order"]
        raise ModelFileError(
            f"{path}: the model was trained on other observation features than this code builds "
            f"(differing: {', '.join(changed)}): retrain the model with this version"
        )
    algorithm = entry["algorithm"]
    if algorithm not in ALGORITHM_CLASSES:
        raise ModelFileError(f"{path}: unknown algorithm {algorithm!r}; known: {sorted(ALGORITHM_CLASSES)}")
    normalization = entry["observation_normalization"]
    metadata = ModelMetadata(
        algorithm=algorithm,
        masked=bool(entry["masked"]),
        normalizer=None if normalization is None else ObservationNormalizer.from_dict(normalization),
    )
    return ALGORITHM_CLASSES[algorithm].load(path, device="cpu"), metadata
