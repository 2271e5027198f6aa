"""Tests of `gim_ppl.evaluation`."""
