"""`facelab apply` and `facelab batch` driven through the real dispatcher, on the shared photos."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest

from engine.api import MakeupEngine, MakeupRequest, MakeupResult
from engine.backends import create_engine
from engine.images import load_image
from engine.settings import EngineSettings
from facelab.cli import main
from facelab.commands import apply, batch
from tests.conftest import face_path
from tests.engine_helpers import LIMITS

# Slow: the real engine on the shared photos, through the command line.
pytestmark = pytest.mark.slow

PAINTED = "sm_ref_01.jpg"  # a Joker


class PaintSpottingEngine:
    """The configured engine, reporting paint the way the engine contract says (paint_left_out on a
    natural-mode try-on whose reference wears paint): here, the Joker. Notes each request's mode."""

    def __init__(self, settings: EngineSettings) -> None:
        self._engine = create_engine(settings)
        self.modes: list[str] = []

    def apply(self, request: MakeupRequest) -> MakeupResult:
        self.modes.append(request.mode)
        result = self._engine.apply(request)
        painted = request.reference == face_path(PAINTED).read_bytes() and request.mode == "natural"
        return replace(result, paint_left_out=painted)


@pytest.fixture
def spotter(monkeypatch: pytest.MonkeyPatch) -> list[PaintSpottingEngine]:
    """The engines `apply` and `batch` build, once they have built them."""
    built: list[PaintSpottingEngine] = []

    def build(settings: EngineSettings) -> MakeupEngine:
        built.append(PaintSpottingEngine(settings))
        return built[-1]

    monkeypatch.setattr(apply, "create_engine", build)
    monkeypatch.setattr(batch, "create_engine", build)
    return built


def read(path) -> np.ndarray:
    return load_image(path.read_bytes(), **LIMITS)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ")
    return err


def test_apply_writes_the_result_and_a_before_after(tmp_path, capsys):
    out = tmp_path / "out.jpg"
    selfie = face_path("sm_source_02.jpg")
    code = main(["apply", str(selfie), str(face_path("elegant_ref_02.png")), "-o", str(out), "--compare"])
    assert code == 0
    result, compare = read(out), read(tmp_path / "out_compare.jpg")
    before = read(selfie)
    assert result.shape == before.shape
    assert compare.shape == (before.shape[0], 2 * before.shape[1], 3)
    assert np.abs(result.astype(int) - before).max() > 40  # visibly made up
    assert "1 face" in capsys.readouterr().out


def test_apply_a_look_on_some_regions(tmp_path):
    out = tmp_path / "look.png"
    selfie = face_path("shmt_source_02.jpg")
    assert main(["apply", str(selfie), "--look", "red_lips", "-o", str(out), "--strength", "0.5"]) == 0
    assert read(out).shape == read(selfie).shape


def test_strength_zero_writes_the_selfie_unchanged(tmp_path):
    out = tmp_path / "same.png"
    selfie = face_path("elegant_source_02.png")
    code = main(["apply", str(selfie), str(face_path("shmt_ref_04.jpg")), "-o", str(out), "--strength", "0"])
    assert code == 0 and np.array_equal(read(out), read(selfie))


def test_a_photo_without_a_face_fails_with_one_line(tmp_path, capsys):
    out = tmp_path / "dog.jpg"
    code = main(["apply", str(face_path("dlib_source_02.jpg")), "--look", "natural", "-o", str(out)])
    assert code == 1 and not out.exists()
    assert "face in your selfie" in one_line_error(capsys)


def test_bad_inputs_fail_with_one_line(tmp_path, capsys):
    selfie, reference = str(face_path("sm_source_01.jpg")), str(face_path("sm_ref_01.jpg"))
    out = str(tmp_path / "x.jpg")
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not a photo")
    cases = [
        (["apply", str(tmp_path / "missing.jpg"), reference, "-o", out], "cannot read"),
        (["apply", str(text_file), reference, "-o", out], "selfie"),
        (["apply", selfie, str(text_file), "-o", out], "reference"),
        (["apply", selfie, "-o", out], "REFERENCE"),
        (["apply", selfie, reference, "--look", "natural", "-o", out], "REFERENCE"),
        (["apply", selfie, "--look", "clown", "-o", out], "clown"),
        (["apply", selfie, reference, "--regions", "lips,nose", "-o", out], "nose"),
        (["apply", selfie, reference, "--strength", "1.5", "-o", out], "strength"),
        (["apply", selfie, reference, "-o", str(tmp_path / "x.gif")], "output"),
    ]
    for argv, expected in cases:
        assert main(argv) == 1, argv
        assert expected in one_line_error(capsys), argv


def test_apply_mode_reaches_the_engine_and_paint_left_out_is_said(tmp_path, capsys, spotter):
    selfie, painted = str(face_path("sm_source_02.jpg")), str(face_path(PAINTED))
    assert main(["apply", selfie, painted, "-o", str(tmp_path / "natural.jpg")]) == 0
    assert "natural mode leaves out; --mode full carries it" in capsys.readouterr().out
    assert main(["apply", selfie, painted, "-o", str(tmp_path / "full.jpg"), "--mode", "full"]) == 0
    assert "leaves out" not in capsys.readouterr().out
    assert [engine.modes for engine in spotter] == [["natural"], ["full"]]
    with pytest.raises(SystemExit) as refused:
        main(["apply", selfie, painted, "-o", str(tmp_path / "x.jpg"), "--mode", "paint"])
    assert refused.value.code == 2
    assert "invalid choice: 'paint'" in capsys.readouterr().err


def test_batch_takes_the_mode_from_its_column_or_the_option(tmp_path, faces_dir, spotter):
    pairs = tmp_path / "pairs.csv"
    selfie, painted = faces_dir / "source/shmt_source_01.jpg", faces_dir / f"reference/{PAINTED}"
    with pairs.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["selfie", "reference", "strength", "output", "mode"])
        writer.writerow([selfie, painted, "", "default.jpg", ""])
        writer.writerow([selfie, painted, "", "natural.jpg", "Natural"])
        writer.writerow([selfie, painted, "", "full.jpg", "full"])
        writer.writerow([selfie, painted, "", "bad.jpg", "paint"])
    out_dir = tmp_path / "out"
    assert main(["batch", str(pairs), "--out-dir", str(out_dir), "--mode", "full"]) == 1  # the bad row
    with (out_dir / "report.csv").open(newline="") as f:
        report = list(csv.DictReader(f))
    assert [(row["mode"], row["paint_left_out"]) for row in report] == [
        ("full", "0"),
        ("natural", "1"),
        ("full", "0"),
        ("paint", ""),
    ]
    assert report[3]["error"] == "mode must be one of natural, full, got 'paint'"
    [engine] = spotter
    assert engine.modes == ["full", "natural", "full"]


def test_batch_runs_every_row_and_reports_errors(tmp_path, faces_dir):
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["selfie", "reference", "strength", "output"])
        writer.writerow(
            [faces_dir / "source/shmt_source_01.jpg", faces_dir / "reference/sm_ref_04.png", "0.8", "a.jpg"]
        )
        writer.writerow([faces_dir / "source/dlib_source_02.jpg", "look:natural", "", "dog.jpg"])
        writer.writerow([faces_dir / "source/cpm_source_01.png", "look:smoky_eyes", "", ""])
        writer.writerow([faces_dir / "source/cpm_source_01.png", "look:natural", "lots", "b.jpg"])
    out_dir = tmp_path / "out"
    assert main(["batch", str(pairs), "--out-dir", str(out_dir)]) == 1  # some rows failed
    with (out_dir / "report.csv").open(newline="") as f:
        report = list(csv.DictReader(f))
    assert [bool(row["error"]) for row in report] == [False, True, False, True]
    assert report[1]["error"].startswith("no_face:")
    assert "lots" in report[3]["error"]
    assert (out_dir / "a.jpg").is_file() and (out_dir / "0003_cpm_source_01.jpg").is_file()
    assert read(out_dir / "a.jpg").shape == read(faces_dir / "source/shmt_source_01.jpg").shape


def test_batch_with_a_bad_csv_fails_with_one_line(tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("photo,style\na.jpg,b.jpg\n")
    assert main(["batch", str(pairs), "--out-dir", str(tmp_path)]) == 1
    assert "selfie" in one_line_error(capsys)
