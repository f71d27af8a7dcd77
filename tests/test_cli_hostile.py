"""The hostile corpus fed through the real command line, `python -m facelab apply`, as a user would:
bad files end with a non-zero exit and one friendly `error:` line (no traceback), valid faces give
an image at the selfie's full resolution."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.errors import ImageError, Role
from engine.images import load_image
from tests.conftest import face_path
from tests.hostile_images import ALL_NAMES, FACE_REFUSALS, LIMITS, HostileImage, corpus

# Slow: the real engine on the whole hostile corpus, one `facelab apply` process each.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "elegant_ref_02.png"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    output: Path

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


def facelab_apply(selfie: Path, reference: Path, output: Path) -> Run:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "facelab", "apply", str(selfie), str(reference), "-o", str(output)]
    done = subprocess.run(command, env=env, cwd=output.parent, capture_output=True, text=True, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr, output)


def written(case: HostileImage, folder: Path) -> Path:
    folder.mkdir()
    path = folder / case.filename  # the lying file names are part of the test
    path.write_bytes(case.data)
    return path


@pytest.fixture(scope="module")
def cases() -> dict[str, HostileImage]:
    return {case.name: case for case in corpus()}


@pytest.fixture(scope="module")
def runs(cases: dict[str, HostileImage], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every corpus file as the selfie, two CLI processes at a time (each loads the face model)."""
    root = tmp_path_factory.mktemp("cli_hostile")
    reference = face_path(REFERENCE)

    def run(case: HostileImage) -> tuple[str, Run]:
        selfie = written(case, root / case.name)
        return case.name, facelab_apply(selfie, reference, root / case.name / "out.jpg")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, cases.values()))


def loader_message(case: HostileImage, role: Role) -> str:
    with pytest.raises(ImageError) as caught:
        load_image(case.data, max_pixels=LIMITS.max_pixels, max_bytes=LIMITS.max_bytes, role=role)
    return caught.value.user_message


@pytest.mark.parametrize(
    "name",
    ALL_NAMES,
)
def test_corpus_file_through_facelab_apply(
    name: str, cases: dict[str, HostileImage], runs: dict[str, Run]
) -> None:
    case, run = cases[name], runs[name]
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    # Our stderr is ours alone: no native library start-up notices around the one error line.
    assert run.stderr.splitlines() == run.error_lines(), run.stderr[-2000:]
    expect = case.expect
    if "ok" in expect.engine:
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stderr == ""
        made_up = load_image(
            run.output.read_bytes(), max_pixels=LIMITS.max_pixels, max_bytes=LIMITS.max_bytes
        )
        assert made_up.shape[:2] == expect.shape  # full resolution, upright
        if expect.faces is not None:
            assert f"{expect.faces} face(s)" in run.stdout
        return
    assert run.returncode == 1 and not run.output.exists()
    (line,) = run.error_lines()  # exactly one message for the user
    if expect.error is not None:
        assert line == f"error: {loader_message(case, 'selfie')}"
    else:  # decodes, but no face the engine can use
        assert "selfie" in line
        assert any(FACE_REFUSALS[kind] in line for kind in expect.engine), line


@pytest.mark.parametrize("name", ["pdf_renamed_jpg", "truncated_jpeg", "png_claims_30000px"])
def test_a_bad_reference_is_named_as_the_reference(
    name: str, cases: dict[str, HostileImage], tmp_path: Path
) -> None:
    case = cases[name]
    run = facelab_apply(face_path("sm_source_01.jpg"), written(case, tmp_path / name), tmp_path / "out.jpg")
    assert run.returncode == 1 and not run.output.exists()
    assert run.error_lines() == [f"error: {loader_message(case, 'reference')}"]
    assert "The reference photo" in run.error_lines()[0]
