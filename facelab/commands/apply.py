"""`facelab apply`: put a reference photo's makeup (or a preset look) on a selfie."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.api import MODES, REGIONS, MakeupEngine, MakeupRequest, MakeupResult
from engine.backends import EngineUnavailableError, create_engine
from engine.compare import before_after
from engine.errors import EngineError
from engine.looks import load_looks
from engine.settings import EngineSettings
from facelab.settings import load_settings

LOOK_PREFIX = "look:"  # a reference written as look:NAME means a preset look
PAINT_LEFT_OUT = "note: the reference wears face paint that natural mode leaves out; --mode full carries it"
OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


class CommandError(Exception):
    """Bad command-line input, reported as one line and a non-zero exit."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("selfie", type=Path, help="photo of the face to make up")
    parser.add_argument("reference", nargs="?", help="photo of a made-up face (or use --look)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="result image (.jpg, .png, .webp)")
    parser.add_argument("--look", help=f"preset look instead of a reference: {', '.join(load_looks())}")
    parser.add_argument("--strength", type=float, default=1.0, help="0 = unchanged, 1 = full makeup")
    parser.add_argument("--regions", help=f"comma-separated subset of {','.join(REGIONS)} (default: all)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="natural",
        help="natural: makeup on the selfie's own skin; full: the reference's whole look, face paint too",
    )
    parser.add_argument("--compare", action="store_true", help="also write OUTPUT_compare: before | after")


def run(args: argparse.Namespace) -> int:
    try:
        if (args.reference is None) == (args.look is None):
            raise CommandError("give either a REFERENCE photo or --look NAME")
        reference = LOOK_PREFIX + args.look if args.look else args.reference
        settings = engine_settings(args)
        engine = create_engine(settings)
        regions = parse_regions(args.regions)
        result = make_up_files(
            engine, args.selfie, reference, args.strength, regions, args.output, mode=args.mode
        )
        if args.compare:
            write_comparison(settings, args.selfie, result, args.output)
    except (CommandError, EngineError, EngineUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({result.width}x{result.height}, {result.faces} face(s))")
    if result.paint_left_out:
        print(PAINT_LEFT_OUT)
    return 0


def engine_settings(args: argparse.Namespace) -> EngineSettings:
    try:
        return load_settings(Path(args.config) if args.config else None).engine
    except (OSError, ValueError) as error:
        raise CommandError(f"bad config: {error}") from error


def parse_regions(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(REGIONS))
    if unknown:
        raise CommandError(f"unknown region(s) {', '.join(unknown)}; choose from {', '.join(REGIONS)}")
    return dict.fromkeys(names, 1.0)


def make_up_files(
    engine: MakeupEngine,
    selfie: Path,
    reference: str,
    strength: float,
    regions: dict[str, float] | None,
    output: Path,
    *,
    mode: str = "natural",
) -> MakeupResult:
    """Make up one selfie file with a reference file (or `look:NAME`) and write the result."""
    fmt = OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise CommandError(f"output must end in one of {', '.join(OUTPUT_FORMATS)}: {output}")
    if not 0.0 <= strength <= 1.0:
        raise CommandError(f"strength must be between 0 and 1, got {strength}")
    if mode not in MODES:
        raise CommandError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    look = reference.removeprefix(LOOK_PREFIX) if reference.startswith(LOOK_PREFIX) else None
    request = MakeupRequest(
        selfie=read_file(selfie),
        reference=None if look else read_file(Path(reference)),
        look=look,
        strength=strength,
        regions=regions,
        output_format=fmt,
        mode=mode,
    )
    result = engine.apply(request)
    write_file(output, result.image)
    return result


def write_comparison(settings: EngineSettings, selfie: Path, result: MakeupResult, output: Path) -> Path:
    """Before | after side by side (JPEG), next to the output."""
    path = output.with_name(f"{output.stem}_compare.jpg")
    write_file(path, before_after(read_file(selfie), result.image, settings))
    return path


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from error


def write_file(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
