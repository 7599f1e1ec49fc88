"""Wiring of one home: poll -> estimate -> forecast -> plan -> trade -> actuate."""
