"""Market mechanisms, each a module behind :class:`hems.community.mechanisms.base.Mechanism`.

:data:`MECHANISMS` maps the configured name to the class; ``hems community clear --list`` prints it.
"""
