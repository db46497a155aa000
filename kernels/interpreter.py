"""Make Triton's CPU interpreter (TRITON_INTERPRET=1) run kernels with runtime loop bounds.

triton 3.6.0's interpreter holds a runtime int kernel argument as a 1-element array and its
`tensor.__index__` calls int() on that array, which numpy >= 2.4 refuses, so `for i in range(n)`
with `n` a kernel argument fails with "only 0-dimensional arrays can be converted to Python
scalars" (triton#9171, fixed upstream by triton#9172). `patch_interpreter_loop_bounds` reads the
element explicitly. It patches only when the installed Triton still shows the failure, so a
fixed Triton (or an older numpy) is left alone; drop this module once a fixed Triton is pinned.

The kernel loader (codegen/render.py, which every kernel launcher imports) calls
`patch_interpreter_if_enabled()` once, so users' runs get the same interpreter as the tests.
"""

from __future__ import annotations

import os

import numpy as np

_patched = False


def interpreter_enabled() -> bool:
    """Whether Triton runs kernels in its interpreter in this process, read as Triton reads it."""
    import triton

    knobs = getattr(triton, "knobs", None)  # triton >= 3.4
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _index_of_one_element_array_fails(patch_tensor) -> bool:
    """Whether `patch_tensor`'s `__index__` refuses a runtime int held as a 1-element array."""
    from triton.runtime import interpreter

    class Handle:
        data = np.array([3], dtype=np.int32)

    class Probe:
        handle = Handle()

    scope = interpreter._LangPatchScope()
    try:
        patch_tensor(Probe, scope)
        Probe().__index__()
    except TypeError:
        return True
    finally:
        scope.restore()
    return False


def patch_interpreter_loop_bounds() -> bool:
    """Patch Triton's interpreter if it has the 1-element-array bug; return whether it is patched now.

    Idempotent: a second call sees the patched interpreter pass the probe and does nothing."""
    global _patched
    if _patched:
        return True
    from triton.runtime import interpreter

    patch_tensor = getattr(interpreter, "_patch_lang_tensor", None)
    if patch_tensor is None or not hasattr(interpreter, "_LangPatchScope"):
        return False  # a Triton whose interpreter is laid out differently: not the affected version
    if not _index_of_one_element_array_fails(patch_tensor):
        return False

    def patch_tensor_with_scalar_index(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patch_tensor_with_scalar_index
    _patched = True
    return True


def patch_interpreter_if_enabled() -> bool:
    """`patch_interpreter_loop_bounds()` when TRITON_INTERPRET is set; otherwise leave Triton alone."""
    return interpreter_enabled() and patch_interpreter_loop_bounds()
