# Source this on the lent GPU machine (no network): install the carried wheels and composer.
#   . benchmarks/device_setup.sh     (with .whl carried; see benchmarks/README.md)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || return 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null || return 1
# Triton's on-disk cache in one known place, seeded with the autotuning picks an earlier call saved: fla 0.6.0
# passes cache_results=True, so its autotuners read a stored pick instead of compiling and timing every
# configuration again (minutes at each new shape; each call starts a fresh machine). Save them at the end with
#   save_picks $OUT/picks.tgz     and carry that file as .tc/picks.tgz next time.
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/triton-cache}
mkdir -p "$TRITON_CACHE_DIR"
if [ -f .tc/picks.tgz ]; then
  tar -xzf .tc/picks.tgz -C "$TRITON_CACHE_DIR" && echo "autotuning picks: $(tar -tzf .tc/picks.tgz | grep -c autotune.json) from .tc/picks.tgz"
fi
save_picks() { (cd "$TRITON_CACHE_DIR" && find . -name '*.autotune.json' | tar -czf "$1" -T -) && echo "saved $(tar -tzf "$1" | wc -l) autotuning picks to $1"; }
