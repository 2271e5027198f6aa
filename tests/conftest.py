import os

# Tests run on CPU; keep XLA from grabbing every core for its thread pool twice over.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
