"""Test-wide set-up: generated Triton kernels run on the CPU through Triton's interpreter unless
TRITON_INTERPRET=0 is given (a GPU machine then runs the same tests compiled)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
# The tests read the built-in tunings only, never the entries `mixc tune` wrote on this machine.
os.environ["COMPOSER_TUNINGS"] = os.path.join(os.path.dirname(__file__), "no-user-tunings.json")

# The package applies this when its launch path is imported; applying it here as well covers tests
# that run Triton without going through composer's launchers.
from composer.kernels.interpreter import patch_interpreter_if_enabled  # noqa: E402

patch_interpreter_if_enabled()
