"""Test-wide set-up: generated Triton kernels run on the CPU through Triton's interpreter unless
TRITON_INTERPRET=0 is given (a GPU machine then runs the same tests compiled)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
# The tests read the built-in tunings only, never the entries `mixc tune` wrote on this machine.
os.environ["COMPOSER_TUNINGS"] = os.path.join(os.path.dirname(__file__), "no-user-tunings.json")


def _fix_interpreter_loop_bounds():
    """triton 3.6.0's interpreter holds a runtime int as a 1-element array and calls int() on it,
    which numpy >= 2.4 refuses, so `range(n_chunks)` fails (triton#9171, fixed upstream by
    triton#9172). Read the element explicitly; drop this once a fixed Triton is pinned."""
    from triton.runtime import interpreter

    patch_tensor = interpreter._patch_lang_tensor

    def patch_tensor_with_scalar_index(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patch_tensor_with_scalar_index


if os.environ["TRITON_INTERPRET"] == "1":
    _fix_interpreter_loop_bounds()
