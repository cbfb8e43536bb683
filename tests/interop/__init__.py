"""Interoperability tests against the peer CLI stacpkg 0.1.4, run as a subprocess from its own venv."""
