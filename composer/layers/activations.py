"""The channel mixers' activations, by the spec's word for each."""

import torch.nn.functional as F

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}
