import copy

import pytest


def small_spec_data(**overrides) -> dict:
    """A valid spec as plain data (the JSON form), with every mixer kind in its schedule."""
    data = {
        "name": "small",
        "d_model": 64,
        "vocab": 100,
        "max_len": 64,
        "dtype": "fp32",
        "blocks": {
            "attn": {"mixer": {"kind": "attention", "heads": 4, "kv_heads": 2}, "channel": "swiglu"},
            "ssd": {"mixer": {"kind": "semiseparable", "state": 16, "head_dim": 16, "chunk": 16}},
            "hydra": {"mixer": {"kind": "quasiseparable", "state": 16, "head_dim": 16, "chunk": 16}},
            "linear": {"mixer": {"kind": "lowrank", "head_dim": 16, "decay": "fixed", "chunk": 16}, "channel": "mlp"},
            "monarch": {"mixer": "monarch", "channel": "monarch_mlp"},
        },
        "layers": ["attn", "ssd", "hydra", "linear", "monarch"],
    }
    data.update(copy.deepcopy(overrides))
    return data


@pytest.fixture
def small_data():
    return small_spec_data()
