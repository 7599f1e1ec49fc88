"""Nesting: the community as one member of an upstream market (a feeder or aggregator manager).

- :mod:`.slots`: our slots against the upstream's, even splits, which gate closes first;
- :mod:`.residual`: the community's residual curve on the upstream grid, as one bid;
- :mod:`.participant`: the upstream allocation as a participant of our clearings, and the report back;
- :mod:`.desk`: the glue the manager calls (synchronous, on its worker thread);
- :mod:`.link`: the service's second MQTT connection.

docs/community.md, "Nesting", describes the whole.
"""
