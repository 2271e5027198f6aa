"""Tests of `gim_ppl.cli`."""
