"""Tests of `gim_ppl.datasets`."""
