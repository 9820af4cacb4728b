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
