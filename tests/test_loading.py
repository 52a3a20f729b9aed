"""load_pipeline: the embedded model, local folders, safetensors only, the offline error."""

import numpy as np
import pytest
import torch

from blending import InputError, ModelUnavailableError, blend, load_pipeline
from blending.loading import EMBEDDED_PATH

from .conftest import STEPS


@pytest.fixture(scope="module")
def embedded():
    pipe = load_pipeline("embedded")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_embedded_model_loads_from_its_shipped_files_and_blends(embedded):
    assert (EMBEDDED_PATH / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert embedded.name_or_path == "embedded"
    assert embedded.device.type == "cpu" and embedded.unet.dtype == torch.float32
    assert embedded.safety_checker is None
    assert type(embedded.scheduler).__name__ == "UniPCMultistepScheduler"
    result = blend(embedded, "lion", "cat", num_inference_steps=STEPS, output_type="np", progress=False)
    assert result.settings["model"] == "embedded"
    assert result.prompt_1.shape == (64, 64, 3) and not np.array_equal(result.prompt_1, result.prompt_2)


def test_a_local_folder_loads_the_same_weights(embedded, tmp_path):
    embedded.save_pretrained(tmp_path, safe_serialization=True)
    pipe = load_pipeline(tmp_path, scheduler="DDIMScheduler")
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.name_or_path == str(tmp_path)
    for name, weight in embedded.unet.state_dict().items():
        assert torch.equal(weight, pipe.unet.state_dict()[name]), name


def test_a_checkpoint_without_safetensors_is_refused(embedded, tmp_path):
    embedded.save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(InputError, match=r"no safetensors weights in unet/.*pickle"):
        load_pipeline(tmp_path)


def test_float16_on_cpu_is_a_clear_error():
    with pytest.raises(InputError, match="float16 is not supported on cpu"):
        load_pipeline("embedded", device="cpu", dtype=torch.float16)


def test_an_unknown_scheduler_is_a_clear_error():
    with pytest.raises(InputError, match="scheduler must name a diffusers scheduler"):
        load_pipeline("embedded", scheduler="NoSuchScheduler")


@pytest.mark.parametrize(
    ("model", "device", "message"),
    [
        ("./no/such/folder", None, "^model: no such folder './no/such/folder'"),
        ("embedded", "nonsense", "^device must be a device such as 'cpu', 'cuda' or 'mps', got 'nonsense'"),
        ("embedded", "cuda:99", "^device: 'cuda:99' is not available on this machine"),
    ],
)
def test_a_bad_folder_or_device_is_an_input_error_before_anything_loads(model, device, message, monkeypatch):
    import diffusers

    monkeypatch.setattr(diffusers.DiffusionPipeline, "download", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(InputError, match=message):
        load_pipeline(model, device=device)


def test_an_uncached_repo_id_offline_gives_a_short_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = "someone/not-a-cached-model"
    with pytest.raises(ModelUnavailableError) as caught:
        load_pipeline(model)
    message = str(caught.value)
    assert model in message
    assert huggingface_hub.constants.HF_HUB_CACHE in message
    assert f"hf download {model}" in message
    assert "\n" not in message and len(message) < 600
    assert caught.value.__suppress_context__  # no chained trace from inside the hub client


def test_the_speed_options_keep_the_images(embedded):
    before = blend(embedded, "a red circle", "a blue star", num_inference_steps=STEPS, output_type="np", progress=False)
    pipe = load_pipeline("embedded", channels_last=True)
    pipe.set_progress_bar_config(disable=True)
    after = blend(pipe, "a red circle", "a blue star", num_inference_steps=STEPS, output_type="np", progress=False)
    for method in before.blends:
        assert np.abs(before.blends[method] - after.blends[method]).max() < 1e-3, method  # another kernel order
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_compiled_unet_keeps_its_cross_attention_layout(embedded):
    from blending.attention import cross_attention_layout

    compiled = torch.compile(embedded.unet)  # compiles lazily: nothing runs here
    assert cross_attention_layout(compiled) == cross_attention_layout(embedded.unet)


def test_dtype_kwarg_names_the_keyword_each_installed_library_takes():
    import diffusers
    import transformers

    from blending.loading import dtype_kwarg

    new_diffusers = tuple(int(n) for n in diffusers.__version__.split(".")[:2]) >= (0, 40)
    assert dtype_kwarg("diffusers", torch.float16) == {"dtype" if new_diffusers else "torch_dtype": torch.float16}
    new_transformers = int(transformers.__version__.split(".")[0]) >= 5
    assert dtype_kwarg("transformers", torch.float32) == {"dtype" if new_transformers else "torch_dtype": torch.float32}
    with pytest.raises(ValueError, match="library"):
        dtype_kwarg("torchvision", torch.float32)
