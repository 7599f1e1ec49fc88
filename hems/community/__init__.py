"""The community manager: membership, market mechanisms, settlement, ledger (``hems community``)."""
