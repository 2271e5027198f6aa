"""Tests of `gim_ppl.plots`."""
