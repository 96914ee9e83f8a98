"""Shipped training recipes (TOML), installed as ``srtool.recipes`` so ``srtool train NAME`` finds them."""
