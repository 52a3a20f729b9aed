"""SD3 and FLUX.1: exact equalities with the stock pipelines, and what each family makes of the settings.

The invariants every family shares run on these too (``pipe`` in test_blend.py); here, the
references that are not our code path: stock ``StableDiffusion3Pipeline`` and ``FluxPipeline``
given the interpolated conditioning (TEXTUAL), or with the other prompt's conditioning swapped into
the transformer's call at the schedule's steps by a forward pre-hook (SWITCH, ALTERNATE).
"""

import pytest
import torch

from blending import InputError
from blending.methods import alternate, switch

from .conftest import STEPS
from .test_blend import close, run


@pytest.fixture(params=["sd3", "flux", "flux_schnell"])
def flow_pipe(request):
    return request.getfixturevalue(f"{request.param}_pipe")


def _is_flux(pipe) -> bool:
    return type(pipe).__name__ == "FluxPipeline"


def _prompt_states(pipe):
    """Both prompts' token states and pooled embeddings (1 x ... each), and the stock call's
    keywords for the rest of the conditioning (SD3: the negative prompt's, for guidance)."""
    if _is_flux(pipe):
        embeds, pooled, _ = pipe.encode_prompt(["lion", "cat"], None)
        return embeds, pooled, {}
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        ["lion", "cat"], None, None, do_classifier_free_guidance=True
    )
    return (
        embeds,
        pooled,
        {"negative_prompt_embeds": negative[:1], "negative_pooled_prompt_embeds": negative_pooled[:1]},
    )


def _stock(pipe, result, **kwargs):
    scale = result.settings["guidance_scale"]
    guidance = {} if scale is None else {"guidance_scale": scale}
    return pipe(
        generator=torch.Generator().manual_seed(21), num_inference_steps=STEPS, output_type="np", **guidance, **kwargs
    ).images[0]


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_textual_equals_the_stock_pipeline_given_interpolated_token_states_and_pooled_embeddings(flow_pipe, ratio):
    mine = run(flow_pipe, methods=("textual",), ratio=ratio)
    embeds, pooled, others = _prompt_states(flow_pipe)
    stock = _stock(
        flow_pipe,
        mine,
        prompt_embeds=(1 - ratio) * embeds[:1] + ratio * embeds[1:],
        pooled_prompt_embeds=(1 - ratio) * pooled[:1] + ratio * pooled[1:],
        **others,
    )
    assert close(mine.blends["textual"], stock)


@pytest.mark.parametrize("method", ["switch", "alternate"])
def test_switch_and_alternate_equal_the_stock_pipeline_with_prompt_2_swapped_in_at_their_steps(flow_pipe, method):
    mine = run(flow_pipe, methods=(method,))
    weights = {"switch": switch, "alternate": alternate}[method](0.5, STEPS, None).step_weights
    assert 0.0 in weights and 1.0 in weights
    embeds, pooled, _ = _prompt_states(flow_pipe)
    calls = []

    def swap(module, args, kwargs):
        step = len(calls)
        calls.append(step)
        if weights[step] == 1.0:
            states, vectors = kwargs["encoder_hidden_states"].clone(), kwargs["pooled_projections"].clone()
            # the last row is the conditional one (after the unconditional row under guidance)
            states[-1:], vectors[-1:] = embeds[1:], pooled[1:]
            kwargs = {**kwargs, "encoder_hidden_states": states, "pooled_projections": vectors}
        return args, kwargs

    handle = flow_pipe.transformer.register_forward_pre_hook(swap, with_kwargs=True)
    try:
        stock = _stock(flow_pipe, mine, prompt="lion")
    finally:
        handle.remove()
    assert len(calls) == STEPS
    assert close(mine.blends[method], stock)


def test_unet_is_refused_on_transformers_saying_why(flow_pipe):
    with pytest.raises(
        InputError, match=r"^methods: 'unet' splits a U-Net's encoder .* neither, so UNET is not defined"
    ):
        run(flow_pipe, methods=("switch", "unet"))


def test_each_family_records_what_guidance_scale_meant(sd3_pipe, flux_pipe, flux_schnell_pipe, sd1_pipe):
    recorded = {
        name: (result.settings["guidance_scale"], result.settings["guidance"], result.settings["family"])
        for name, result in (
            ("sd1", run(sd1_pipe, methods=("textual",))),
            ("sd3", run(sd3_pipe, methods=("textual",))),
            ("flux", run(flux_pipe, methods=("textual",))),
            ("schnell", run(flux_schnell_pipe, methods=("textual",))),
        )
    }
    assert recorded == {
        "sd1": (7.5, "classifier-free", "Stable Diffusion 1.x/2.x"),
        "sd3": (7.0, "classifier-free", "SD3"),
        "flux": (3.5, "distilled", "FLUX.1"),
        "schnell": (None, "none", "FLUX.1"),
    }


def test_flux_dev_guidance_is_the_transformers_input_not_unconditional_rows(flux_pipe):
    rows, guidance = [], []

    def record(module, args, kwargs):
        rows.append(kwargs["hidden_states"].shape[0])
        guidance.append(kwargs["guidance"].clone())

    handle = flux_pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        result = run(flux_pipe, methods=("textual", "switch"), guidance_scale=5.0)
    finally:
        handle.remove()
    assert rows == [4] * STEPS  # one row per image
    assert all(torch.equal(g, torch.full((4,), 5.0)) for g in guidance)
    assert close(result.prompt_1, _stock(flux_pipe, result, prompt="lion"))


def test_flux_refuses_what_it_cannot_do(flux_pipe, flux_schnell_pipe):
    with pytest.raises(InputError, match="^guidance_scale: this FLUX.1 transformer .schnell. takes no guidance"):
        run(flux_schnell_pipe, methods=("textual",), guidance_scale=3.5)
    with pytest.raises(InputError, match="^negative_prompt: FLUX.1 has no unconditional rows"):
        run(flux_pipe, methods=("textual",), negative_prompt="blurry")
    with pytest.raises(InputError, match="^height must be a positive multiple of"):
        run(flux_pipe, methods=("textual",), height=42)  # tokens are 4x4 pixels here (16x16 in FLUX.1)


def test_flux_takes_the_stock_pipelines_packed_latents(flux_pipe):
    by_seed = run(flux_pipe, methods=("switch",), seed=4)
    channels = flux_pipe.transformer.config.in_channels
    generator = torch.Generator().manual_seed(4)
    noise = flux_pipe.prepare_latents(1, channels // 4, 32, 32, torch.float32, torch.device("cpu"), generator)[0]
    assert tuple(noise.shape) == (1, 64, channels)  # 32x32 pixels: 8x8 tokens of 2x2 latent patches
    by_latents = run(flux_pipe, methods=("switch",), seed=4, latents=noise)
    assert close(by_seed.blends["switch"], by_latents.blends["switch"], 0)
    with pytest.raises(InputError, match=rf"^latents must be a tensor of shape \(1, 64, {channels}\)"):
        run(flux_pipe, methods=("switch",), latents=torch.zeros(1, 16, 16, 16))


def test_batches_of_any_size_give_the_same_images(flow_pipe):
    whole = run(flow_pipe, methods=("textual", "switch", "alternate"))
    batched = run(flow_pipe, methods=("textual", "switch", "alternate"), max_batch_size=2)
    for method in ("textual", "switch", "alternate"):
        assert close(whole.blends[method], batched.blends[method]), method


def test_without_methods_every_method_the_family_defines_runs(flow_pipe, sd1_pipe):
    from blending import blend

    kwargs = {"seed": 1, "num_inference_steps": 2, "output_type": "latent", "progress": False}
    assert list(blend(flow_pipe, "lion", "cat", **kwargs).blends) == ["textual", "switch", "alternate"]
    assert list(blend(sd1_pipe, "lion", "cat", **kwargs).blends) == ["textual", "switch", "unet", "alternate"]


def test_load_pipeline_loads_their_folders_with_the_checkpoints_own_scheduler(flow_pipe, tmp_path):
    from blending import load_pipeline

    flow_pipe.save_pretrained(tmp_path / "pipe", safe_serialization=True)
    loaded = load_pipeline(tmp_path / "pipe", device="cpu")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is type(flow_pipe) and type(loaded.scheduler) is type(flow_pipe.scheduler)
    size = {"height": 32, "width": 32}  # the tiny pipelines' default size is set on the object, not saved
    again, original = run(loaded, methods=("textual",), **size), run(flow_pipe, methods=("textual",), **size)
    assert close(again.prompt_1, original.prompt_1) and close(again.blends["textual"], original.blends["textual"])
