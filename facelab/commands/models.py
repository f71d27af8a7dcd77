"""`facelab models check`: which diffusion-engine weights are present under models/, and where to get
the missing ones. Reads the file system only; it never downloads anything."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.diffusion.availability import unavailable_reason
from engine.diffusion.layout import ModelLayout
from facelab.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="check: list present and missing weight files")
    parser.add_argument(
        "--models-dir", type=Path, help="default: engine.diffusion.models_dir from the config"
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None).engine.diffusion
    if args.models_dir is not None:
        settings = settings.model_copy(update={"models_dir": args.models_dir})
    items = ModelLayout(settings.models_dir).items()
    for item in items:
        mark = "ok     " if item.present else "MISSING"
        print(f"{mark} {item.path}  ({item.what})")
    missing = [item for item in items if not item.present]
    for source in dict.fromkeys(item.source for item in missing):
        print(f"get from {source}:")
        for item in missing:
            if item.source == source:
                print(f"    {item.paths[0]}")
    reason = unavailable_reason(settings)
    print("diffusion engine: ready" if reason is None else f"diffusion engine: unavailable ({reason})")
    return 0 if not missing else 1
