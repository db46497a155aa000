"""nn.Module building blocks of the reference backend, one file per mixer family.

Every class takes resolved sizes only (no spec objects), so generated model source
can construct it with literal constants.
"""

from composer.layers.attention import Attention
from composer.layers.channels import MLP, MonarchMLP, SwiGLU
from composer.layers.lowrank import LinearAttention
from composer.layers.model import Block, LanguageModel
from composer.layers.monarch import MonarchMixer
from composer.layers.norms import GatedRMSNorm, LayerNorm, RMSNorm
from composer.layers.state_space import Hydra, Mamba2

__all__ = ["Attention", "Block", "GatedRMSNorm", "Hydra", "LanguageModel", "LayerNorm", "LinearAttention", "MLP",
           "Mamba2", "MonarchMLP", "MonarchMixer", "RMSNorm", "SwiGLU"]
