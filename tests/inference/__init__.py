"""Tests of `gim_ppl.inference`."""
