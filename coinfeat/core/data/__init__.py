"""Collections: reading a dataset's layout, its splits, and identical or near-identical photos."""
