"""Each example says which published configuration it mirrors; where that model's
parameter count is published, the built module has exactly that count."""

from pathlib import Path

import pytest
import torch

import composer
from composer.planner import plan

EXAMPLES = Path(__file__).parents[2] / "examples"

# example -> (what it mirrors, its parameter count planned and built here)
MIRRORS = {
    "mamba2_130m": ("state-spaces/mamba2-130m (Dao & Gu, 2024), published as 130M", 128_989_632),
    "hybrid_1b": ("Jamba's 1:7 attention:Mamba interleave at 1B width, without MoE", 1_464_839_232),
    "griffin_local": ("Griffin's 2 recurrent : 1 local-attention pattern (De et al., 2024)", None),
    "hydra_encoder": ("Hydra bidirectional encoder at BERT-base width (Hwang et al., 2024)", None),
    "m2_bert": ("M2-BERT's Monarch sequence and channel mixing (Fu et al., 2023)", None),
    "tiny_mqar": ("a 2-layer SSD + attention hybrid for CPU (Zoology-scale MQAR)", 120_568),
    "mqar_search": ("a search over the tiny hybrid's ratio, placement and state size", None),
    "gla_340m": ("fla's GLA 340M shape: 24 gated linear attention layers (Yang et al., 2024)", None),
    "qwen3_next_style": ("Qwen3-Next's 3 Gated DeltaNet : 1 attention layout (Qwen team, 2025), CPU-sized", 528_688),
}


def count(spec) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in composer.build(spec).parameters())


def test_every_example_file_is_listed():
    files = {p.stem for p in EXAMPLES.glob("*.mix")} - {"tiny_blocks"}
    assert files == set(MIRRORS)


@pytest.mark.parametrize("name", sorted(n for n, (_, params) in MIRRORS.items() if params))
def test_example_parameter_count(name):
    spec = composer.load(EXAMPLES / f"{name}.mix")
    assert plan(spec).params == count(spec) == MIRRORS[name][1]


def test_mamba2_370m_matches_the_published_model():
    """state-spaces/mamba2-370m: d_model 1024, 48 layers, otherwise as the 130M."""
    text = (EXAMPLES / "mamba2_130m.mix").read_text()
    text = text.replace("d_model = 768", "d_model = 1024").replace("[ssd] * 24", "[ssd] * 48")
    spec = composer.loads(text)
    inner, heads = 2048, 32
    per_layer = (1024 * (2 * inner + 2 * 128 + heads) + (inner + 256) * 5 + 3 * heads + inner
                 + inner * 1024 + 1024)
    assert plan(spec).params == count(spec) == 48 * per_layer + 50288 * 1024 + 1024 == 368_346_624
