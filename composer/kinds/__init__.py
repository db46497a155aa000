"""The mixer kinds: each one folder, registered here with one line.

A kind from elsewhere (a user's package, a test) registers the same way, `register(MyKind())`, and
is then checked, planned, built and trained like these.
"""

from composer.kinds.attention import Attention
from composer.kinds.base import Kind, LayerCall, ModelSizes
from composer.kinds.delta import Delta
from composer.kinds.gla import GLA
from composer.kinds.lowrank import Lowrank
from composer.kinds.mlp import MLP
from composer.kinds.monarch import Monarch
from composer.kinds.monarch_mlp import MonarchMLP
from composer.kinds.none import NoneChannel
from composer.kinds.quasiseparable import Quasiseparable
from composer.kinds import registry
from composer.kinds.registry import FIELDS, kind_of, kinds, register, unregister
from composer.kinds.semiseparable import Semiseparable
from composer.kinds.swiglu import SwiGLU

# sequence mixers
register(Attention())
register(Semiseparable())
register(Quasiseparable())
register(Lowrank())
register(Monarch())
register(GLA())
register(Delta())
# channel mixers
register(MLP())
register(SwiGLU())
register(MonarchMLP())
register(NoneChannel())

__all__ = ["FIELDS", "registry", "Kind", "LayerCall", "ModelSizes", "kind_of", "kinds", "register", "unregister"]
