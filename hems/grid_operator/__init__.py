"""A simulated grid operator (``hems grid``, issue 8): day-ahead limits and locational fees on
``grid/limits``, flexibility requests on ``grid/request``, and the community manager's answers.

| module | what |
|---|---|
| ``quantities`` | exact conversions: kW -> W, currency/kWh -> µ¤/kWh, ISO instants, times of day |
| ``config`` | the limits file and GRID.toml (pydantic; errors name the key) |
| ``messages`` | ``grid_limits`` and ``flexibility_request`` payloads from command-line values |
| ``client`` | :class:`GridOperatorClient`: publish over MQTT, collect acks, responses and offers |
| ``render`` | text tables and JSON lines of the answers |
| ``simulation`` | :class:`SimulatedOperator`: limits every day, requests on a schedule, on any clock |
"""
