"""Which sizes the generated SSD kernels can tile, without importing Triton.

Layers, `build` and `mixc kernels` decide with this whether a block runs on the kernels; the
launcher checks its inputs with the same rule.
"""


def is_tile_size(n: int) -> bool:
    """tl.arange needs powers of two and tl.dot tiles of at least 16."""
    return n >= 16 and n & (n - 1) == 0


def triton_supports(*sizes: int) -> bool:
    """Whether every size (head dim, state or mapped feature dim, chunk) is a tile size."""
    return all(is_tile_size(n) for n in sizes)


def kernels_chosen(backend: str, on_cuda: bool, *sizes: int) -> bool:
    """A layer's choice: backend "triton" always takes the kernels, "auto" on CUDA where the sizes fit."""
    return backend == "triton" or (backend == "auto" and on_cuda and triton_supports(*sizes))
