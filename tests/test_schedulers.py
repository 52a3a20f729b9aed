"""The scheduler zoo: every scheduler a user may pick, deterministic or stochastic.

Each comparison has its own generator for everything random, so the plain images equal stock
diffusers, every image of a comparison shares the per-step noise, and a batch of seeds gives per
seed what one seed gives alone.
"""

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from blending import METHODS, blend, blend_seeds

from .conftest import STEPS
from .test_blend import close

ALL = tuple(METHODS)

ZOO = {
    "unipc": (UniPCMultistepScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),  # Stable Diffusion v1.4's own scheduler
    "lms": (LMSDiscreteScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-ancestral": (EulerAncestralDiscreteScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    "dpm-solver++-2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm-solver++-sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
}
STOCHASTIC = ("euler-ancestral", "ddpm", "dpm-solver++-sde")


def with_scheduler(pipe, scheduler_class, **config):
    """The same modules with another scheduler: the session's pipelines stay as they are."""
    components = {**pipe.components, "scheduler": scheduler_class.from_config(pipe.scheduler.config, **config)}
    other = type(pipe)(**components, requires_safety_checker=False)
    other.set_progress_bar_config(disable=True)
    return other


@pytest.fixture(scope="module", params=list(ZOO))
def zoo_pipe(request, sd1_pipe):
    scheduler_class, config = ZOO[request.param]
    return with_scheduler(sd1_pipe, scheduler_class, **config)


def run(pipe, ratio=0.5, **kwargs):
    kwargs.setdefault("seed", 21)
    return blend(pipe, "lion", "cat", ALL, ratio, num_inference_steps=STEPS, output_type="np", progress=False, **kwargs)


def stock(pipe, prompt, seed=21, **kwargs):
    return pipe(
        prompt, generator=torch.Generator().manual_seed(seed), num_inference_steps=STEPS, output_type="np", **kwargs
    ).images[0]


def test_plain_images_equal_stock_stable_diffusion(zoo_pipe):
    result = run(zoo_pipe)
    assert close(result.prompt_1, stock(zoo_pipe, "lion"))
    assert close(result.prompt_2, stock(zoo_pipe, "cat"))


def test_ratio_0_and_1_give_exactly_the_plain_images(zoo_pipe):
    at_0, at_1 = run(zoo_pipe, ratio=0.0), run(zoo_pipe, ratio=1.0)
    for method in ALL:
        assert close(at_0.blends[method], at_0.prompt_1), method
        assert close(at_1.blends[method], at_1.prompt_2), method


def test_blend_seeds_gives_per_seed_what_blend_gives(zoo_pipe):
    together = blend_seeds(
        zoo_pipe, "lion", "cat", ALL, seeds=[3, 21], num_inference_steps=STEPS, output_type="np", progress=False
    )
    for seed, result in zip([3, 21], together):
        alone = run(zoo_pipe, seed=seed)
        for name in ("prompt_1", "prompt_2"):
            assert close(getattr(result, name), getattr(alone, name)), (seed, name)
        for method in ALL:
            assert close(result.blends[method], alone.blends[method]), (seed, method)


def test_smaller_batches_give_the_same_images(zoo_pipe):
    whole = blend_seeds(
        zoo_pipe, "lion", "cat", ALL, seeds=[3, 21], num_inference_steps=STEPS, output_type="np", progress=False
    )
    # 4 does not divide the 6 images of a comparison: batches cut across comparisons
    batched = blend_seeds(
        zoo_pipe,
        "lion",
        "cat",
        ALL,
        seeds=[3, 21],
        num_inference_steps=STEPS,
        output_type="np",
        progress=False,
        max_batch_size=4,
    )
    for a, b in zip(whole, batched):
        assert close(a.prompt_1, b.prompt_1) and close(a.prompt_2, b.prompt_2)
        for method in ALL:
            assert close(a.blends[method], b.blends[method]), method


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_schedulers_draw_noise_per_comparison_not_from_the_global_rng(sd1_pipe, name):
    scheduler_class, config = ZOO[name]
    pipe = with_scheduler(sd1_pipe, scheduler_class, **config)
    first = run(pipe)
    torch.manual_seed(12345)  # the global random state must not matter
    again = run(pipe)
    for method in ALL:
        assert np.array_equal(first.blends[method], again.blends[method]), method
    # the noise is the comparison's: another seed for the same initial latents changes the images
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    by_seed_0 = run(pipe, seed=None, latents=noise)
    by_seed_1 = run(pipe, seed=1, latents=noise)
    assert not close(by_seed_0.prompt_1, by_seed_1.prompt_1, 1e-3)
    # latents without a generator: the per-step noise of seed 0, as stock diffusers with that generator
    assert close(by_seed_0.prompt_1, stock(pipe, "lion", seed=0, latents=noise))


@pytest.mark.parametrize("scheduler_class", [HeunDiscreteScheduler, KDPM2DiscreteScheduler])
def test_schedulers_with_two_unet_calls_per_step_are_refused_before_any_work(sd1_pipe, scheduler_class):
    pipe = with_scheduler(sd1_pipe, scheduler_class)
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(
            ValueError, match=rf"pipe: its scheduler {scheduler_class.__name__} evaluates the U-Net 2 times per step"
        ):
            run(pipe)
    finally:
        hook.remove()
    assert calls == []


def test_pndm_evaluates_its_first_step_twice_with_that_steps_prompt(sd1_pipe):
    """PNDM makes num_inference_steps + 1 U-Net calls; the extra one belongs to step 0."""
    pipe = with_scheduler(sd1_pipe, PNDMScheduler, skip_prk_steps=True)
    blend_sees_prompt_2 = []

    def record(module, args, kwargs):
        states = kwargs["encoder_hidden_states"]  # unconditional rows 0-2, then prompt 1, prompt 2, the blend
        blend_sees_prompt_2.append(torch.equal(states[5], states[4]))

    hook = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        result = blend(
            pipe,
            "lion",
            "cat",
            ("switch",),
            seed=21,
            num_inference_steps=STEPS,
            switch_step=1,
            output_type="np",
            progress=False,
        )
    finally:
        hook.remove()
    assert blend_sees_prompt_2 == [False, False] + [True] * (STEPS - 1)
    assert close(result.prompt_1, stock(pipe, "lion"))
