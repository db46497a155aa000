"""The torch.library namespace the generated kernels' custom ops register under.

An exported package registers its own copy of the ops under its package's name (the exporter rewrites the
marked line), so an export and the compiler that made it can run in one process.
"""

NAMESPACE = "composer"  # export: package name
