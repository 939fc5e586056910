"""Backbones as torch modules, all on one encoder-decoder framework."""
