"""Can the diffusion engine run here? Checked before anything heavy is imported or loaded."""

from __future__ import annotations

import importlib.util

from engine.diffusion.layout import ModelLayout
from engine.diffusion.settings import DiffusionSettings

EXTRA_PACKAGES = ("torch", "diffusers", "transformers")


def unavailable_reason(settings: DiffusionSettings) -> str | None:
    """None when the extra is installed, every weight file is present and the device exists;
    otherwise one sentence saying what is missing and how to fix it."""
    absent = [name for name in EXTRA_PACKAGES if importlib.util.find_spec(name) is None]
    if absent:
        return f"{', '.join(absent)} not installed (pip install -e '.[diffusion]')"
    missing = ModelLayout(settings.models_dir).missing()
    if missing:
        first = missing[0].paths[0]
        return f"{len(missing)} weight file(s) missing under {settings.models_dir}, first {first}"
    if settings.device.startswith("cuda"):
        import torch  # only here, with the extra installed and the diffusion backend asked for

        if not torch.cuda.is_available():
            return f"no CUDA GPU visible for device {settings.device!r}"
    return None
