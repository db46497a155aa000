"""The planner's closed-form counts agree with the built modules, and its costs behave."""

import itertools
from pathlib import Path

import pytest
import torch

import composer
from composer.planner import plan

from .conftest import small_spec_data

EXAMPLES = Path(__file__).parents[2] / "examples"

MIXERS = [
    {"kind": "attention", "heads": 4, "kv_heads": 2, "bias": True},
    {"kind": "attention", "heads": 2, "head_dim": 48, "rope": False, "window": 16},
    {"kind": "semiseparable", "state": 16, "head_dim": 16, "chunk": 16},
    {"kind": "semiseparable", "state": 16, "head_dim": 16, "chunk": 16, "decay": "fixed", "gate": False, "conv": 0,
     "skip": False, "bias": True},
    {"kind": "semiseparable", "state": 8, "head_dim": 16, "chunk": 16, "decay": "none", "out_norm": False,
     "groups": 2, "expand": 1.5},
    {"kind": "quasiseparable", "state": 16, "head_dim": 16, "chunk": 16},
    {"kind": "quasiseparable", "state": 16, "head_dim": 16, "chunk": 16, "skip": False, "gate": False, "conv": 3},
    {"kind": "lowrank", "head_dim": 16, "decay": "fixed", "chunk": 16},
    {"kind": "lowrank", "head_dim": 16, "feature_map": "taylor", "feature_dim": 8, "chunk": 16},
    "monarch",
    {"kind": "monarch", "heads": 4, "causal": True, "gate": False},
]
CHANNELS = ["none", "mlp", "swiglu", {"kind": "monarch_mlp", "bias": False}, {"kind": "mlp", "bias": True}]


def built_params(spec) -> int:
    return sum(p.numel() for p in composer.build(spec).parameters())


@pytest.mark.parametrize("mixer, channel", list(itertools.product(MIXERS, CHANNELS)))
def test_planned_params_equal_built_params(mixer, channel):
    data = small_spec_data(blocks={"b": {"mixer": mixer, "channel": channel}}, layers=["b", "b"],
                           tie_embeddings=channel == "mlp", norm="layernorm" if channel == "swiglu" else "rmsnorm")
    spec = composer.validate(data)
    assert plan(spec).params == built_params(spec)


def test_mamba2_130m_matches_the_published_model():
    """state-spaces/mamba2-130m: d_model 768, 24 layers, d_state 128, headdim 64, expand 2,
    ngroups 1, d_conv 4, vocab 50277 padded to 50288 (multiple of 16), tied embeddings.
    mamba_ssm's Mamba2 layer: in_proj 768 -> 2*1536 + 2*128 + 24, conv1d over 1792 channels
    with bias, dt_bias/A_log/D of 24 each, gated RMSNorm 1536, out_proj 1536 -> 768."""
    per_layer = 768 * 3352 + (1792 * 4 + 1792) + 3 * 24 + 1536 + 1536 * 768 + 768
    published = 24 * per_layer + 50288 * 768 + 768
    spec = composer.load(EXAMPLES / "mamba2_130m.mix")
    assert plan(spec).params == published == 128_989_632
    with torch.device("meta"):
        assert built_params(spec) == published


@pytest.mark.parametrize("path", sorted(p.name for p in EXAMPLES.glob("*.mix") if p.name != "tiny_blocks.mix"))
def test_every_example_plans_to_its_built_parameter_count(path):
    spec = composer.load(EXAMPLES / path)
    with torch.device("meta"):
        assert plan(spec).params == built_params(spec)


def test_attention_kv_cache_grows_and_ssm_state_is_fixed():
    data = small_spec_data(layers=["attn", "ssd"])
    the_plan = plan(composer.validate(data))
    attn, ssd = the_plan.layers
    assert attn.kv_bytes > 0 and attn.state_bytes == 0
    assert ssd.kv_bytes == 0 and ssd.state_bytes > 0
    assert the_plan.inference_state_bytes(2048) - the_plan.inference_state_bytes(1024) == 1024 * attn.kv_bytes


def test_graph_is_a_connected_dag_from_embedding_to_head():
    import networkx as nx
    graph = plan(composer.validate(small_spec_data())).graph
    assert nx.is_directed_acyclic_graph(graph)
    assert nx.has_path(graph, "embedding", "head")
    assert {n for n in graph if graph.in_degree(n) == 0} == {"embedding"}


def test_windowed_attention_costs_less_than_full_at_long_context():
    full = small_spec_data(max_len=4096, blocks={"a": {"mixer": {"kind": "attention", "heads": 4}}}, layers=["a"])
    windowed = small_spec_data(max_len=4096, blocks={"a": {"mixer": {"kind": "attention", "heads": 4,
                                                                     "window": 256}}}, layers=["a"])
    assert plan(composer.validate(windowed)).total("flops") < plan(composer.validate(full)).total("flops")
