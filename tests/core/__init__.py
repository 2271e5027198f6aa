"""Tests of `gim_ppl.core`."""
