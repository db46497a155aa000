"""composer: a compiler for sequence-model architectures.

    spec = composer.load("examples/tiny_mqar.mix")   # parse + check
    plan = composer.plan(spec)                      # op graph with params, FLOPs, state
    model = composer.build(spec)                    # torch.nn.Module
"""

from composer.build import build, model_source
from composer.grammar.errors import SpecError
from composer.loader import load, loads, validate
from composer.planner import plan
from composer.spec import Spec

__all__ = ["Spec", "SpecError", "build", "load", "loads", "model_source", "plan", "validate"]
