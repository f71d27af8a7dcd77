"""`facelab doctor`: check the config, the database (open and migrate), Redis (when the queue uses
it), each registered engine backend (can the configured one run here?) and the engine itself (a
self-test on a synthetic image), print one line per check and exit non-zero when anything is wrong."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from engine.backends import BACKENDS, Backend
from engine.settings import EngineSettings
from facelab.settings import Settings, load_settings

Outcome = Literal["ok", "skip", "warn", "FAIL"]
REDIS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-engine", action="store_true", help="skip the engine self-test (it loads the models)"
    )


def run(args: argparse.Namespace) -> int:
    # Storage and Redis clients log their own retries; the checks below say it in one line each.
    logging.basicConfig(level=logging.CRITICAL)
    checks = diagnose(Path(args.config) if args.config else None, engine=not args.skip_engine)
    for check in checks:
        print(f"{check.name:<9} {check.outcome:<5} {check.detail}")
    failed = [check.name for check in checks if check.outcome == "FAIL"]
    print(f"\n{len(failed)} problem(s): {', '.join(failed)}" if failed else "\nall good")
    return 1 if failed else 0


def diagnose(config: Path | None, *, engine: bool = True) -> list[Check]:
    try:
        settings = load_settings(config)
    except (OSError, ValueError) as error:  # a missing file, bad TOML, or a ValidationError
        return [Check("config", "FAIL", _config_problem(error))]
    checks = [_check_config(settings, config)]
    checks += asyncio.run(_check_services(settings))
    checks += _check_backends(settings)
    if engine:
        checks.append(_check_engine(settings))
    return checks


def _config_problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        problems = error.errors()
        return "; ".join(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in problems)
    return str(error)


def _check_config(settings: Settings, config: Path | None) -> Check:
    source = str(config) if config else ("config.toml" if Path("config.toml").is_file() else "defaults")
    platforms = [
        name
        for name, platform in settings.platforms().items()
        if platform.configured() and not platform.fallback
    ]
    if not platforms:
        return Check("config", "warn", f"{source}: no chat platform token set, so `serve` has no bot to run")
    return Check("config", "ok", f"{source}: tokens set for {', '.join(platforms)}")


async def _check_services(settings: Settings) -> list[Check]:
    return [await _check_database(settings), await _check_redis(settings)]


async def _check_database(settings: Settings) -> Check:
    from storage import Storage, StorageUnavailable

    database = settings.database
    shown = make_url(database.url).render_as_string(hide_password=True)
    try:
        storage = await Storage.open(database.url, schema=database.schema_name)
    except Exception as error:  # bad URL, driver or schema name
        return Check("database", "FAIL", f"{shown}: {error}")
    try:
        stats = await storage.admin_stats()  # migrates first when start-up could not
    except StorageUnavailable as error:
        return Check("database", "FAIL", f"{shown}: unreachable ({error.__cause__!r})")
    finally:
        await storage.close()
    return Check("database", "ok", f"{shown}: schema up to date, {stats.users} user(s)")


async def _check_redis(settings: Settings) -> Check:
    if settings.queue.backend != "redis":
        return Check("redis", "skip", 'not used (queue.backend = "local")')
    import redis.asyncio as redis
    from redis.exceptions import RedisError

    url = settings.queue.redis_url
    shown = make_url(url).render_as_string(hide_password=True)
    client = redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        return Check("redis", "FAIL", f"{shown}: {error}")
    finally:
        await client.aclose()
    return Check("redis", "ok", f"{shown}: answers PING")


def _check_backends(settings: Settings) -> list[Check]:
    """One line per registered engine backend; only the configured one is checked, and can fail."""
    return [_check_backend(name, backend, settings.engine) for name, backend in BACKENDS.items()]


def _check_backend(name: str, backend: Backend, engine: EngineSettings) -> Check:
    if name != engine.backend:
        return Check(name, "skip", f'not used (engine.backend = "{engine.backend}")')
    reason = backend.unavailable_reason(engine)
    if reason is None:
        return Check(name, "ok", backend.ready(engine))
    # Not required: the embedded engine stands in, which works but is not what was configured.
    outcome: Outcome = "FAIL" if backend.required(engine) else "warn"
    hint = f" ({backend.doctor_hint})" if backend.doctor_hint else ""
    return Check(name, outcome, f"{reason}{hint}")


def _check_engine(settings: Settings) -> Check:
    from engine.api import MakeupRequest
    from engine.backends import create_engine
    from engine.errors import EngineError
    from engine.images import encode_image

    request = MakeupRequest(selfie=encode_image(_synthetic_image(), "PNG"), look="natural")
    started = time.perf_counter()
    try:
        engine = create_engine(settings.engine)
        try:
            engine.apply(request)
            outcome = "made up the synthetic image"
        except EngineError as refusal:  # a typed answer (no face to find) proves the pipeline runs
            outcome = f"ran on the synthetic image and answered {refusal.kind!r} as expected"
    except Exception as error:
        return Check("engine", "FAIL", f"{settings.engine.backend}: {type(error).__name__}: {error}")
    elapsed_ms = (time.perf_counter() - started) * 1000
    return Check("engine", "ok", f"{settings.engine.backend}: {outcome} ({elapsed_ms:.0f} ms with start-up)")


def _synthetic_image() -> np.ndarray:
    """A 256x256 skin-toned gradient: decodes, goes through face detection, finds no face."""
    ramp = np.linspace(0.8, 1.0, 256, dtype=np.float32)[:, None]
    tone = np.array([224, 172, 150], dtype=np.float32)
    return (np.broadcast_to(ramp[..., None] * tone, (256, 256, 3))).astype(np.uint8)
