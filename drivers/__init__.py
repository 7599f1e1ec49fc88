"""drivers: the hardware layer of hems (bytes, registers, serial lines).

Knows nothing of plans or markets and never imports ``hems``.
"""
