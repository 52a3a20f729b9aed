"""blend(): the invariants of the methods, on every family's tiny pipeline (``pipe``), and what only
the U-Net families have (``unet_pipe``)."""

import logging

import numpy as np
import pytest
import torch

from blending import METHODS, InputError, blend, blend_seeds
from blending.attention import cross_attention_layout

from .conftest import STEPS

ALL = tuple(METHODS)
TOL = 1e-5


def methods_for(pipe) -> tuple[str, ...]:
    """Every method the pipeline's family defines: UNET needs a U-Net."""
    return tuple(m for m in METHODS if m != "unet" or hasattr(pipe, "unet"))


def stock_guidance(result) -> dict:
    """The stock pipeline's ``guidance_scale`` for what ``blend`` used (none for FLUX.1 schnell)."""
    scale = result.settings["guidance_scale"]
    return {} if scale is None else {"guidance_scale": scale}


def run(pipe, prompt_1="lion", prompt_2="cat", methods=None, ratio=0.5, **kwargs):
    methods = methods_for(pipe) if methods is None else methods
    kwargs.setdefault("seed", 21)
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    return blend(pipe, prompt_1, prompt_2, methods, ratio, progress=False, **kwargs)


def close(a, b, tol=TOL):
    return np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max() <= tol


def test_ratio_0_gives_prompt_1_and_ratio_1_gives_prompt_2(pipe):
    at_0 = run(pipe, ratio=0.0)
    at_1 = run(pipe, ratio=1.0)
    assert not close(at_0.prompt_1, at_0.prompt_2)
    for method in methods_for(pipe):
        assert close(at_0.blends[method], at_0.prompt_1), method
        assert close(at_1.blends[method], at_1.prompt_2), method


def test_unet_with_one_prompt_twice_is_the_plain_image(unet_pipe):
    result = run(unet_pipe, "lion", "lion", methods=("unet",))
    assert close(result.blends["unet"], result.prompt_1)


def test_each_method_at_half_differs_from_both_plain_images(pipe):
    result = run(pipe)
    for method in methods_for(pipe):
        assert not close(result.blends[method], result.prompt_1, 1e-3), method
        assert not close(result.blends[method], result.prompt_2, 1e-3), method


@pytest.mark.parametrize("prompt", ["lion", "cat"])
def test_plain_images_equal_the_stock_pipeline(pipe, prompt):
    result = run(pipe, methods=("textual",))
    stock = pipe(
        prompt,
        generator=torch.Generator("cpu").manual_seed(21),
        num_inference_steps=STEPS,
        output_type="np",
        **stock_guidance(result),
    ).images[0]
    assert close(result.prompt_1 if prompt == "lion" else result.prompt_2, stock)


def test_the_batch_gives_each_method_what_it_gives_alone(pipe):
    together = run(pipe)
    for method in methods_for(pipe):
        alone = run(pipe, methods=(method,))
        assert close(together.blends[method], alone.blends[method]), method
        assert close(together.prompt_1, alone.prompt_1)


def test_blends_come_in_the_order_asked(sd1_pipe):
    assert list(run(sd1_pipe, methods=("alternate", "textual")).blends) == ["alternate", "textual"]


def test_same_seed_same_images_and_another_seed_other_images(sd1_pipe):
    first, again, other = run(sd1_pipe, seed=5), run(sd1_pipe, seed=5), run(sd1_pipe, seed=6)
    for method in ALL:
        assert np.array_equal(first.blends[method], again.blends[method])
        assert not close(first.blends[method], other.blends[method], 1e-3)


def test_default_seed_is_0_and_a_generator_or_latents_give_the_same_noise(sd1_pipe):
    by_default = blend(
        sd1_pipe, "lion", "cat", ("switch",), num_inference_steps=STEPS, output_type="np", progress=False
    )
    by_seed = run(sd1_pipe, methods=("switch",), seed=0)
    by_generator = run(sd1_pipe, methods=("switch",), seed=None, generator=torch.Generator().manual_seed(0))
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    by_latents = run(sd1_pipe, methods=("switch",), seed=None, latents=noise)
    assert by_default.settings["seed"] == 0
    for other in (by_seed, by_generator, by_latents):
        assert np.array_equal(by_default.blends["switch"], other.blends["switch"])
    # the per-step noise of stochastic schedulers comes from seed 0 then, not from the global RNG
    assert by_latents.settings["noise"] == "latents" and by_latents.settings["seed"] == 0


def test_switch_step_bounds_reproduce_the_plain_images(sd1_pipe):
    at_0 = run(sd1_pipe, methods=("switch",), switch_step=0)
    at_end = run(sd1_pipe, methods=("switch",), switch_step=STEPS)
    assert close(at_0.blends["switch"], at_0.prompt_2)
    assert close(at_end.blends["switch"], at_end.prompt_1)
    assert at_0.settings["switch_step"] == 0


def test_switch_carries_the_sampler_state_across_the_switch(sd1_pipe):
    """A switch at step k is not a restart: it differs from prompt 2's image alone."""
    result = run(sd1_pipe, methods=("switch",), switch_step=1)
    assert not close(result.blends["switch"], result.prompt_2, 1e-4)


def test_attention_processors_are_restored_after_unet_blending(unet_pipe):
    before = unet_pipe.unet.attn_processors
    run(unet_pipe, methods=("unet",))
    after = unet_pipe.unet.attn_processors
    assert before.keys() == after.keys()
    assert all(after[name] is before[name] for name in before)


def test_attention_processors_are_restored_when_blending_raises(unet_pipe):
    before = unet_pipe.unet.attn_processors

    def fail(pipe, step, timestep, tensors):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        run(unet_pipe, methods=("unet",), callback_on_step_end=fail)
    after = unet_pipe.unet.attn_processors
    assert all(after[name] is before[name] for name in before)
    plain = run(unet_pipe, methods=("textual",), ratio=0.0)
    assert close(plain.blends["textual"], plain.prompt_1)


def test_one_unet_call_per_step_for_the_whole_comparison(sd1_pipe):
    rows = []
    handle = sd1_pipe.unet.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    try:
        run(sd1_pipe)
    finally:
        handle.remove()
    assert rows == [2 * (2 + len(ALL))] * STEPS  # 6 images, each with its unconditional row


def test_callback_sees_every_step_with_one_latent_row_per_image(sd1_pipe):
    seen = []

    def record(pipe, step, timestep, tensors):
        seen.append((step, tuple(tensors["latents"].shape)))
        return tensors

    run(sd1_pipe, methods=("switch", "unet"), callback_on_step_end=record)
    assert seen == [(i, (4, 4, 8, 8)) for i in range(STEPS)]


@pytest.mark.parametrize(
    "output_type, check",
    [
        ("pil", lambda image: image.size == (64, 64)),
        ("np", lambda image: image.shape == (64, 64, 3) and 0 <= image.min() and image.max() <= 1),
        ("pt", lambda image: tuple(image.shape) == (3, 64, 64)),
        ("latent", lambda image: tuple(image.shape) == (4, 8, 8)),
    ],
)
def test_output_types(sd1_pipe, output_type, check):
    result = run(sd1_pipe, methods=("textual",), output_type=output_type)
    assert check(result.prompt_1) and check(result.prompt_2) and check(result.blends["textual"])


def test_settings_record_what_shaped_the_images(sd1_pipe):
    settings = run(sd1_pipe, methods=("switch",), ratio=0.5).settings
    assert settings["switch_step"] == round(STEPS * 0.5)
    assert settings["seed"] == 21 and settings["num_inference_steps"] == STEPS
    assert settings["scheduler"] == "UniPCMultistepScheduler"
    assert settings["device"] == "cpu" and settings["dtype"] == "float32"
    assert {"blending", "diffusers", "transformers", "torch"} <= settings["versions"].keys()


def test_a_long_prompt_is_truncated_with_one_warning(sd1_pipe):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    diffusers_logger = logging.getLogger("diffusers")
    diffusers_logger.addHandler(handler)
    try:
        run(sd1_pipe, "lion " * 40, "cat", methods=("textual",))
    finally:
        diffusers_logger.removeHandler(handler)
    warnings = [r for r in records if r.levelno == logging.WARNING and "truncated" in r.getMessage()]
    assert len(warnings) == 1


def test_cross_attention_layout_is_in_forward_order(unet_pipe):
    layout = cross_attention_layout(unet_pipe.unet)
    parts = [name.split(".")[0] for name in layout.names]
    assert parts == sorted(parts, key=["down_blocks", "mid_block", "up_blocks"].index)
    assert layout.num_encoder_layers == parts.count("down_blocks") + parts.count("mid_block")
    assert all(name.endswith("attn2.processor") for name in layout.names)


def test_blend_seeds_gives_what_blend_gives_for_each_seed(pipe):
    methods = methods_for(pipe)
    together = blend_seeds(
        pipe, "lion", "cat", methods, 0.5, seeds=[3, 21], num_inference_steps=STEPS, output_type="np", progress=False
    )
    for seed, result in zip([3, 21], together):
        alone = run(pipe, seed=seed)
        assert result.settings["seed"] == seed
        assert close(result.prompt_1, alone.prompt_1) and close(result.prompt_2, alone.prompt_2)
        for method in methods:
            assert close(result.blends[method], alone.blends[method]), (seed, method)
    assert not close(together[0].prompt_1, together[1].prompt_1, 1e-3)


def test_blend_seeds_checks_its_seeds(sd1_pipe):
    for seeds in ([], [1, -1], 5):
        with pytest.raises(InputError, match="seed"):
            blend_seeds(sd1_pipe, "lion", "cat", seeds=seeds)


def test_generator_device_cpu_is_the_default_bit_for_bit(sd1_pipe):
    from diffusers import EulerAncestralDiscreteScheduler

    from .test_schedulers import with_scheduler

    # a stochastic scheduler draws its per-step noise from the generator too
    pipe = with_scheduler(sd1_pipe, EulerAncestralDiscreteScheduler)
    default, on_cpu = run(pipe, methods=("switch",)), run(pipe, methods=("switch",), generator_device="cpu")
    assert on_cpu.settings["generator_device"] == default.settings["generator_device"] == "cpu"
    assert np.array_equal(default.blends["switch"], on_cpu.blends["switch"])
    assert np.array_equal(default.prompt_1, on_cpu.prompt_1)
    (seeded,) = blend_seeds(
        pipe,
        "lion",
        "cat",
        ("switch",),
        seeds=[21],
        generator_device="cpu",
        num_inference_steps=STEPS,
        output_type="np",
    )
    assert np.array_equal(seeded.blends["switch"], default.blends["switch"])
    assert seeded.settings["generator_device"] == "cpu"


_ON_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="the authors' convention needs CUDA")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=_ON_CUDA)])
def test_the_initial_noise_is_the_seeds_draw_on_the_generator_device(sd1_pipe, device):
    """With "cuda", the authors' draw: torch.randn(..., generator=torch.Generator("cuda").manual_seed(seed))."""
    from blending.testing.pipelines import tiny_pipeline

    pipe = sd1_pipe if device == "cpu" else tiny_pipeline("sd1", seed=0).to(device)
    pipe.set_progress_bar_config(disable=True)
    unet_inputs = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: unet_inputs.append(args[0].clone()))
    try:
        run(pipe, methods=("switch",), seed=21, generator_device=device)
    finally:
        handle.remove()
    authors = torch.randn((1, 4, 8, 8), generator=torch.Generator(device).manual_seed(21), device=device)
    # UniPC's first U-Net input is the initial noise itself (sigma 1, no input scaling), in every row
    assert pipe.scheduler.init_noise_sigma == 1.0
    first = unet_inputs[0]
    assert first.device.type == device and len(first) == 2 * 3
    for row in first:
        assert torch.equal(row, authors[0])


def test_an_explicit_generator_is_recorded_with_its_device(sd1_pipe):
    result = run(sd1_pipe, methods=("switch",), seed=None, generator=torch.Generator("cpu").manual_seed(21))
    assert result.settings["generator_device"] == "cpu" and result.settings["noise"] == "generator"
