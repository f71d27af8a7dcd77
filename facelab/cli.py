"""`facelab` command line. Each sub-command lives in its own module under facelab/commands/,
exposing `add_arguments(parser)` and `run(args) -> int`; modules are imported only when their
command runs, so `facelab apply` never loads the chat libraries (or torch)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, str] = {
    "apply": "put the makeup of a reference photo (or a preset look) on a selfie",
    "batch": "run many selfie/reference pairs from a CSV file",
    "serve": "start the chat bots (and the web playground) with the engine process",
    "worker": "run an engine worker on the Redis job queue",
    "doctor": "check config, database, Redis and models, and say what is wrong",
    "models": "list which optional model weights are present under models/",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only `command`'s module is imported to declare its own arguments."""
    parser = argparse.ArgumentParser(prog="facelab", description="Face Lab virtual makeup try-on.")
    parser.add_argument("--config", help="TOML settings file (default: ./config.toml if present)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(_module_name(name)).add_arguments(command_parser)
    return parser


def _module_name(command: str) -> str:
    return f"facelab.commands.{command}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first word naming a command picks the module, so `facelab apply --help` shows its options.
    command = next((word for word in argv if word in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    module = importlib.import_module(_module_name(args.command))
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
