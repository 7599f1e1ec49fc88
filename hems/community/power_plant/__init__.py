"""The community as one federated power plant towards the grid operator: requests, the homes'
commitments, delivery and money (docs/flexibility.md); and the operator's day-ahead limits."""
