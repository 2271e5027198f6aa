"""Pure JAX building blocks of a GIM, with no NumPyro sample sites: Hill dose-response,
acyclicity and DAG read-off, causal mechanisms, intervention maps, and the one marginal
log-likelihood and cell sampler that every layer above calls."""
