"""composer's launch path makes Triton's interpreter run runtime loop bounds in users' own processes,
not only under pytest (triton#9171 with numpy >= 2.4)."""

import os
import subprocess
import sys
import textwrap

KERNEL = """
import torch, triton, triton.language as tl

@triton.jit
def sum_first(x_ptr, out_ptr, n):
    total = tl.zeros((), dtype=tl.float32)
    for i in range(n):  # n is a runtime argument: the interpreter holds it as a 1-element array
        total += tl.load(x_ptr + i)
    tl.store(out_ptr, total)

x = torch.arange(8, dtype=torch.float32)
out = torch.zeros(1)
try:
    sum_first[(1,)](x, out, 5)
    print("sum", out.item())
except Exception as error:
    print("failed", type(error).__name__, error)
"""


def run_outside_pytest(prelude: str, interpret: str = "1") -> str:
    """Run `prelude` then the kernel in a fresh `python -c`, away from tests/conftest.py."""
    env = {**os.environ, "TRITON_INTERPRET": interpret}
    code = textwrap.dedent(prelude) + KERNEL
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=os.path.dirname(sys.executable),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_runtime_loop_bound_runs_once_the_launch_path_is_imported():
    out = run_outside_pytest("import composer.codegen.render  # what every composer kernel launcher imports\n")
    assert out.strip() == "sum 10.0"


def test_the_patch_is_needed_exactly_where_triton_fails():
    """Unpatched, the kernel fails exactly when the probe says this Triton is affected (so the test
    above can fail); once patched the probe passes, and a second call changes nothing."""
    out = run_outside_pytest("""
        from triton.runtime import interpreter
        original = interpreter._patch_lang_tensor
        from composer.kernels import interpreter as fix  # `import composer` applies the patch itself
        print("affected", fix._index_of_one_element_array_fails(original))
        interpreter._patch_lang_tensor = original
        """)
    affected = "affected True" in out
    if affected:
        assert "failed InterpreterError" in out and "0-dimensional" in out
    else:
        assert "sum 10.0" in out
    out = run_outside_pytest("""
        from triton.runtime import interpreter
        from composer.kernels import interpreter as fix
        print("patched", fix.patch_interpreter_if_enabled())  # already applied by `import composer`
        patched = interpreter._patch_lang_tensor
        fix.patch_interpreter_loop_bounds()
        print("same", interpreter._patch_lang_tensor is patched)
        print("probe fails", fix._index_of_one_element_array_fails(interpreter._patch_lang_tensor))
        """)
    assert f"patched {affected}" in out
    assert "same True" in out and "probe fails False" in out and "sum 10.0" in out


def test_triton_is_left_alone_without_the_interpreter():
    out = run_outside_pytest("""
        from triton.runtime import interpreter
        original = interpreter._patch_lang_tensor
        import composer.codegen.render
        print("untouched", interpreter._patch_lang_tensor is original)
        raise SystemExit
        """, interpret="0")
    assert out.strip() == "untouched True"
