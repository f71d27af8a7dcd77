"""`facelab batch`: many selfie/reference pairs from a CSV file with one engine, never stopping at a
bad row; each row's outcome goes to a report CSV."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from tqdm import tqdm

from engine.api import MODES, MakeupEngine
from engine.backends import EngineUnavailableError, create_engine
from engine.errors import EngineError
from facelab.commands.apply import LOOK_PREFIX, CommandError, engine_settings, make_up_files

COLUMNS = ("selfie", "reference", "strength", "output", "mode")
REPORT_COLUMNS = (*COLUMNS, "faces", "paint_left_out", "ms", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pairs",
        type=Path,
        help="CSV with columns selfie,reference,strength,output[,mode] (reference may be look:NAME; "
        "relative paths are relative to the CSV file; an empty mode takes --mode)",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="where outputs and report.csv go")
    parser.add_argument("--mode", choices=MODES, default="natural", help="look mode of rows without one")


def run(args: argparse.Namespace) -> int:
    try:
        rows = read_pairs(args.pairs)
        engine = create_engine(engine_settings(args))
    except (CommandError, OSError, EngineUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    base = args.pairs.parent
    report = []
    for number, row in enumerate(tqdm(rows, desc="making up", unit="pair"), start=1):
        report.append(run_row(engine, row, number, base, args.out_dir, default_mode=args.mode))
    report_path = args.out_dir / "report.csv"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with report_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(report)
    failed = sum(1 for row in report if row["error"])
    print(f"{len(report) - failed} of {len(report)} pairs done, {failed} failed; report: {report_path}")
    return 1 if failed else 0


def read_pairs(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("selfie", "reference") if c not in (reader.fieldnames or [])]
            if missing:
                raise CommandError(
                    f"{path} lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
                )
            return [{c: (row.get(c) or "").strip() for c in COLUMNS} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CommandError(f"cannot read {path}: {error}") from error


def run_row(
    engine: MakeupEngine,
    row: dict[str, str],
    number: int,
    base: Path,
    out_dir: Path,
    *,
    default_mode: str = "natural",
) -> dict:
    """One pair; any failure becomes the row's error text instead of stopping the batch."""
    output = out_dir / (row["output"] or f"{number:04d}_{Path(row['selfie']).stem}.jpg")
    mode = row["mode"].lower() or default_mode
    outcome: dict = {
        **row,
        "output": str(output),
        "mode": mode,
        "faces": "",
        "paint_left_out": "",
        "ms": "",
        "error": "",
    }
    start = time.perf_counter()
    try:
        strength = float(row["strength"]) if row["strength"] else 1.0
        reference = row["reference"]
        if not reference.startswith(LOOK_PREFIX):
            reference = str(base / reference)
        result = make_up_files(engine, base / row["selfie"], reference, strength, None, output, mode=mode)
        outcome["faces"] = result.faces
        outcome["paint_left_out"] = int(result.paint_left_out)
    except ValueError as error:
        outcome["error"] = f"bad value: {error}"
    except EngineError as error:
        outcome["error"] = f"{error.kind}: {error.user_message}"
    except CommandError as error:
        outcome["error"] = str(error)
    except Exception as error:  # a bug on one row must not lose the rest of the batch
        outcome["error"] = f"internal error: {error!r}"
    outcome["ms"] = round((time.perf_counter() - start) * 1000.0, 1)
    return outcome
