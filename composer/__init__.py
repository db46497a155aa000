"""composer: a compiler for sequence-model architectures.

    spec = composer.load("examples/tiny_mqar.mix")   # parse + check
    plan = composer.plan(spec)                      # op graph with params, FLOPs, state
    model = composer.build(spec)                    # torch.nn.Module
    composer.save(model, "model.safetensors")       # its weights; composer.load_weights reads them back
    composer.export(spec, "out/tiny")               # a standalone package and Hugging Face repository
"""

from composer.build import build, model_source
from composer.export import export
from composer.grammar.errors import SpecError
from composer.layers.weights import WeightsError, load_weights, save
from composer.loader import load, loads, validate
from composer.planner import plan
from composer.spec import Spec

__all__ = ["Spec", "SpecError", "WeightsError", "build", "export", "load", "load_weights", "loads", "model_source",
           "plan", "save", "validate"]
