"""Optional Stable-Makeup-compatible diffusion engine (the `diffusion` extra: torch, diffusers, transformers).

Only the modules of this subpackage import torch, and only when they are imported themselves: this file,
`settings.py`, `layout.py`, `availability.py` and `structure.py` stay torch-free, so the config,
`facelab models check` and the structure drawing work on the default install. The heavy parts are
`modules.py` (networks), `loading.py` (published checkpoints), `pipeline.py` (img2img denoising loop)
and `engine.py` (the MakeupEngine backend).
"""

import os

# Weights come from models/ only. Every load also passes local_files_only; this covers any lookup a
# library makes on its own. Set before huggingface_hub is imported (it reads the variable once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
