"""composer: a compiler for sequence-model architectures.

    spec = composer.load("examples/tiny_mqar.mix")   # parse + check
    plan = composer.plan(spec)                      # op graph with params, FLOPs, state
    model = composer.build(spec)                    # torch.nn.Module
    composer.save(model, "model.safetensors")       # its weights; composer.load_weights reads them back
    composer.export(spec, "out/tiny")               # a standalone package and Hugging Face repository

The names below are imported on first use (PEP 562), so `mixc` starts without torch and a
Ctrl-C while it starts up reaches its own handler.
"""

import sys
import types
from importlib import import_module

_EXPORTS = {
    "build": "composer.build", "model_source": "composer.build", "SpecError": "composer.grammar.errors",
    "load": "composer.loader", "loads": "composer.loader", "validate": "composer.loader",
    "plan": "composer.planner", "Spec": "composer.spec", "export": "composer.export",
    "save": "composer.layers.weights", "load_weights": "composer.layers.weights",
    "WeightsError": "composer.layers.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'composer' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`composer.build` is the function, though a submodule has that name too: importing the submodule
    (which sets it as the package's attribute) must not replace the function."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == _EXPORTS[name]:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
