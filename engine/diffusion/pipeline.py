"""Stable-Makeup denoising: the selfie's noised latents (img2img), or pure noise at denoise 1 as in
the published release, are denoised under three conditions.

- the content ControlNet sees the selfie, the structure ControlNet the landmark drawing; both get the
  empty-prompt text embedding (computed once at load), as in training;
- the UNet's cross-attention reads the makeup tokens of the reference (classifier-free guidance
  against the tokens of a blank image, also computed once).

The ControlNets do not depend on the makeup tokens, so under guidance they run once per step on the
unbatched latents and their residuals are shared by both halves of the UNet batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, MultiControlNetModel, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from transformers import CLIPImageProcessorPil

from engine.diffusion.layout import ModelLayout
from engine.diffusion.loading import (
    check_layout,
    empty_prompt_embedding,
    load_controlnet,
    load_makeup_encoder,
    load_sd15,
)
from engine.diffusion.modules import MakeupEncoder

RGB = np.ndarray  # H×W×3 uint8


@dataclass
class StageTimer:
    """Wall-clock milliseconds per named stage; waits for the GPU so figures are real."""

    device: torch.device
    ms: dict[str, float]

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move a network to `device` in `dtype` (float16 or float32), in inference mode."""
    # .half()/.float() rather than .to(dtype): diffusers' ModelMixin.to logs a spurious fp32 warning.
    module.to(device).eval()
    if dtype == torch.float16:
        module.half()
    elif dtype == torch.float32:
        module.float()
    else:
        raise ValueError(f"unsupported dtype {dtype}: use float16 (GPU) or float32")


class StableMakeupPipeline:
    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        controlnet: MultiControlNetModel,
        makeup_encoder: MakeupEncoder,
        scheduler: DDIMScheduler,
        empty_text_embeds: torch.Tensor,
    ) -> None:
        self.vae = vae
        self.unet = unet
        self.controlnet = controlnet
        self.makeup_encoder = makeup_encoder
        self.scheduler = scheduler
        size = makeup_encoder.image_size
        self.clip_processor = CLIPImageProcessorPil(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )
        self.device = unet.device
        self.dtype = unet.dtype
        self.empty_text_embeds = empty_text_embeds.to(self.device, self.dtype)
        blank = torch.zeros(1, 3, size, size, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            self.uncond_tokens = makeup_encoder(blank)

    @classmethod
    def from_pretrained(
        cls, models_dir: Path | str, device: str = "cpu", dtype: torch.dtype | None = None
    ) -> StableMakeupPipeline:
        """Load the published layout (see engine/diffusion/layout.py) from local files only.

        `dtype` defaults to float16 on CUDA and float32 elsewhere.
        """
        layout = ModelLayout(Path(models_dir))
        check_layout(layout)
        torch_device = torch.device(device)
        dtype = dtype or (torch.float16 if torch_device.type == "cuda" else torch.float32)
        unet, vae, scheduler = load_sd15(layout.sd15_dir)
        controlnet = MultiControlNetModel(
            [
                load_controlnet(unet, layout.content_controlnet),
                load_controlnet(unet, layout.structure_controlnet),
            ]
        )
        makeup_encoder = load_makeup_encoder(unet, layout.clip_dir, layout.makeup_encoder)
        empty_text = empty_prompt_embedding(layout.sd15_dir)
        for module in (unet, vae, controlnet, makeup_encoder):
            place(module, torch_device, dtype)
        return cls(vae, unet, controlnet, makeup_encoder, scheduler, empty_text)

    def img2img_timesteps(self, num_inference_steps: int, denoise: float) -> torch.Tensor:
        """The tail of a `num_inference_steps` schedule that starts at noise level `denoise`."""
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        skipped = num_inference_steps - min(int(num_inference_steps * denoise), num_inference_steps)
        return self.scheduler.timesteps[skipped * self.scheduler.order :]

    @torch.inference_mode()
    def __call__(
        self,
        selfie: RGB,
        reference: RGB,
        structure: RGB,
        *,
        num_inference_steps: int = 20,
        denoise: float = 0.6,
        guidance_scale: float = 1.6,
        seed: int = 0,
        timings_ms: dict[str, float] | None = None,
    ) -> RGB:
        """Return the selfie (H×W, multiples of 8) wearing the reference's makeup, same size.

        `denoise` 0 returns `selfie` itself, 1 starts from pure noise (the published setting);
        `guidance_scale` 1 disables guidance (one UNet pass/step).
        """
        if selfie.shape != structure.shape or selfie.shape[0] % 8 or selfie.shape[1] % 8:
            raise ValueError(f"selfie {selfie.shape} and structure {structure.shape} must match, sides ×8")
        timesteps = self.img2img_timesteps(num_inference_steps, denoise)
        if len(timesteps) == 0:
            return selfie
        timer = StageTimer(self.device, timings_ms if timings_ms is not None else {})
        generator = torch.Generator("cpu").manual_seed(seed)
        guided = guidance_scale > 1.0

        with timer.stage("encode_makeup"):
            tokens = self.encode_makeup(reference)
            if guided:
                tokens = torch.cat([self.uncond_tokens, tokens])
        with timer.stage("encode_selfie"):
            control_images = [self._to_tensor(selfie), self._to_tensor(structure)]
            latents = self._initial_latents(selfie, timesteps[:1], denoise, generator)

        for i, t in enumerate(timesteps):
            with timer.stage(f"step_{i:02d}"):
                latents = self._denoise_step(latents, t, tokens, control_images, guidance_scale)

        with timer.stage("vae_decode"):
            image = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return self._to_rgb(image)

    def _initial_latents(
        self, selfie: RGB, first: torch.Tensor, denoise: float, generator: torch.Generator
    ) -> torch.Tensor:
        """img2img: the selfie's VAE latents noised to the first timestep. At denoise 1, pure noise,
        as the published text-to-image pipeline starts (the selfie reaches it only through the content
        ControlNet; noising its latents to the first timestep would still leak a trace of them)."""
        height, width = selfie.shape[:2]
        shape = (1, self.vae.config.latent_channels, height // 8, width // 8)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        if denoise >= 1.0:
            return noise * self.scheduler.init_noise_sigma
        clean = self.vae.encode(self._to_tensor(selfie) * 2 - 1).latent_dist.mean
        return self.scheduler.add_noise(clean * self.vae.config.scaling_factor, noise, first)

    def encode_makeup(self, reference: RGB) -> torch.Tensor:
        pixels = self.clip_processor(images=Image.fromarray(reference), return_tensors="pt").pixel_values
        return self.makeup_encoder(pixels.to(self.device, self.dtype))

    def _denoise_step(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        tokens: torch.Tensor,
        control_images: list[torch.Tensor],
        guidance_scale: float,
    ) -> torch.Tensor:
        model_input = self.scheduler.scale_model_input(latents, t)
        down, mid = self.controlnet(
            model_input,
            t,
            encoder_hidden_states=self.empty_text_embeds,
            controlnet_cond=control_images,
            conditioning_scale=[1.0, 1.0],
            return_dict=False,
        )
        batch = tokens.shape[0]
        noise_pred = self.unet(
            model_input.expand(batch, -1, -1, -1),
            t,
            encoder_hidden_states=tokens,
            down_block_additional_residuals=[r.expand(batch, -1, -1, -1) for r in down],
            mid_block_additional_residual=mid.expand(batch, -1, -1, -1),
            return_dict=False,
        )[0]
        if batch == 2:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
        return self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

    def _to_tensor(self, image: RGB) -> torch.Tensor:
        """H×W×3 uint8 → 1×3×H×W in [0, 1] (the ControlNets' input range)."""
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        return tensor.to(self.device, self.dtype) / 255.0

    @staticmethod
    def _to_rgb(image: torch.Tensor) -> RGB:
        pixels = ((image[0].float() + 1) * 127.5).round().clamp(0, 255)
        return pixels.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
