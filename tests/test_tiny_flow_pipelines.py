"""The tiny SD3 and FLUX.1 pipelines (blending.testing.pipelines): stock diffusers runs them at
32x32 in 2 steps, the same seed draws the same picture, and the prompt, T5's included, steers it."""

import numpy as np
import pytest
import torch

from blending.testing.components import t5_tokenizer
from blending.testing.pipelines import tiny_flux_pipeline, tiny_sd3_pipeline

BUILDERS = {
    "sd3": tiny_sd3_pipeline,
    "flux-dev": lambda seed=0: tiny_flux_pipeline("dev", seed=seed),
    "flux-schnell": lambda seed=0: tiny_flux_pipeline("schnell", seed=seed),
}

#: The smallest mean absolute pixel difference (pixels in [0, 1]) that counts as "steered": float
#: noise is below 1e-6; the tiny pipelines' prompts move pictures by 4e-3 and more.
STEERED = 1e-3


@pytest.fixture(scope="module", params=list(BUILDERS))
def flow_pipe(request):
    pipe = BUILDERS[request.param]()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, prompt="lion", seed=0, **kwargs):
    kwargs = {"height": 32, "width": 32, **kwargs}
    return pipe(
        prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs
    ).images


def test_runs_stock_at_32x32(flow_pipe):
    image = draw(flow_pipe)
    assert image.shape == (1, 32, 32, 3)
    assert np.isfinite(image).all() and 0 <= image.min() and image.max() <= 1
    assert image.std() > 0.01  # not a flat picture


def test_default_size_is_32x32(flow_pipe):
    assert draw(flow_pipe, height=None, width=None).shape == (1, 32, 32, 3)


def test_same_seed_same_picture(flow_pipe):
    assert np.array_equal(draw(flow_pipe), draw(flow_pipe))
    assert np.abs(draw(flow_pipe) - draw(flow_pipe, seed=1)).mean() > STEERED


def test_prompt_steers_the_picture(flow_pipe):
    assert np.abs(draw(flow_pipe, "lion") - draw(flow_pipe, "cat")).mean() > STEERED


def test_t5_prompt_steers_the_picture(flow_pipe):
    """T5's tokens alone (FLUX's ``prompt_2``, SD3's ``prompt_3``), the CLIP prompt kept."""
    t5_prompt = "prompt_3" if "3" in type(flow_pipe).__name__ else "prompt_2"
    assert np.abs(draw(flow_pipe, "lion") - draw(flow_pipe, "lion", **{t5_prompt: "cat"})).mean() > STEERED


@pytest.mark.parametrize("name", list(BUILDERS))
def test_same_seed_same_weights(name):
    first, second = BUILDERS[name](seed=0), BUILDERS[name](seed=0)
    for component, module in first.components.items():
        if isinstance(module, torch.nn.Module):
            other = second.components[component].state_dict()
            assert all(torch.equal(value, other[key]) for key, value in module.state_dict().items()), component
    assert not torch.equal(BUILDERS[name](seed=1).transformer.proj_out.weight, first.transformer.proj_out.weight)


def test_flux_variants_guidance_and_schedule():
    dev, schnell = tiny_flux_pipeline("dev"), tiny_flux_pipeline("schnell")
    assert dev.transformer.config.guidance_embeds is True
    assert schnell.transformer.config.guidance_embeds is False
    assert dev.scheduler.config.use_dynamic_shifting and not schnell.scheduler.config.use_dynamic_shifting
    assert schnell.scheduler.config.shift == 1.0
    assert dev.transformer.config.in_channels == 4 * dev.vae.config.latent_channels == 64
    with pytest.raises(ValueError, match="variant"):
        tiny_flux_pipeline("pro")


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_flux_guidance_scale(variant):
    """dev embeds the guidance scale; schnell has no guidance embedding, so the scale is ignored."""
    pipe = tiny_flux_pipeline(variant)
    pipe.set_progress_bar_config(disable=True)
    change = np.abs(draw(pipe, guidance_scale=3.5) - draw(pipe, guidance_scale=1.0)).mean()
    assert change > STEERED if variant == "dev" else change == 0


def test_sd3_shapes():
    pipe = tiny_sd3_pipeline()
    config = pipe.transformer.config
    assert pipe.vae.config.latent_channels == config.in_channels == 16
    clip_widths = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    assert clip_widths < config.joint_attention_dim == pipe.text_encoder_3.config.d_model  # padded, as SD3
    assert config.pooled_projection_dim == (
        pipe.text_encoder.config.projection_dim + pipe.text_encoder_2.config.projection_dim
    )
    assert pipe.scheduler.config.shift == 3.0


def test_t5_tokenizer():
    tokenizer = t5_tokenizer()
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    lion, cat, photo = (tokenizer(text).input_ids for text in ("lion", "cat", "a photo of a"))
    for ids in (lion, cat, photo):
        assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids
    assert lion != cat and set(lion[:-1]).isdisjoint(cat[:-1])
    assert tokenizer.decode(photo, skip_special_tokens=True) == "a photo of a"
    padded = tokenizer("lion", padding="max_length", max_length=8, return_tensors="pt").input_ids
    assert padded.tolist() == [lion + [tokenizer.pad_token_id] * (8 - len(lion))]
    assert tokenizer.model_max_length == 512
