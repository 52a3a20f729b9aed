"""blending.scores.clip: the shipped CLIP of the toy world, the blend scores' invariants, the offline error."""

import json
import math

import numpy as np
import pytest
import torch

from blending import BlendResult, ModelUnavailableError
from blending.scores.clip import CLIP_SCORE_SCALE, EMBEDDED_CLIP, BlendScores, clip_scores, load_scorer
from blending.toy.clip import main, render_dataset, text_score_by_shared_attributes, zero_shot_accuracy
from blending.toy.world import Attributes, render

RED_CIRCLE = "a large red circle"
BLUE_STAR = "a small blue star"


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("embedded", device="cpu")


@pytest.fixture(scope="module")
def pictures():
    return render(Attributes("circle", "red", "large")), render(Attributes("star", "blue", "small"))


def _result(prompt_1, prompt_2, image_1, image_2, blends, output_type="np"):
    return BlendResult(
        image_1, image_2, blends, {"prompt_1": prompt_1, "prompt_2": prompt_2, "output_type": output_type}
    )


def test_the_shipped_clip_loads_with_plain_transformers_and_reads_the_world():
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(EMBEDDED_CLIP)
    processor = CLIPProcessor.from_pretrained(EMBEDDED_CLIP)
    # fresh pictures: a seed neither the training nor its recorded measurement used
    pictures = render_dataset(300, seed=777, held_out=True)
    accuracy = zero_shot_accuracy(model, processor, pictures)
    assert accuracy["count"] == 300 and accuracy["overall"] >= 0.90, accuracy
    # a caption scores higher the more attributes it shares with the picture, and above 0 from one
    # on: so a blend's text scores count what it takes from each prompt
    by_shared = text_score_by_shared_attributes(model, processor, pictures)
    assert 0 <= by_shared["0"] < 10 < by_shared["1"] < by_shared["2"] < by_shared["3"], by_shared
    metrics = json.loads((EMBEDDED_CLIP / "training_metrics.json").read_text())
    assert metrics["zero_shot_accuracy"]["overall"] >= 0.90
    assert metrics["settings"]["eval_seed"] != metrics["settings"]["seed"]
    assert not any(value.startswith("/") for value in metrics["settings"].values())  # no path of the training machine


def test_the_shipped_weights_are_small():
    clip = sum(p.stat().st_size for p in EMBEDDED_CLIP.rglob("*") if p.is_file())
    assert clip <= 1_600_000, clip
    every_model = sum(p.stat().st_size for p in EMBEDDED_CLIP.parent.rglob("*") if p.is_file())
    assert every_model <= 20_000_000, every_model


def test_a_blend_that_is_a_plain_image_scores_as_that_prompt(scorer, pictures):
    circle, star = pictures
    scores = clip_scores(_result(RED_CIRCLE, BLUE_STAR, circle, star, {"switch": circle, "unet": star}), scorer)
    assert list(scores) == ["switch", "unet"]
    first, second = scores["switch"], scores["unet"]
    assert first.image_1 == pytest.approx(1, abs=1e-5) and first.image_2 < 0.9
    assert first.text_1 > first.text_2
    assert second.image_2 == pytest.approx(1, abs=1e-5) and second.text_2 > second.text_1
    for s in scores.values():
        assert 0 <= s.text_1 <= CLIP_SCORE_SCALE and 0 <= s.text_2 <= CLIP_SCORE_SCALE
        assert s.coverage == min(s.text_1, s.text_2)
        assert 0 <= s.balance <= 1


def test_a_blend_of_attributes_from_both_prompts_covers_both(scorer, pictures):
    circle, star = pictures
    blue_circle = render(Attributes("circle", "blue", "large"))  # size and shape of prompt 1, colour of prompt 2
    scores = clip_scores(_result(RED_CIRCLE, BLUE_STAR, circle, star, {"unet": blue_circle}), scorer)["unet"]
    assert scores.text_1 > scores.text_2 > 0
    assert scores.coverage == scores.text_2 and 0 < scores.balance < 1
    assert scores.image_1 > scores.image_2


def test_swapping_the_prompts_swaps_the_scores_and_keeps_balance(scorer, pictures):
    circle, star = pictures
    blend = (circle + star) / 2
    forward = clip_scores(_result(RED_CIRCLE, BLUE_STAR, circle, star, {"textual": blend}), scorer)["textual"]
    swapped = clip_scores(_result(BLUE_STAR, RED_CIRCLE, star, circle, {"textual": blend}), scorer)["textual"]
    assert (swapped.text_1, swapped.text_2) == pytest.approx((forward.text_2, forward.text_1), abs=1e-4)
    assert (swapped.image_1, swapped.image_2) == pytest.approx((forward.image_2, forward.image_1), abs=1e-5)
    assert swapped.balance == pytest.approx(forward.balance, abs=1e-6)
    assert swapped.coverage == pytest.approx(forward.coverage, abs=1e-4)


def test_a_blend_as_close_to_both_prompts_has_balance_1(scorer, pictures):
    circle, star = pictures
    scores = clip_scores(_result(RED_CIRCLE, RED_CIRCLE, star, star, {"alternate": circle}), scorer)["alternate"]
    assert scores.text_1 == scores.text_2 > 0
    assert scores.balance == 1 and scores.coverage == scores.text_1


def test_every_image_type_of_the_pipeline_scores_the_same(scorer, pictures):
    from PIL import Image

    circle, star = pictures
    as_uint8 = (circle * 255).round().astype(np.uint8)
    kinds = {
        "np": circle,
        "uint8": as_uint8,
        "pil": Image.fromarray(as_uint8),
        "pt": torch.from_numpy(circle).permute(2, 0, 1),
    }
    scores = clip_scores(_result(RED_CIRCLE, BLUE_STAR, circle, star, kinds), scorer)
    reference = scores["np"]
    for kind, s in scores.items():
        assert s.text_1 == pytest.approx(reference.text_1, abs=1e-4), kind
        assert s.image_1 == pytest.approx(1, abs=1e-5), kind


def test_the_derived_scores_follow_their_formulas():
    assert BlendScores(30.0, 10.0, 0.5, 0.2).coverage == 10.0
    assert BlendScores(30.0, 10.0, 0.5, 0.2).balance == pytest.approx(0.5)  # 1 - 20 / 40
    assert BlendScores(25.0, 25.0, 0.0, 0.0).balance == 1.0
    assert BlendScores(0.0, 25.0, 0.0, 0.0).balance == 0.0
    undefined = BlendScores(0.0, 0.0, 0.3, 0.3)  # no closer than orthogonal to either prompt
    assert math.isnan(undefined.balance) and undefined.coverage == 0.0
    assert set(undefined.as_dict()) == {"text_1", "text_2", "image_1", "image_2", "coverage", "balance"}


def test_each_prompt_is_embedded_once(monkeypatch):
    scorer = load_scorer("embedded", device="cpu")
    text_model, batches = scorer.model.text_model, []

    def counted(*args, **kwargs):
        batches.append(len(kwargs["input_ids"]))
        return type(text_model).forward(text_model, *args, **kwargs)

    monkeypatch.setattr(text_model, "forward", counted)
    first = scorer.text_embeddings([RED_CIRCLE, BLUE_STAR, RED_CIRCLE])
    again = scorer.text_embeddings([BLUE_STAR, RED_CIRCLE])
    scorer.text_embeddings(["a green square", BLUE_STAR])
    assert batches == [2, 1]  # the new prompt alone
    assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0]) and torch.equal(first[2], first[0])
    assert torch.linalg.vector_norm(first, dim=-1).tolist() == pytest.approx([1, 1, 1], abs=1e-5)


def test_results_of_latents_or_without_prompts_are_refused(scorer, pictures):
    circle, star = pictures
    with pytest.raises(ValueError, match="not latents"):
        clip_scores(_result(RED_CIRCLE, BLUE_STAR, circle, star, {"switch": circle}, output_type="latent"), scorer)
    with pytest.raises(ValueError, match="prompt_1"):
        clip_scores(BlendResult(circle, star, {"switch": circle}), scorer)


def test_an_uncached_repo_id_offline_gives_a_short_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = "someone/not-a-cached-clip"
    with pytest.raises(ModelUnavailableError) as caught:
        load_scorer(model, device="cpu")
    message = str(caught.value)
    assert model in message
    assert huggingface_hub.constants.HF_HUB_CACHE in message
    assert f"hf download {model}" in message
    assert "\n" not in message and len(message) < 600
    assert caught.value.__suppress_context__


def test_a_folder_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no safetensors weights \(found \['pytorch_model.bin'\]\)"):
        load_scorer(tmp_path, device="cpu")


def test_training_runs_end_to_end_and_resumes(tmp_path, caplog):
    def arguments(steps):
        return [
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "clip"),
            "--images",
            "32",
            "--batch-size",
            "8",
            "--steps",
            str(steps),
            "--eval-images",
            "10",
            "--eval-held-out",
            "1",
        ]

    assert main(arguments(steps=2)) == 0
    scorer = load_scorer(tmp_path / "clip", device="cpu")
    assert scorer.text_embeddings([RED_CIRCLE]).shape == (1, 64)
    metrics = json.loads((tmp_path / "clip" / "training_metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["zero_shot_accuracy"]["count"] == 10
    assert metrics["zero_shot_accuracy_held_out"]["count"] == 5
    assert str(tmp_path) not in json.dumps(metrics)  # no path of this machine
    caplog.set_level("INFO")
    assert main(arguments(steps=3)) == 0
    assert "clip: resuming at step 2 of 3" in caplog.text
