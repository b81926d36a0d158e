"""The test kit: what tests share, in one place.

- ``clock``: ``FakeClock``, time that moves only when a test says so.
- ``net``: ``free_port``, ``wait_port`` (loopback only).
- ``processes``: ``Watchpost``, `python -m watchpost ...` as a real process, ready when it
  says ``READY=1`` on its notification socket (the daemon and the simulator alike).
  ``gateway_process``/``running_gateway``: `watchpost run` on a config, in its folder;
  ``cli``: `python -m watchpost ...` run to its exit, output captured.
- ``configs``: builders for gateway configs (dicts written as TOML), instead of copied TOML;
  ``gas_gateway``/``gas``: one Modbus TCP bus with one gas device, as most daemon tests use.
- ``control``: ``wait_status``, the daemon's `status` once its control socket answers;
  ``crew``, `watchpost ... --config` run to its exit as a crew runs it.
- ``platform``: ``Platform``, the platform's side of the command topics (signed with a key).
- ``lines``: ``FarEnd``, a real pseudo-terminal whose far end a thread serves (meters,
  instruments).
- ``tasks``: ``assert_cancelled``, a task's cancellation that must not be lost.
- ``cases``: the data-driven cases of ``tests/cases/<name>/``.
- ``parallel``: how pytest-xdist shares the suite among its workers (scripts/test).

The broker, the subscriber and the schema check are pytest fixtures in ``tests/conftest.py``.
"""
