"""Tests of `gim_ppl.design`."""
