"""The offline demo of the whole chain (``make demo``): real items, stand-in bytes, rewrite rules."""
