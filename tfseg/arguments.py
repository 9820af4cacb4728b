"""argparse with the command line's contract: a bad argument is one line on stderr, exit 2.

argparse's own parser prints the whole usage block before its message; tfseg's parsers
print only the message, naming the command, and point at ``--help`` for the usage.
"""

from __future__ import annotations

import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if text.strip().isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: a whole number of at least 1")


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    if text.strip().isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: a whole number of at least 0")


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if 0 < value < float("inf"):
        return value
    raise argparse.ArgumentTypeError(f"{text!r}: a number above 0")


def json_object(text: str) -> dict:
    """An argparse type: a JSON object (``{"unet": {"base_filters": 32}}``)."""
    import json

    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: not JSON ({err})") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError(f"{text!r}: a JSON object of objects, e.g. "
                                         '\'{"unet": {"base_filters": 32}}\'')
    return value
