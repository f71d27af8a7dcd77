"""`facelab doctor` through the real CLI: a good config passes with exit 0; a broken one says what is
wrong, line by line, and exits non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.backends import BACKENDS, Backend
from facelab.cli import main

OUTCOMES = {"ok", "skip", "warn", "FAIL"}


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def doctor(config: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, str]]:
    code = main(["--config", config, "doctor", *extra])
    lines = capsys.readouterr().out.splitlines()
    return code, {line.split()[0]: line for line in lines if set(line.split()[1:2]) & OUTCOMES}


def test_good_config_passes_every_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "ok.db"}"\n'
        '[telegram]\ntoken = "123:fake-token-for-doctor"\n',
    )
    code, checks = doctor(config, capsys)
    assert code == 0
    assert checks["config"].split()[1] == "ok" and "telegram" in checks["config"]
    assert checks["database"].split()[1] == "ok" and "schema up to date" in checks["database"]
    assert checks["redis"].split()[1] == "skip"
    assert checks["embedded"].split()[1] == "ok" and checks["diffusion"].split()[1] == "skip"
    assert checks["engine"].split()[1] == "ok" and "no_face" in checks["engine"]
    assert (tmp_path / "ok.db").is_file()  # opened and migrated
    assert "fake-token-for-doctor" not in "".join(checks.values())


def test_unreachable_services_and_missing_weights_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        '[database]\nurl = "postgresql+asyncpg://facelab:hunter22@127.0.0.1:1/facelab"\n'
        '[queue]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:1/0"\n'
        f'[engine]\nbackend = "diffusion"\n[engine.diffusion]\nmodels_dir = "{tmp_path / "none"}"\n'
        "required = true\n",
    )
    code, checks = doctor(config, capsys, "--skip-engine")
    assert code == 1
    for name in ("database", "redis", "diffusion"):
        assert checks[name].split()[1] == "FAIL", checks[name]
    assert "unreachable" in checks["database"] and "hunter22" not in checks["database"]
    assert "missing" in checks["diffusion"] or "not installed" in checks["diffusion"]
    assert "facelab models check" in checks["diffusion"]
    assert checks["embedded"].split()[1] == "skip"
    assert "engine" not in checks


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[limits]\nuser_per_day = -1\n", "limits.user_per_day: Input should be greater than or equal to 0"),
        ('[access]\nadmins = ["12345"]\n', "access.admins.0: String should match pattern"),
        ("[queue\nbackend = 1\n", "Expected ']'"),
        ('[database]\nurl = "mysql://x"\n', "unsupported database 'mysql'"),
        (
            '[engine]\nbackend = "gpu"\n',
            "engine.backend: Value error, unknown engine backend 'gpu'; known: embedded, diffusion",
        ),
    ],
)
def test_broken_config_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    code, checks = doctor(write_config(tmp_path, text), capsys, "--skip-engine")
    assert code == 1
    failing = [line for line in checks.values() if line.split()[1] == "FAIL"]
    assert len(failing) == 1 and problem in failing[0]


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks = doctor(str(tmp_path / "absent.toml"), capsys)
    assert code == 1 and "config file not found" in checks["config"]


def test_doctor_reports_each_registered_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend is one registry entry: the setting accepts its name and doctor checks it."""
    probe = Backend(
        build=BACKENDS["embedded"].build,
        unavailable_reason=lambda _settings: "the probe card is not plugged in",
        ready=lambda _settings: "ready",
        required=lambda _settings: True,
        doctor_hint="see the probe manual",
    )
    monkeypatch.setitem(BACKENDS, "probe", probe)
    database = f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "ok.db"}"\n'
    config = write_config(tmp_path, database + '[engine]\nbackend = "probe"\n')
    code, checks = doctor(config, capsys, "--skip-engine")
    assert code == 1
    assert set(BACKENDS) <= checks.keys()
    assert checks["probe"].split()[1] == "FAIL"
    assert "the probe card is not plugged in (see the probe manual)" in checks["probe"]
    assert all(checks[name].split()[1] == "skip" for name in BACKENDS if name != "probe")
