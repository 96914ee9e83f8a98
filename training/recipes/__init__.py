"""Shipped training recipes (TOML), installed as ``srtool.recipes``.

``srtool train NAME`` finds them here."""
