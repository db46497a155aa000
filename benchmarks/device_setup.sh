# Source this on the lent GPU machine (no network): install the carried wheels and composer.
#   . benchmarks/device_setup.sh     (with .whl carried; see benchmarks/README.md)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || return 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null || return 1
