"""Fixtures the kernel tests share."""

import numpy as np
import pytest


@pytest.fixture
def bf16_products(monkeypatch):
    """The interpreter multiplying bf16 tiles as bf16 values (widened to fp32 first), so that the bf16 path's
    casts, bf16 states and their loads run on the CPU as a GPU runs them."""
    from triton.runtime import interpreter
    import triton.language as tl
    multiply = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        def widened(t):
            if t.dtype.scalar != tl.bfloat16:
                return t
            data = interpreter._convert_float(t.data, tl.bfloat16, tl.float32, None).view(np.float32)
            return interpreter.TensorHandle(data, tl.float32)
        return multiply(self, widened(a), widened(b), d, input_precision, max_num_imprecise_acc)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", create_dot)
