"""Stable-Baselines3: training (PPO, A2C), saved models, and the policy a trained model plays."""

from adapters.sb3.trainer import ALGORITHMS, DEFAULT_HYPERPARAMETERS, Sb3Agent, Sb3Policy, Sb3Trainer

__all__ = ["ALGORITHMS", "DEFAULT_HYPERPARAMETERS", "Sb3Agent", "Sb3Policy", "Sb3Trainer"]
