"""The MQTT protocol (v1) shared by the home agent and the community manager.

- :mod:`hems.protocol.units`: integer money and energy on the wire (Wh, micro-currency per kWh, nano-currency).
- :mod:`hems.protocol.topics`: the topic tree under ``hems/v1/<community>/``.
- :mod:`hems.protocol.envelope`: the envelope every message travels in, and the reception statuses of acks.
- :mod:`hems.protocol.messages`: one versioned payload model per message type.
- :mod:`hems.protocol.calendar`: slots, gate closures and the trading window (the same rule on both sides).
- :mod:`hems.protocol.codec`: bytes <-> validated messages, with the reason when something is wrong.
- :mod:`hems.protocol.mqtt`: an asyncio link over paho-mqtt 2.x (QoS 1, last will, reconnect).

This package imports neither :mod:`hems.trading` nor :mod:`hems.community`.
"""
