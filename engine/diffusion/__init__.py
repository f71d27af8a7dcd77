"""Optional Stable-Makeup-compatible diffusion engine (the `diffusion` extra: torch, diffusers, transformers).

Only the modules of this subpackage import torch, and only when they are imported themselves: this file,
`layout.py` and `structure.py` stay torch-free, so `facelab models check` and the structure drawing work on
the default install. The heavy parts are `modules.py` (networks), `loading.py` (published checkpoints),
`pipeline.py` (img2img denoising loop) and `engine.py` (the MakeupEngine backend).
"""
