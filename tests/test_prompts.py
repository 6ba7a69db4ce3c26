"""Prompt templates have one source: a pipeline's folder holds only what it words differently from default/."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PROMPTS = Path(str(resources.files("prompts")))


def test_no_pipeline_prompt_is_a_copy_of_its_default():
    copies = [
        f"{template.parent.name}/{template.name}"
        for folder in PROMPTS.iterdir()
        if folder.is_dir() and folder.name != "default"
        for template in sorted(folder.glob("*.j2"))
        if (PROMPTS / "default" / template.name).is_file()
        and template.read_bytes() == (PROMPTS / "default" / template.name).read_bytes()
    ]
    assert copies == []


def test_every_pipeline_prompt_overrides_a_default_one():
    # A template with no default counterpart would be asked for by no agent.
    strays = [
        f"{template.parent.name}/{template.name}"
        for folder in PROMPTS.iterdir()
        if folder.is_dir() and folder.name != "default"
        for template in sorted(folder.glob("*.j2"))
        if not (PROMPTS / "default" / template.name).is_file()
    ]
    assert strays == []
