"""The two pieces Stable-Makeup adds to Stable Diffusion 1.5, as torch modules.

- `MakeupEncoder`: a CLIP ViT vision tower whose hidden states of every second layer are concatenated
  along the token axis, then refined by one transformer block (`TokenResampler`). Its tokens replace the
  text prompt of the UNet.
- `MakeupCrossAttnProcessor`: installed on every UNet cross-attention layer; it keeps the layer's query
  and output projections but reads keys and values of the makeup tokens through its own projections.

Attribute names that appear in state-dict keys (`to_k_SSR`, `attn.to_out.0`, `ff.net.2`, ...) are fixed by
the published checkpoint `pytorch_model.bin`; `loading.py` checks every one of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

# The published resampler's attention shape, independent of the CLIP width it runs on.
RESAMPLER_HEADS = 8
RESAMPLER_HEAD_DIM = 64


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = (
            proj(x).view(batch, tokens, self.heads, -1).transpose(1, 2)
            for proj in (self.to_q, self.to_k, self.to_v)
        )
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, -1))


class _GatedGelu(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        # Index 1 held a dropout in training; the placeholder keeps the checkpoint's `net.2` index.
        self.net = nn.Sequential(_GatedGelu(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TokenResampler(nn.Module):
    """One pre-norm transformer block over the concatenated CLIP tokens (width unchanged)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = _SelfAttention(dim, RESAMPLER_HEADS, RESAMPLER_HEAD_DIM)
        self.ff = _FeedForward(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class MakeupEncoder(nn.Module):
    """Reference photo (CLIP-normalised pixels) → makeup tokens of width `config.hidden_size`."""

    def __init__(self, config: CLIPVisionConfig) -> None:
        super().__init__()
        self.image_encoder = CLIPVisionModel(config)
        # Only hidden states are used: the pooled output's final norm is absent from the checkpoint.
        self.image_encoder.post_layernorm = nn.Identity()  # type: ignore[assignment]
        self.resampler = TokenResampler(config.hidden_size)

    @property
    def image_size(self) -> int:
        size = self.image_encoder.config.image_size
        assert isinstance(size, int), "CLIP configs give one square image size"
        return size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.image_encoder(pixel_values, output_hidden_states=True).hidden_states
        # hidden[0] is the embedding output; [2::2] are the outputs of layers 2, 4, ..., N.
        return self.resampler(torch.cat(hidden[2::2], dim=1))


class MakeupCrossAttnProcessor(nn.Module):
    """Cross-attention onto makeup tokens: the layer's own query and output, new key/value projections."""

    def __init__(self, hidden_size: int, token_dim: int) -> None:
        super().__init__()
        self.to_k_SSR = nn.Linear(token_dim, hidden_size, bias=False)
        self.to_v_SSR = nn.Linear(token_dim, hidden_size, bias=False)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise ValueError("makeup cross-attention needs the makeup tokens as encoder_hidden_states")
        batch, tokens, _ = hidden_states.shape
        heads = attn.heads

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2)

        query = split_heads(attn.to_q(hidden_states))
        key = split_heads(self.to_k_SSR(encoder_hidden_states))
        value = split_heads(self.to_v_SSR(encoder_hidden_states))
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, tokens, -1).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


def install_makeup_processors(
    unet: UNet2DConditionModel, token_dim: int
) -> dict[int, MakeupCrossAttnProcessor]:
    """Give every cross-attention layer a makeup processor (self-attention keeps plain SDPA).

    Returns the makeup processors keyed by their position in the UNet's processor order, which is how the
    published checkpoint numbers them (`SSR_layers.<position>`; self-attention positions hold no weights).
    """
    processors: dict[str, MakeupCrossAttnProcessor | AttnProcessor2_0] = {}
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            attention = unet.get_submodule(name.removesuffix(".processor"))
            processors[name] = MakeupCrossAttnProcessor(attention.to_q.out_features, token_dim)
        else:
            processors[name] = AttnProcessor2_0()
    # set_attn_processor empties the dict it is given, hence the copy.
    unet.set_attn_processor(dict(processors))
    return {
        position: proc
        for position, proc in enumerate(processors.values())
        if isinstance(proc, MakeupCrossAttnProcessor)
    }
