"""Bad input: an InputError (a ValueError) that names the parameter, raised before any work."""

import pytest
import torch

from blending import InputError, blend

from .conftest import STEPS

BAD_INPUTS = [
    ({"methods": ("blur",)}, "methods"),
    ({"methods": ()}, "methods"),
    ({"methods": "switch"}, "methods"),
    ({"methods": ("switch", "switch")}, "methods"),
    ({"ratio": -0.1}, "ratio"),
    ({"ratio": 1.5}, "ratio"),
    ({"ratio": float("nan")}, "ratio"),
    ({"methods": ("switch",), "switch_step": -1}, "switch_step"),
    ({"methods": ("switch",), "switch_step": STEPS + 1}, "switch_step"),
    ({"methods": ("textual",), "switch_step": 2}, "switch_step"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"num_inference_steps": 2.5}, "num_inference_steps"),
    ({"height": 60}, "height"),
    ({"width": 0}, "width"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"seed": 1, "generator": torch.Generator()}, "seed and generator"),
    ({"generator": [torch.Generator()]}, "generator"),
    ({"latents": torch.zeros(2, 4, 8, 8)}, "latents"),
    ({"latents": torch.zeros(1, 4, 16, 16)}, "latents"),
    ({"output_type": "jpeg"}, "output_type"),
    ({"prompt_1": None}, "prompt_1"),
    ({"negative_prompt": 3}, "negative_prompt"),
    ({"guidance_scale": "7.5"}, "guidance_scale"),
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"max_batch_size": 2.0}, "max_batch_size"),
    ({"max_batch_size": 4, "callback_on_step_end": lambda *args: {}}, "max_batch_size"),
]


@pytest.mark.parametrize("bad, parameter", BAD_INPUTS, ids=[p + str(i) for i, (_, p) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_an_input_error_naming_the_parameter_before_any_work(sd1_pipe, bad, parameter):
    calls = []
    hooks = [
        model.register_forward_hook(lambda *args: calls.append(1))
        for model in (sd1_pipe.unet, sd1_pipe.text_encoder, sd1_pipe.vae)
    ]
    kwargs = {"prompt_1": "lion", "prompt_2": "cat", "num_inference_steps": STEPS, "progress": False, **bad}
    try:
        with pytest.raises(InputError, match=parameter):
            blend(sd1_pipe, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == []


def test_a_range_error_names_the_allowed_range(sd1_pipe):
    with pytest.raises(InputError, match=r"ratio must be a number in \[0, 1\]"):
        blend(sd1_pipe, "lion", "cat", ratio=2)
    with pytest.raises(InputError, match=rf"switch_step must be an integer in \[0, num_inference_steps={STEPS}\]"):
        blend(sd1_pipe, "lion", "cat", ("switch",), num_inference_steps=STEPS, switch_step=STEPS + 1)


def test_an_unknown_setting_is_a_type_error_and_the_settings_are_in_the_signature(sd1_pipe):
    import inspect
    from dataclasses import fields

    from blending import blend_seeds
    from blending.settings import BlendSettings

    with pytest.raises(TypeError, match="blend\\(\\) got an unexpected keyword argument 'num_steps'"):
        blend(sd1_pipe, "lion", "cat", num_steps=3)
    with pytest.raises(TypeError, match="blend_seeds\\(\\) got an unexpected keyword argument 'seed'"):
        blend_seeds(sd1_pipe, "lion", "cat", seeds=[1], seed=1)
    settings = {f.name: f.default for f in fields(BlendSettings)}
    for function in (blend, blend_seeds):
        parameters = inspect.signature(function).parameters
        assert all(
            parameters[name].default == settings[name] for name in settings if name not in ("prompt_1", "prompt_2")
        )
        assert not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())


@pytest.mark.parametrize("device", ["cuda", "cuda:99", "mps", "meta", "nonsense", 3])
def test_an_unusable_generator_device_is_an_input_error_before_any_work(sd1_pipe, device):
    # "cuda" without CUDA is not available; with CUDA it is not the CPU pipeline's device

    calls = []
    handle = sd1_pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(InputError, match="^generator_device"):
            blend(sd1_pipe, "lion", "cat", generator_device=device, num_inference_steps=STEPS, progress=False)
    finally:
        handle.remove()
    assert calls == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_check_settings_refuses_cuda_without_cuda_before_a_model_loads():
    from blending.settings import BlendSettings, check_settings

    with pytest.raises(InputError, match="^generator_device: 'cuda' is not available on this machine"):
        check_settings(BlendSettings("lion", "cat", generator_device="cuda"))


def test_a_generator_device_that_disagrees_with_the_generator_is_an_input_error(sd1_pipe, monkeypatch):
    import blending.loading

    kwargs = {"generator": torch.Generator("cpu"), "num_inference_steps": STEPS, "progress": False}
    with pytest.raises(InputError, match="^generator_device"):
        blend(sd1_pipe, "lion", "cat", generator_device="meta", **kwargs)
    # past the availability check (as on a machine with CUDA), the disagreement itself
    monkeypatch.setattr(blending.loading, "check_device", lambda device, name: torch.device(device))
    with pytest.raises(InputError, match="^generator_device: 'cuda:0' disagrees with the generator's device 'cpu'"):
        blend(sd1_pipe, "lion", "cat", generator_device="cuda:0", **kwargs)


def test_generator_device_is_in_the_signatures_with_default_cpu():
    import inspect

    from blending import blend_seeds

    for function in (blend, blend_seeds):
        parameter = inspect.signature(function).parameters["generator_device"]
        assert parameter.default == "cpu" and parameter.kind == inspect.Parameter.KEYWORD_ONLY


def test_a_pipeline_blending_cannot_run_on_is_an_input_error():
    with pytest.raises(InputError, match="^pipe must be a StableDiffusionPipeline"):
        blend(object(), "lion", "cat")
