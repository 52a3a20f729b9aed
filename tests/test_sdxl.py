"""SDXL: what only SDXL has (two encoders, the pooled embedding, size and crop ids), against stock
StableDiffusionXLPipeline. The invariants every family shares run on SDXL too (``pipe`` in
test_blend.py and test_paths.py)."""

import json

import numpy as np
import pytest
import torch

from blending import blend, load_pipeline
from blending.attention import cross_attention_layout, interpolate
from blending.sampling import check_pipeline
from blending.testing.components import architecture, unet_skeleton

from .conftest import STEPS
from .test_blend import close, run


def _by_part(unet) -> list[int]:
    layout = cross_attention_layout(unet)
    parts = [name.split(".")[0] for name in layout.names]
    return [parts.count(part) for part in ("down_blocks", "mid_block", "up_blocks")]


def test_sdxl_layouts_come_from_the_same_cross_attention_layout():
    facts = architecture("sdxl-base-1.0")["facts"]["cross_attention_layers"]
    assert _by_part(unet_skeleton("sdxl-base-1.0")) == [facts["down_blocks"], facts["mid_block"], facts["up_blocks"]]
    assert _by_part(unet_skeleton("sdxl-base-1.0")) == [24, 10, 36]


def test_the_tiny_sdxl_pipeline_is_shaped_like_sdxl(sdxl_pipe):
    sdxl = architecture("sdxl-base-1.0")["unet"]
    config = sdxl_pipe.unet.config
    for key in ("down_block_types", "up_block_types", "addition_embed_type", "use_linear_projection"):
        assert list(np.atleast_1d(getattr(config, key))) == list(np.atleast_1d(sdxl[key])), key
    assert _by_part(sdxl_pipe.unet) == [6, 2, 9]  # SDXL's blocks with fewer transformer layers


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_textual_equals_stock_sdxl_with_interpolated_token_states_and_pooled_embedding(sdxl_pipe, ratio):
    mine = run(sdxl_pipe, methods=("textual",), ratio=ratio)
    embeds, _, pooled, _ = sdxl_pipe.encode_prompt(["lion", "cat"], do_classifier_free_guidance=False)
    weight = torch.tensor([ratio])
    stock = sdxl_pipe(
        prompt_embeds=interpolate(embeds[:1], embeds[1:], weight),
        pooled_prompt_embeds=interpolate(pooled[:1], pooled[1:], weight),
        generator=torch.Generator("cpu").manual_seed(21),
        num_inference_steps=STEPS,
        guidance_scale=7.5,  # stock SDXL's default is 5.0; blend's is the paper's 7.5
        output_type="np",
    ).images[0]
    assert close(mine.blends["textual"], stock)


def test_plain_images_equal_stock_sdxl_at_another_size(sdxl_pipe):
    """original_size and target_size default to the image size, as in stock SDXL."""
    mine = run(sdxl_pipe, methods=("switch",), height=48, width=80)
    stock = sdxl_pipe(
        "lion",
        generator=torch.Generator("cpu").manual_seed(21),
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        height=48,
        width=80,
        output_type="np",
    ).images[0]
    assert stock.shape == (48, 80, 3)
    assert close(mine.prompt_1, stock)


def test_switch_and_alternate_switch_the_pooled_embedding_with_the_token_states(sdxl_pipe):
    """SWITCH at step 0 is prompt 2's image: the pooled embedding switched too."""
    result = run(sdxl_pipe, methods=("switch",), switch_step=0)
    assert close(result.blends["switch"], result.prompt_2)


def test_unet_pooled_choices_change_the_image_and_only_ratio_keeps_the_plain_images(sdxl_pipe):
    """UNET's pooled embedding matters on the test model: each choice draws another image."""
    images = {
        choice: run(sdxl_pipe, methods=("unet",), unet_pooled=choice) for choice in ("ratio", "prompt_1", "prompt_2")
    }
    unet = {choice: result.blends["unet"] for choice, result in images.items()}
    assert not close(unet["prompt_1"], unet["prompt_2"], 1e-3)
    assert not close(unet["ratio"], unet["prompt_1"], 1e-3) and not close(unet["ratio"], unet["prompt_2"], 1e-3)
    # at ratio 1 every layer sees prompt 2: with prompt 1's pooled embedding that is not prompt 2's image
    at_1 = run(sdxl_pipe, methods=("unet",), ratio=1.0, unet_pooled="prompt_1")
    assert not close(at_1.blends["unet"], at_1.prompt_2, 1e-3)
    assert close(run(sdxl_pipe, methods=("unet",), ratio=1.0).blends["unet"], at_1.prompt_2)


def test_unet_pooled_is_checked(sdxl_pipe, sd1_pipe):
    with pytest.raises(ValueError, match="unet_pooled must be one of"):
        run(sdxl_pipe, methods=("unet",), unet_pooled="both")
    with pytest.raises(ValueError, match="unet_pooled is only used by the 'unet' method"):
        run(sdxl_pipe, methods=("switch",), unet_pooled="prompt_1")
    with pytest.raises(ValueError, match="unet_pooled: Stable Diffusion 1.x/2.x has no pooled embedding"):
        run(sd1_pipe, methods=("unet",), unet_pooled="prompt_1")


def test_one_unet_call_per_step_with_pooled_embedding_and_time_ids_per_row(sdxl_pipe):
    calls = []

    def record(module, args, kwargs, output):
        added = kwargs["added_cond_kwargs"]
        calls.append((args[0].shape[0], added["text_embeds"].shape[0], added["time_ids"].shape[0]))

    handle = sdxl_pipe.unet.register_forward_hook(record, with_kwargs=True)
    try:
        run(sdxl_pipe)
    finally:
        handle.remove()
    assert calls == [(12, 12, 12)] * STEPS  # 6 images, each with its unconditional row


def test_unsupported_pipelines_raise_one_error_naming_pipe(sdxl_pipe):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    refiner_like = StableDiffusionXLImg2ImgPipeline(**sdxl_pipe.components)
    with pytest.raises(
        ValueError,
        match=r"^pipe must be .*StableDiffusionXLPipeline.*not supported; got StableDiffusionXLImg2ImgPipeline",
    ):
        check_pipeline(refiner_like)
    with pytest.raises(ValueError, match="pipe must be"):
        blend(object(), "lion", "cat")


def test_load_pipeline_loads_an_sdxl_folder_and_refuses_pickles(sdxl_pipe, tmp_path):
    sdxl_pipe.save_pretrained(tmp_path / "sdxl", safe_serialization=True)
    loaded = load_pipeline(tmp_path / "sdxl", device="cpu")
    assert type(loaded).__name__ == "StableDiffusionXLPipeline"
    loaded.set_progress_bar_config(disable=True)
    assert close(run(loaded, methods=("textual",)).prompt_1, run(sdxl_pipe, methods=("textual",)).prompt_1)

    for weights in (tmp_path / "sdxl" / "text_encoder_2").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ValueError, match="no safetensors weights in text_encoder_2/"):
        load_pipeline(tmp_path / "sdxl", device="cpu")


def test_load_pipeline_names_a_pipeline_it_does_not_support(sdxl_pipe, tmp_path):
    folder = tmp_path / "inpainting"
    sdxl_pipe.save_pretrained(folder, safe_serialization=True)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps(dict(index, _class_name="StableDiffusionXLInpaintPipeline")))
    with pytest.raises(ValueError, match="model: .* is a StableDiffusionXLInpaintPipeline; blending needs"):
        load_pipeline(folder, device="cpu")


@pytest.mark.parametrize("name", ["euler", "euler-ancestral", "dpm-solver++-sde"])
def test_sdxl_with_other_schedulers_matches_stock_and_batches_alike(sdxl_pipe, name):
    """Schedulers (stochastic ones included) and max_batch_size work on SDXL as on SD."""
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    scheduler_class, config = {
        "euler": (EulerDiscreteScheduler, {}),
        "euler-ancestral": (EulerAncestralDiscreteScheduler, {}),
        "dpm-solver++-sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}),
    }[name]
    components = {
        **sdxl_pipe.components,
        "scheduler": scheduler_class.from_config(sdxl_pipe.scheduler.config, **config),
    }
    pipe = type(sdxl_pipe)(**components)
    pipe.set_progress_bar_config(disable=True)
    together = run(pipe)
    in_twos = run(pipe, max_batch_size=2)
    stock = pipe(
        "cat",
        generator=torch.Generator("cpu").manual_seed(21),
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        output_type="np",
    ).images[0]
    assert close(together.prompt_2, stock)
    for method, image in together.blends.items():
        assert close(in_twos.blends[method], image), method
