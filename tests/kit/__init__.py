"""The test kit: what tests share, in one place.

- ``clock``: ``FakeClock``, time that moves only when a test says so.
- ``net``: ``free_port``, ``wait_port`` (loopback only).
- ``processes``: ``Watchpost``, `python -m watchpost ...` as a real process, ready when it
  says ``READY=1`` on its notification socket (the daemon and the simulator alike).
- ``configs``: builders for gateway configs (dicts written as TOML), instead of copied TOML.
- ``cases``: the data-driven cases of ``tests/cases/<name>/``.

The broker, the subscriber and the schema check are pytest fixtures in ``tests/conftest.py``.
"""
