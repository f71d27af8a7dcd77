"""Load the published Stable-Makeup checkpoints into our modules with every key accounted for.

The published inference code loads its three files with `strict=False`, which silently leaves layers
random when a name drifts (as transformers 5 did with CLIP's `vision_model.` prefix). Here a missing,
unexpected or mis-shaped key is a `CheckpointError` naming the file and the key. Nothing is downloaded:
every `from_pretrained` is local-only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionConfig

from engine.diffusion.layout import ModelLayout
from engine.diffusion.modules import MakeupEncoder, install_makeup_processors

StateDict = dict[str, torch.Tensor]

# Published key prefixes in pytorch_model.bin (the makeup encoder's own state dict).
_CLIP_PREFIX = "image_encoder.vision_model."
_RESAMPLER_PREFIX = "resampler."
_ADAPTER_KEY = re.compile(r"SSR_layers\.(\d+)\.(.+)")


class CheckpointError(ValueError):
    """A checkpoint file does not match the architecture; the message names the file and the keys."""

    def __init__(self, file: Path, problems: list[str]) -> None:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        super().__init__(f"{file}: {shown}")
        self.file = file
        self.problems = problems


def read_state_dict(path: Path) -> StateDict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    # weights_only: a checkpoint is data; never run pickled code from a downloaded file.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(path, [f"not a state dict but a {type(state).__name__}"])
    return state


def key_problems(module: nn.Module, state: Mapping[str, torch.Tensor], prefix: str = "") -> list[str]:
    """Missing, unexpected and mis-shaped keys of `state` for `module`, spelled with `prefix` as the
    checkpoint spells them."""
    expected = module.state_dict()
    problems = [f"missing key {prefix + key!r}" for key in sorted(expected.keys() - state.keys())]
    problems += [f"unexpected key {prefix + key!r}" for key in sorted(state.keys() - expected.keys())]
    problems += [
        f"key {prefix + key!r} has shape {tuple(state[key].shape)}, the model wants {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key in state and state[key].shape != tensor.shape
    ]
    return problems


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], file: Path) -> None:
    """Copy `state` into `module`, refusing any missing, unexpected or mis-shaped key."""
    problems = key_problems(module, state)
    if problems:
        raise CheckpointError(file, problems)
    module.load_state_dict(state, strict=True)


def load_controlnet(unet: UNet2DConditionModel, file: Path) -> ControlNetModel:
    """A ControlNet shaped after `unet` (as Stable-Makeup trained it), weights from `file`."""
    controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    load_exact(controlnet, read_state_dict(file), file)
    return controlnet


def load_makeup_encoder(unet: UNet2DConditionModel, clip_dir: Path, file: Path) -> MakeupEncoder:
    """Build the makeup encoder from the CLIP config, install the UNet's makeup cross-attention
    processors, and fill both from the one published file (after `set_attn_processor`, since custom
    processors are not part of the UNet's own saved weights)."""
    config = CLIPVisionConfig.from_pretrained(clip_dir, local_files_only=True)
    encoder = MakeupEncoder(config)
    adapters = install_makeup_processors(unet, token_dim=config.hidden_size)

    clip_state: StateDict = {}
    resampler_state: StateDict = {}
    adapter_states: dict[int, StateDict] = {position: {} for position in adapters}
    problems: list[str] = []
    for key, tensor in read_state_dict(file).items():
        adapter = _ADAPTER_KEY.fullmatch(key)
        if key.startswith(_CLIP_PREFIX):
            clip_state[key.removeprefix(_CLIP_PREFIX)] = tensor
        elif key.startswith(_RESAMPLER_PREFIX):
            resampler_state[key.removeprefix(_RESAMPLER_PREFIX)] = tensor
        elif adapter and int(adapter[1]) in adapter_states:
            adapter_states[int(adapter[1])][adapter[2]] = tensor
        else:
            problems.append(f"unexpected key {key!r}")

    parts: list[tuple[nn.Module, StateDict, str]] = [
        (encoder.image_encoder, clip_state, _CLIP_PREFIX),
        (encoder.resampler, resampler_state, _RESAMPLER_PREFIX),
        *((adapters[p], adapter_states[p], f"SSR_layers.{p}.") for p in adapters),
    ]
    for module, state, prefix in parts:
        problems += key_problems(module, state, prefix)
    if problems:
        raise CheckpointError(file, problems)
    for module, state, _ in parts:
        module.load_state_dict(state, strict=True)
    return encoder


def empty_prompt_embedding(sd15_dir: Path) -> torch.Tensor:
    """The SD1.5 text encoder's output for "" — the ControlNets' only text input. Computed once at load;
    the text encoder is dropped afterwards."""
    tokenizer = CLIPTokenizer.from_pretrained(sd15_dir, subfolder="tokenizer", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(sd15_dir, subfolder="text_encoder", local_files_only=True)
    ids = tokenizer(
        "", padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.inference_mode():
        return text_encoder(ids)[0]


def load_sd15(sd15_dir: Path) -> tuple[UNet2DConditionModel, AutoencoderKL, DDIMScheduler]:
    unet = UNet2DConditionModel.from_pretrained(sd15_dir, subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(sd15_dir, subfolder="vae", local_files_only=True)
    # DDIM, as the published inference uses; img2img runs only the tail of its schedule. Latents are not
    # bounded to [-1, 1], so DDIM's sample clipping (on by default when a config omits it) stays off.
    scheduler = DDIMScheduler.from_pretrained(
        sd15_dir, subfolder="scheduler", local_files_only=True, clip_sample=False
    )
    return unet, vae, scheduler


def check_layout(layout: ModelLayout) -> None:
    missing = layout.missing()
    if missing:
        raise FileNotFoundError(f"missing diffusion weights: {', '.join(str(i.paths[0]) for i in missing)}")
