"""Diffusion engine on tiny random-weight models written in the published Stable-Makeup layout.

CPU only, no network: HF_HUB_OFFLINE is set before huggingface_hub is imported, and any attempt to
connect a socket to a non-loopback address fails the test module.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # read by huggingface_hub at import time, so before the imports below

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.api import MakeupRequest
from engine.backends import EngineUnavailableError, create_engine
from engine.diffusion.compose import compose_full
from engine.diffusion.engine import DiffusionEngine, guidance_for, square_box
from engine.diffusion.layout import ModelLayout
from engine.diffusion.loading import CheckpointError
from engine.diffusion.pipeline import StableMakeupPipeline
from engine.diffusion.settings import DiffusionSettings
from engine.diffusion.structure import BLUE, CYAN, LIME, MAGENTA, draw_structure
from engine.embedded import EmbeddedEngine
from engine.faces import Face
from engine.images import load_image
from engine.regions import FACE_OVAL, LEFT_EYE, RIGHT_EYE
from engine.settings import EngineSettings
from facelab.cli import main as facelab_main
from tests.conftest import REPO_ROOT, face_path
from tests.diffusion_models import write_tiny_models
from tests.engine_helpers import LIMITS, backend, faces, mask, photo, solid_star_share, with_painted_star

# Slow: torch models (tiny ones) and the real engine on the shared photos.
pytestmark = pytest.mark.slow

SIZE = 64
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(scope="module", autouse=True)
def no_network() -> Iterator[list[object]]:
    """Refuse and record every connection to a non-loopback address; the module fails if there was one."""
    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:  # type: ignore[index]
            attempts.append(address)
            raise OSError(f"test tried to reach {address}: no network in these tests")

    def connect(sock: socket.socket, address: object) -> None:
        guard(sock, address)
        real_connect(sock, address)  # type: ignore[arg-type]

    def connect_ex(sock: socket.socket, address: object) -> int:
        guard(sock, address)
        return real_connect_ex(sock, address)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        yield attempts
    assert not attempts, f"non-loopback connections attempted: {attempts}"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_models(root)
    return root


@pytest.fixture(scope="module")
def pipeline(models_dir: Path) -> StableMakeupPipeline:
    # As the engine process does: on 2 shared cores a second torch thread only adds contention.
    torch.set_num_threads(1)
    return StableMakeupPipeline.from_pretrained(models_dir)


@pytest.fixture(scope="module")
def baseline(pipeline: StableMakeupPipeline) -> np.ndarray:
    """One default run (see _run), shared by the tests that compare against it."""
    return _run(pipeline)


@pytest.fixture(scope="module")
def settings(models_dir: Path) -> EngineSettings:
    diffusion = DiffusionSettings(models_dir=models_dir, device="cpu", size=SIZE, steps=4, denoise=0.5)
    return EngineSettings(backend="diffusion", diffusion=diffusion)


@pytest.fixture(scope="module")
def diffusion_engine(settings: EngineSettings, pipeline: StableMakeupPipeline) -> DiffusionEngine:
    return DiffusionEngine(settings, pipeline, EmbeddedEngine(settings, backend=backend()))


def _image(seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _face68(size: int = SIZE) -> np.ndarray:
    """A plausible frontal 68-point face filling a `size` square."""
    s = size / 256.0

    def ring(cx: float, cy: float, rx: float, ry: float, n: int) -> np.ndarray:
        a = np.linspace(0, 2 * np.pi, n, endpoint=False) + np.pi
        return np.c_[cx + rx * np.cos(a), cy + ry * np.sin(a)]

    t = np.linspace(0.05 * np.pi, 0.95 * np.pi, 17)
    parts = [
        np.c_[128 - 90 * np.cos(t), 120 + 100 * np.sin(t)],  # jaw
        np.c_[np.linspace(50, 110, 5), [90, 82, 80, 82, 88]],  # brows
        np.c_[np.linspace(146, 206, 5), [88, 82, 80, 82, 90]],
        np.c_[[128] * 4, np.linspace(100, 150, 4)],  # nose
        np.c_[np.linspace(108, 148, 5), [160, 164, 166, 164, 160]],
        ring(85, 112, 20, 8, 6),  # eyes
        ring(171, 112, 20, 8, 6),
        ring(128, 195, 40, 16, 12),  # outer and inner lips
        ring(128, 195, 25, 5, 8),
    ]
    return (np.concatenate(parts) * s).astype(np.float32)


def _run(pipeline: StableMakeupPipeline, **overrides: object) -> np.ndarray:
    args: dict[object, object] = {
        "selfie": _image(1),
        "reference": _image(2, 48),
        "structure": draw_structure([_face68()], SIZE, SIZE),
        "num_inference_steps": 4,
        "denoise": 0.5,  # the last 2 of 4 scheduler steps
        "guidance_scale": 1.6,
        "seed": 7,
    }
    args.update(overrides)
    selfie, reference, structure = args.pop("selfie"), args.pop("reference"), args.pop("structure")
    return pipeline(selfie, reference, structure, **args)  # type: ignore[arg-type]


def test_the_network_guard_refuses_outside_addresses(no_network: list[object]) -> None:
    with pytest.raises(OSError, match="no network"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1: never routed
    assert no_network == [("192.0.2.1", 443)]
    no_network.clear()  # this attempt was the test's own


# --- loading ---------------------------------------------------------------------------------------


def test_tiny_checkpoint_uses_the_published_key_names(models_dir: Path) -> None:
    keys = set(torch.load(ModelLayout(models_dir).makeup_encoder, weights_only=True))
    assert {
        "image_encoder.vision_model.embeddings.class_embedding",
        "image_encoder.vision_model.pre_layrnorm.weight",
        "image_encoder.vision_model.encoder.layers.0.self_attn.q_proj.weight",
        "resampler.attn.to_q.weight",
        "resampler.attn.to_out.0.bias",
        "resampler.ff.net.0.proj.weight",
        "resampler.ff.net.2.weight",
        "resampler.norm2.bias",
        "SSR_layers.1.to_k_SSR.weight",
        "SSR_layers.1.to_v_SSR.weight",
    } <= keys
    assert not any("post_layernorm" in key or key.startswith("SSR_layers.0.") for key in keys)


def test_loader_puts_every_published_tensor_in_place(
    models_dir: Path, pipeline: StableMakeupPipeline
) -> None:
    layout = ModelLayout(models_dir)
    makeup = torch.load(layout.makeup_encoder, weights_only=True)
    encoder, unet = pipeline.makeup_encoder, pipeline.unet
    first_cross_attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    mid_cross_attn = unet.mid_block.attentions[0].transformer_blocks[0].attn2
    last_position = len(unet.attn_processors) - 1  # the mid block's cross-attention comes last
    pairs = [
        (makeup["resampler.ff.net.2.weight"], encoder.resampler.ff.net[2].weight),
        (
            makeup["image_encoder.vision_model.encoder.layers.3.mlp.fc1.bias"],
            encoder.image_encoder.encoder.layers[3].mlp.fc1.bias,
        ),
        (makeup["SSR_layers.1.to_k_SSR.weight"], first_cross_attn.processor.to_k_SSR.weight),
        (makeup[f"SSR_layers.{last_position}.to_v_SSR.weight"], mid_cross_attn.processor.to_v_SSR.weight),
    ]
    for index, path in enumerate((layout.content_controlnet, layout.structure_controlnet)):
        controlnet = torch.load(path, weights_only=True)
        net = pipeline.controlnet.nets[index]
        pairs.append((controlnet["controlnet_mid_block.weight"], net.controlnet_mid_block.weight))
    for published, loaded in pairs:
        assert torch.equal(published, loaded)
    # SD1.5's schedule config (PNDM) is read as DDIM; clipping would clamp latents to [-1, 1].
    assert type(pipeline.scheduler).__name__ == "DDIMScheduler" and not pipeline.scheduler.config.clip_sample


@pytest.mark.parametrize(
    ("file_attr", "old", "new"),
    [
        ("makeup_encoder", "resampler.norm1.weight", "resampler.norm_1.weight"),
        ("makeup_encoder", "SSR_layers.3.to_v_SSR.weight", "SSR_layers.3.to_v_ssr.weight"),
        ("structure_controlnet", "controlnet_mid_block.bias", "controlnet_middle_block.bias"),
    ],
)
def test_a_renamed_key_is_an_error_naming_file_and_key(
    models_dir: Path, tmp_path: Path, file_attr: str, old: str, new: str
) -> None:
    broken = tmp_path / "models"
    shutil.copytree(models_dir, broken)
    path = getattr(ModelLayout(broken), file_attr)
    state = torch.load(path, weights_only=True)
    state[new] = state.pop(old)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        StableMakeupPipeline.from_pretrained(broken)
    message = str(error.value)
    assert str(path) in message
    assert f"missing key {old!r}" in message
    assert f"unexpected key {new!r}" in message


def test_missing_weights_are_reported_before_loading(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"pytorch_model_1\.bin"):
        StableMakeupPipeline.from_pretrained(tmp_path)


# --- img2img ---------------------------------------------------------------------------------------


def test_img2img_runs_two_steps_and_keeps_the_size(
    pipeline: StableMakeupPipeline, baseline: np.ndarray
) -> None:
    assert baseline.shape == (SIZE, SIZE, 3) and baseline.dtype == np.uint8
    timings: dict[str, float] = {}
    _run(pipeline, timings_ms=timings)
    steps = sorted(name for name in timings if name.startswith("step_"))
    assert steps == ["step_00", "step_01"]
    assert {"encode_makeup", "encode_selfie", "vae_decode"} <= timings.keys()


def test_same_seed_same_picture_other_seed_other_picture(
    pipeline: StableMakeupPipeline, baseline: np.ndarray
) -> None:
    assert np.array_equal(_run(pipeline), baseline)
    assert not np.array_equal(_run(pipeline, seed=8), baseline)


def test_float16_as_on_gpu_gives_the_float32_picture(models_dir: Path, baseline: np.ndarray) -> None:
    half = StableMakeupPipeline.from_pretrained(models_dir, dtype=torch.float16)
    processor = half.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.processor
    assert processor.to_k_SSR.weight.dtype == half.uncond_tokens.dtype == torch.float16
    assert np.abs(_run(half).astype(int) - baseline).max() <= 2


def test_denoise_zero_returns_the_selfie(pipeline: StableMakeupPipeline) -> None:
    selfie = _image(1)
    assert np.array_equal(_run(pipeline, selfie=selfie, denoise=0.0), selfie)


def test_reference_structure_and_guidance_all_steer_the_result(
    pipeline: StableMakeupPipeline, baseline: np.ndarray
) -> None:
    assert not np.array_equal(_run(pipeline, reference=_image(3, 48)), baseline)
    assert not np.array_equal(_run(pipeline, structure=np.zeros((SIZE, SIZE, 3), np.uint8)), baseline)
    assert not np.array_equal(_run(pipeline, guidance_scale=1.0), baseline)  # unguided: one UNet pass


def test_selfie_and_structure_sizes_must_match(pipeline: StableMakeupPipeline) -> None:
    with pytest.raises(ValueError, match="must match"):
        _run(pipeline, structure=np.zeros((32, 32, 3), np.uint8))


# --- structure drawing -----------------------------------------------------------------------------


def test_structure_drawing_colours_and_fills() -> None:
    points = _face68(256)
    drawing = draw_structure([points], 256, 256)
    assert drawing.shape == (256, 256, 3) and drawing.dtype == np.uint8
    assert tuple(drawing[0, 0]) == (0, 0, 0)  # black canvas
    assert tuple(drawing[195, 128]) == BLUE  # inside the inner lips (drawn over the outer ones)
    assert tuple(drawing[185, 100]) == CYAN  # between the outer and inner lips
    assert tuple(drawing[112, 85]) == MAGENTA  # inside an eye
    chin = drawing[216:, 128]  # below the lips this column crosses only the (level) jaw line at the chin
    lime = np.all(chin == LIME, axis=1)
    assert 3 <= lime.sum() <= 5  # a 4 px stroke; antialiased edge pixels are not pure lime


def test_structure_drawing_refuses_other_layouts() -> None:
    with pytest.raises(ValueError, match="68"):
        draw_structure([np.zeros((478, 2), np.float32)], 64, 64)


# --- engine: identity compositing and back-end selection ------------------------------------------


def _outside(face: Face, shape: tuple[int, ...], grow: float = 0.25) -> np.ndarray:
    """Pixels clearly outside the face: beyond its landmark box grown by `grow` per side."""
    x0, y0, x1, y1 = face.bbox
    gx, gy = int(grow * (x1 - x0)), int(grow * (y1 - y0))
    outside = np.ones(shape[:2], bool)
    outside[max(0, y0 - gy) : y1 + gy, max(0, x0 - gx) : x1 + gx] = False
    return outside


def test_diffusion_output_is_composited_onto_the_selfie(diffusion_engine: DiffusionEngine) -> None:
    selfie_name, reference_name = "sm_source_01.jpg", "sm_ref_01.jpg"
    request = MakeupRequest(
        selfie=face_path(selfie_name).read_bytes(),
        reference=face_path(reference_name).read_bytes(),
        strength=1.0,
        output_format="PNG",
    )
    result = diffusion_engine.apply(request)
    selfie, face = photo(selfie_name), faces(selfie_name)[0]
    image = load_image(result.image, **LIMITS)
    assert image.shape == selfie.shape and result.faces == 1
    stages = {
        "decode",
        "detect",
        "encode_makeup",
        "encode_selfie",
        "step_00",
        "vae_decode",
        "composite",
        "encode",
    }
    assert stages <= result.timings_ms.keys()
    outside = _outside(face, selfie.shape)
    assert np.array_equal(image[outside], selfie[outside])
    assert not np.array_equal(image, selfie)

    # The raw diffusion square does repaint around the face: the compositor is what keeps it out.
    generated = diffusion_engine.generate(
        selfie, face, photo(reference_name), faces(reference_name)[0], 1.0, timings={}
    )
    x0, y0, x1, y1 = square_box(face, *selfie.shape[:2])
    square = np.zeros(selfie.shape[:2], bool)
    square[y0:y1, x0:x1] = True
    assert not np.array_equal(generated[square & outside], selfie[square & outside])

    # Identity: the face's geometry is the selfie's (landmarks re-found within 3% of the eye distance).
    found = backend().detect(image)[0]
    drift = np.linalg.norm(found.landmarks - face.landmarks, axis=1).mean()
    assert drift < 0.03 * face.inter_ocular


def test_diffusion_engine_strength_zero_returns_the_selfie(diffusion_engine: DiffusionEngine) -> None:
    selfie = photo("sm_source_01.jpg")
    made_up = diffusion_engine.apply_array(selfie, photo("sm_ref_01.jpg"), strength=0.0)
    assert np.array_equal(made_up.image, selfie)


def _request(mode: str, **overrides: object) -> MakeupRequest:
    fields: dict[str, object] = {
        "selfie": face_path("sm_source_01.jpg").read_bytes(),
        "reference": face_path("sm_ref_01.jpg").read_bytes(),
        "strength": 1.0,
        "output_format": "PNG",
        "mode": mode,
    }
    fields.update(overrides)
    return MakeupRequest(**fields)  # type: ignore[arg-type]


def _polygon(face: Face, shape: tuple[int, ...], indices: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(face.landmarks[list(indices)]).astype(np.int32)], (1,))
    return mask.astype(bool)


def _high_pass(image: np.ndarray) -> np.ndarray:
    """Pixel-scale texture: skin grain, lashes, hair strands."""
    pixels = image.astype(np.float32)
    return pixels - cv2.GaussianBlur(pixels, (0, 0), 1.0)


def test_full_mode_paints_the_generated_face_inside_the_outline_only(
    diffusion_engine: DiffusionEngine,
) -> None:
    natural = load_image(diffusion_engine.apply(_request("natural")).image, **LIMITS)
    full_result = diffusion_engine.apply(_request("full"))
    full = load_image(full_result.image, **LIMITS)
    selfie, face = photo("sm_source_01.jpg"), faces("sm_source_01.jpg")[0]
    assert full.shape == selfie.shape and full_result.faces == 1
    assert not full_result.paint_left_out

    # Every pixel outside the face outline (grown by 2 px for the upscaled change) is the selfie's.
    oval = cv2.dilate(_polygon(face, selfie.shape, FACE_OVAL).view(np.uint8), np.ones((5, 5), np.uint8))
    assert np.array_equal(full[oval == 0], selfie[oval == 0])

    # Inside, the whole face takes the generated colour, not only the lips and lids: on the skin
    # (forehead and cheeks, where natural mode moves at most a few levels) full mode moves far more.
    skin = mask(selfie, face, "skin", above=0.9)
    full_change = np.abs(full.astype(int) - selfie)[skin].mean()
    natural_change = np.abs(natural.astype(int) - selfie)[skin].mean()
    assert full_change > 10 and full_change > 4 * natural_change

    # The selfie's detail layer and geometry are kept: the result's fine texture is the selfie's
    # (a pasted generated face would not correlate at all), and the landmarks are re-found in place.
    inner = cv2.erode(oval, np.ones((25, 25), np.uint8)).astype(bool)
    texture = np.corrcoef(_high_pass(full)[inner].ravel(), _high_pass(selfie)[inner].ravel())[0, 1]
    assert texture > 0.9
    found = backend().detect(full)[0]
    assert np.linalg.norm(found.landmarks - face.landmarks, axis=1).mean() < 0.03 * face.inter_ocular

    # The eyeballs and the inside of the mouth are never painted.
    openings = _polygon(face, selfie.shape, RIGHT_EYE) | _polygon(face, selfie.shape, LEFT_EYE)
    openings = cv2.erode(openings.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.array_equal(full[openings], selfie[openings])


def test_full_mode_keeps_the_edges_of_a_painted_pattern() -> None:
    # The compositor alone, with a reference photo standing in for a perfect generator: a painted
    # star keeps its points instead of arriving as a blurred blob.
    embedded = EmbeddedEngine(EngineSettings(), backend=backend())
    generated = embedded.prepare_reference(with_painted_star("shmt_ref_04.jpg"))
    for name in ("elegant_source_01.png", "sm_source_03.jpg"):
        selfie = photo(name)
        made_up = compose_full(selfie, generated, list(faces(name)), working_size=192, strength=1.0)
        assert solid_star_share(made_up, selfie) > 0.45, name


def test_natural_mode_says_when_the_references_paint_was_left_out(diffusion_engine: DiffusionEngine) -> None:
    assert diffusion_engine.apply(_request("natural")).paint_left_out  # the Joker's white face
    plain = _request("natural", reference=face_path("elegant_ref_02.png").read_bytes())
    assert not diffusion_engine.apply(plain).paint_left_out


def test_full_mode_with_regions_paints_only_those_regions(diffusion_engine: DiffusionEngine) -> None:
    selfie, face = photo("sm_source_01.jpg"), faces("sm_source_01.jpg")[0]
    lips_only = load_image(diffusion_engine.apply(_request("full", regions={"lips": 1.0})).image, **LIMITS)
    # Grown by 2 px: the change is drawn at working size and upscaled.
    lips_zone = cv2.dilate(mask(selfie, face, "lips", above=0.0).view(np.uint8), np.ones((5, 5), np.uint8))
    outside_lips = lips_zone == 0
    assert np.array_equal(lips_only[outside_lips], selfie[outside_lips])
    # The lips take the generated face's colour as it is, not natural mode's lipstick model.
    natural = load_image(diffusion_engine.apply(_request("natural", regions={"lips": 1.0})).image, **LIMITS)
    lips = mask(selfie, face, "lips")
    assert np.abs(lips_only.astype(int) - natural)[lips].mean() > 5


def test_full_mode_strength_zero_returns_the_selfie(diffusion_engine: DiffusionEngine) -> None:
    selfie = photo("sm_source_01.jpg")
    made_up = diffusion_engine.apply_array(selfie, photo("sm_ref_01.jpg"), strength=0.0, mode="full")
    assert np.array_equal(made_up.image, selfie)


# --- sampling presets ------------------------------------------------------------------------------


def test_presets_and_overrides() -> None:
    fast = DiffusionSettings().sampling
    assert (fast.steps, fast.denoise) == (20, 0.6)
    assert [guidance_for(s, fast) for s in (0.0, 0.5, 1.0)] == [1.0, 1.5, 2.0]
    faithful = DiffusionSettings(preset="faithful").sampling
    assert (faithful.steps, faithful.denoise) == (30, 1.0)
    assert {guidance_for(s, faithful) for s in (0.0, 0.7, 1.0)} == {1.6}  # the published guidance
    tuned = DiffusionSettings(preset="faithful", steps=12).sampling
    assert (tuned.steps, tuned.denoise, tuned.max_guidance) == (12, 1.0, 1.6)


def test_faithful_preset_runs_30_steps_from_pure_noise(
    models_dir: Path, pipeline: StableMakeupPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[torch.Tensor] = []
    step, encoded = pipeline.scheduler.step, []

    def counting_step(
        noise_pred: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, **kw: object
    ) -> object:
        steps.append(latents.clone())
        return step(noise_pred, t, latents, **kw)

    monkeypatch.setattr(pipeline.scheduler, "step", counting_step)
    monkeypatch.setattr(pipeline.vae, "encode", lambda *a, **kw: encoded.append(a))
    diffusion = DiffusionSettings(models_dir=models_dir, device="cpu", size=SIZE, preset="faithful", seed=3)
    settings = EngineSettings(backend="diffusion", diffusion=diffusion)
    engine = DiffusionEngine(settings, pipeline, EmbeddedEngine(settings, backend=backend()))
    selfie, face = photo("sm_source_01.jpg"), faces("sm_source_01.jpg")[0]
    engine.generate(selfie, face, photo("sm_ref_01.jpg"), faces("sm_ref_01.jpg")[0], 0.7, timings={})

    assert len(steps) == 30
    assert not encoded  # the selfie's latents are never used
    noise = torch.randn(steps[0].shape, generator=torch.Generator("cpu").manual_seed(3))
    assert torch.equal(steps[0], noise * pipeline.scheduler.init_noise_sigma)


def test_missing_weights_fall_back_to_the_embedded_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = EngineSettings(backend="diffusion", diffusion=DiffusionSettings(models_dir=tmp_path))
    with caplog.at_level("WARNING", logger="engine.backends"):
        engine = create_engine(settings)
    assert isinstance(engine, EmbeddedEngine)
    assert "falling back to the embedded CPU engine" in caplog.text
    assert "pytorch_model.bin" in caplog.text


def test_missing_gpu_falls_back_or_refuses_when_required(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    diffusion = DiffusionSettings(models_dir=models_dir, device="cuda")
    with caplog.at_level("WARNING", logger="engine.backends"):
        assert isinstance(
            create_engine(EngineSettings(backend="diffusion", diffusion=diffusion)), EmbeddedEngine
        )
    assert "no CUDA GPU" in caplog.text
    required = diffusion.model_copy(update={"required": True})
    with pytest.raises(EngineUnavailableError, match="no CUDA GPU"):
        create_engine(EngineSettings(backend="diffusion", diffusion=required))


def test_diffusion_backend_is_built_when_it_can_run(settings: EngineSettings) -> None:
    assert isinstance(create_engine(settings), DiffusionEngine)


# --- models check and import hygiene -------------------------------------------------------------


def test_models_check_lists_present_and_missing_files(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert facelab_main(["models", "check", "--models-dir", str(models_dir)]) == 0
    assert "MISSING" not in capsys.readouterr().out
    partial = tmp_path / "partial"
    shutil.copytree(models_dir, partial)
    ModelLayout(partial).structure_controlnet.unlink()
    assert facelab_main(["models", "check", "--models-dir", str(partial)]) == 1
    out = capsys.readouterr().out
    assert f"MISSING {ModelLayout(partial).structure_controlnet}" in out
    assert "github.com/Xiaojiu-z/Stable-Makeup" in out


def test_default_install_paths_never_import_torch() -> None:
    code = (
        "import sys, engine, engine.api, engine.embedded, engine.backends, engine.diffusion, "
        "engine.diffusion.layout, engine.diffusion.structure, facelab.commands.models, facelab.cli, "
        "facelab.commands.apply, facelab.commands.batch, bot.engine_process\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
