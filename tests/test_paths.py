"""Paths our users take that the paper's setup does not: no guidance, negative prompts, low
precision, v-prediction, a compiled U-Net, and pipelines the methods do not support."""

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)

from blending import METHODS, blend, load_pipeline
from blending.testing.pipelines import tiny_pipeline
from blending.testing.stock import batch_sizes

from .conftest import STEPS
from .test_blend import close, methods_for

ALL = tuple(METHODS)


def run(pipe, ratio=0.5, methods=ALL, **kwargs):
    kwargs.setdefault("seed", 21)
    return blend(
        pipe, "lion", "cat", methods, ratio, num_inference_steps=STEPS, output_type="np", progress=False, **kwargs
    )


def stock(pipe, prompt, **kwargs):
    kwargs.setdefault("guidance_scale", 7.5)  # blend's default on the U-Net families; stock SDXL's is 5.0
    return pipe(
        prompt, generator=torch.Generator().manual_seed(21), num_inference_steps=STEPS, output_type="np", **kwargs
    ).images[0]


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("guidance_scale", [1.0, 0.5])
def test_without_guidance_there_are_no_unconditional_rows(cfg_pipe, guidance_scale):
    pipe = cfg_pipe
    methods = methods_for(pipe)
    network = getattr(pipe, "unet", None) or pipe.transformer
    rows = batch_sizes(network, lambda: run(pipe, guidance_scale=guidance_scale, methods=methods))
    assert rows == [2 + len(methods)] * STEPS
    result = run(pipe, guidance_scale=guidance_scale, methods=methods)
    assert close(result.prompt_1, stock(pipe, "lion", guidance_scale=guidance_scale))
    at_1 = run(pipe, ratio=1.0, guidance_scale=guidance_scale, methods=methods)
    for method in methods:
        assert close(at_1.blends[method], at_1.prompt_2), method


def test_a_negative_prompt_changes_the_images_as_in_stock_diffusers(cfg_pipe):
    pipe = cfg_pipe
    methods = methods_for(pipe)
    without = run(pipe, methods=methods)
    negative = run(pipe, negative_prompt="blurry", methods=methods)
    assert not close(without.prompt_1, negative.prompt_1, 1e-3)
    for method in methods:
        assert not close(without.blends[method], negative.blends[method], 1e-3), method
    guidance = {"guidance_scale": negative.settings["guidance_scale"]}
    assert close(negative.prompt_1, stock(pipe, "lion", negative_prompt="blurry", **guidance))
    assert close(negative.prompt_2, stock(pipe, "cat", negative_prompt="blurry", **guidance))
    assert negative.settings["negative_prompt"] == "blurry"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_blends_in_that_precision(dtype):
    pipe = quiet(tiny_pipeline("sd1", seed=0).to(dtype))
    result = run(pipe)
    assert result.settings["dtype"] == str(dtype).removeprefix("torch.")
    # the same kernels on a batch of 6 and a batch of 1 can round differently at 8 bits of mantissa
    assert close(result.prompt_1, stock(pipe, "lion"), 0.02)
    at_0 = run(pipe, ratio=0.0)
    for method in ALL:
        assert close(at_0.blends[method], at_0.prompt_1, 0.02), method
    latents = blend(
        pipe, "lion", "cat", ("unet",), seed=21, num_inference_steps=STEPS, output_type="latent", progress=False
    )
    assert latents.prompt_1.dtype == dtype


def test_load_pipeline_honours_the_dtype_it_is_given():
    pipe = quiet(load_pipeline("embedded", device="cpu", dtype=torch.bfloat16))
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.bfloat16}
    result = blend(
        pipe,
        "a red circle",
        "a blue star",
        ("switch",),
        seed=1,
        num_inference_steps=STEPS,
        output_type="np",
        progress=False,
    )
    assert result.settings["dtype"] == "bfloat16"
    assert np.isfinite(result.blends["switch"]).all()


def test_a_v_prediction_model_blends_with_its_own_parameterisation(sd2_pipe):
    """SD 2.x (768 px) predicts v, not the noise; the scheduler's prediction_type says so."""
    from diffusers import UniPCMultistepScheduler

    components = {
        **sd2_pipe.components,
        "scheduler": UniPCMultistepScheduler.from_config(sd2_pipe.scheduler.config, prediction_type="v_prediction"),
    }
    pipe = quiet(StableDiffusionPipeline(**components, requires_safety_checker=False))
    result = run(pipe)
    assert close(result.prompt_1, stock(pipe, "lion")) and close(result.prompt_2, stock(pipe, "cat"))
    assert not close(result.prompt_1, run(sd2_pipe).prompt_1, 1e-3)  # the parameterisation is used
    at_1 = run(pipe, ratio=1.0)
    for method in ALL:
        assert close(at_1.blends[method], at_1.prompt_2), method


def test_a_compiled_unet_runs_and_gives_the_same_images():
    pipe = quiet(tiny_pipeline("sd1", seed=0))
    eager = blend(pipe, "lion", "cat", ALL, seed=2, num_inference_steps=2, output_type="np", progress=False)
    pipe.unet = torch.compile(pipe.unet)
    compiled = blend(pipe, "lion", "cat", ALL, seed=2, num_inference_steps=2, output_type="np", progress=False)
    assert type(pipe.unet).__name__ == "OptimizedModule"
    for method in ALL:
        assert close(eager.blends[method], compiled.blends[method], 1e-4), method


def _unsupported_pipelines(sd1_pipe):
    components = dict(sd1_pipe.components)
    img2img = StableDiffusionImg2ImgPipeline(
        **{k: components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    unet_config = {
        k: v for k, v in sd1_pipe.unet.config.items() if not k.startswith("_")
    }  # "_use_default_values" would drop our keys
    inpainting = StableDiffusionPipeline(
        **{**components, "unet": UNet2DConditionModel.from_config({**unet_config, "in_channels": 9})},
        requires_safety_checker=False,
    )
    sdxl_unet = UNet2DConditionModel.from_config(
        {
            **unet_config,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 32 + 6 * 8,
        }
    )
    sdxl_shaped = StableDiffusionPipeline(**{**components, "unet": sdxl_unet}, requires_safety_checker=False)
    return {
        "img2img": (
            img2img,
            "pipe must be a StableDiffusionPipeline .* not supported; got StableDiffusionImg2ImgPipeline",
        ),
        "inpainting U-Net": (inpainting, "pipe: its U-Net takes 9 input channels, not the VAE's 4"),
        "SDXL-style U-Net": (
            sdxl_shaped,
            "pipe: its U-Net's addition_embed_type is 'text_time', Stable Diffusion 1.x/2.x needs None",
        ),
        "a VAE": (AutoencoderKL(), "pipe must be a StableDiffusionPipeline .*; got AutoencoderKL"),
    }


def test_unsupported_pipelines_are_refused_naming_pipe_before_any_work(sd1_pipe):
    for name, (pipe, message) in _unsupported_pipelines(sd1_pipe).items():
        calls = []
        modules = [
            m
            for m in (getattr(pipe, "unet", None), getattr(pipe, "text_encoder", None), getattr(pipe, "vae", None))
            if m is not None
        ]
        hooks = [m.register_forward_hook(lambda *args, calls=calls: calls.append(1)) for m in modules]
        try:
            with pytest.raises(ValueError, match=message):
                blend(pipe, "lion", "cat", num_inference_steps=STEPS, progress=False)
        finally:
            for hook in hooks:
                hook.remove()
        assert calls == [], name
