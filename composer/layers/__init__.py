"""nn.Module building blocks every generated model uses: the block, the language model, the norms.
Each mixer kind's own layer lives in its folder (composer/kinds/<kind>/layer.py).

Every class takes resolved sizes only (no spec objects), so generated model source
can construct it with literal constants.
"""

from composer.layers.model import Block, LanguageModel
from composer.layers.norms import GatedRMSNorm, LayerNorm, RMSNorm

__all__ = ["Block", "GatedRMSNorm", "LanguageModel", "LayerNorm", "RMSNorm"]
