"""Write a tiny random-weight model tree in the published Stable-Makeup layout.

Same file names, folder structure and state-dict key names as the real release, with networks a few
kilobytes wide, so the real loader and pipeline run on a CPU in seconds. Used by the tests and by
`bench/diffusion.py` (which then measures the overhead around the networks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

import torch
from diffusers import AutoencoderKL, ControlNetModel, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

from engine.diffusion.layout import ModelLayout
from engine.diffusion.modules import TokenResampler

_CLIP_WIDTH = 32
_TEXT_WIDTH = 32


class _TransformerShape(TypedDict):
    intermediate_size: int
    num_attention_heads: int


_TRANSFORMER = _TransformerShape(intermediate_size=64, num_attention_heads=4)  # both tiny CLIP towers
_TOKENS = ["<|startoftext|>", "<|endoftext|>", "a</w>", "face</w>", "!", "a", "f", "c", "e"]


def write_tiny_models(models_dir: Path, seed: int = 0) -> ModelLayout:
    torch.manual_seed(seed)
    layout = ModelLayout(models_dir)
    unet = _tiny_unet()
    _write_sd15(layout.sd15_dir, unet)
    _tiny_clip().save_pretrained(layout.clip_dir)
    layout.stable_makeup_dir.mkdir(parents=True, exist_ok=True)
    torch.save(_makeup_checkpoint(unet), layout.makeup_encoder)
    for path in (layout.content_controlnet, layout.structure_controlnet):
        torch.save(_controlnet_checkpoint(unet), path)
    return layout


def _tiny_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=_TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def _write_sd15(sd15_dir: Path, unet: UNet2DConditionModel) -> None:
    unet.save_pretrained(sd15_dir / "unet")
    # Four blocks: the SD VAE's 8× downsampling, which the ControlNet's conditioning embedding assumes.
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )
    vae.save_pretrained(sd15_dir / "vae")
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(_TOKENS),
            hidden_size=_TEXT_WIDTH,
            num_hidden_layers=2,
            max_position_embeddings=8,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            **_TRANSFORMER,
        )
    )
    text.save_pretrained(sd15_dir / "text_encoder")
    tokenizer_dir = sd15_dir / "tokenizer"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    (tokenizer_dir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(_TOKENS)}))
    (tokenizer_dir / "merges.txt").write_text("#version: 0.2\n")
    (tokenizer_dir / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 8, "tokenizer_class": "CLIPTokenizer"})
    )
    # SD1.5 ships a PNDM schedule config; the pipeline reads it as DDIM, as the published demo does.
    PNDMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    ).save_pretrained(sd15_dir / "scheduler")


def _tiny_clip() -> CLIPVisionModel:
    config = CLIPVisionConfig(
        hidden_size=_CLIP_WIDTH, num_hidden_layers=4, image_size=32, patch_size=8, **_TRANSFORMER
    )
    return CLIPVisionModel(config)


def _makeup_checkpoint(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The makeup encoder's state dict spelled as the published pytorch_model.bin spells it."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in _tiny_clip().state_dict().items():
        if not key.startswith("post_layernorm."):
            state[f"image_encoder.vision_model.{key}"] = tensor
    for key, tensor in TokenResampler(_CLIP_WIDTH).state_dict().items():
        state[f"resampler.{key}"] = tensor
    # One entry per UNet attention processor in the UNet's order; only cross-attention ones hold weights.
    for position, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            inner = unet.get_submodule(name.removesuffix(".processor")).to_q.out_features
            state[f"SSR_layers.{position}.to_k_SSR.weight"] = torch.randn(inner, _CLIP_WIDTH) * 0.2
            state[f"SSR_layers.{position}.to_v_SSR.weight"] = torch.randn(inner, _CLIP_WIDTH) * 0.2
    return state


def _controlnet_checkpoint(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    controlnet = ControlNetModel.from_unet(unet)
    # from_unet zero-initialises the output convolutions; random ones make the ControlNets matter.
    return {
        key: torch.randn_like(t) * 0.05 if key.startswith("controlnet_") else t
        for key, t in controlnet.state_dict().items()
    }
