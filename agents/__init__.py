"""Faust agents and tables (thin adapters) and, in `agents.core`, the transport-free metric core."""
