"""Iterative (negotiated) clearing: exchange ADMM and bilateral ADMM (docs/negotiation.md)."""
