"""Argument types the subcommands share: each turns text into a value or raises
``argparse.ArgumentTypeError`` with a message saying what was wrong."""

from __future__ import annotations

import argparse


def non_negative_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {number}")
    return number


def positive_int(text: str) -> int:
    number = non_negative_int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number
