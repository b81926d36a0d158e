"""The Modbus TCP bus's own client: right answers from a real pymodbus server are read and
written as before, and every wrong answer is refused and named (transaction id, unit,
function code, exception, framing, a connection that closes mid-answer, timeouts).

The wrong answers come from ``ScriptedServer`` (tests/modbus_servers.py), a server written
for these tests that answers each request with the bytes a case needs.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import pytest

from tests.modbus_servers import ScriptedServer, Step, device_context, mbap, tcp_server
from watchpost.drivers import modbus_tcp
from watchpost.drivers.base import AnswerError, Bus, CommError, DeviceError, ReadRequest, Table
from watchpost.drivers.modbus_tcp_bus import DROP_AFTER

T = TypeVar("T")
HOLDING_3 = ReadRequest(1, Table.HOLDING, 0, 3)


def bus_to(port: int) -> Bus:
    return modbus_tcp.create(
        modbus_tcp.Config(type="modbus_tcp", name="tcp", host="127.0.0.1", port=port)
    )


def run(port: int, work: Callable[[Bus], Awaitable[T]]) -> T:
    """``work`` on a bus to ``port`` (a server already running on the test's loop)."""

    async def scenario() -> T:
        bus = bus_to(port)
        try:
            return await work(bus)
        finally:
            await bus.close()

    return asyncio.run(scenario())


def with_server(
    script: Callable[[bytes], Sequence[Step]], work: Callable[[Bus], Awaitable[T]]
) -> tuple[T | BaseException, ScriptedServer]:
    """Run ``work`` against a scripted server; returns (its result or exception, server)."""

    async def scenario() -> tuple[T | BaseException, ScriptedServer]:
        async with ScriptedServer(script) as server:
            bus = bus_to(server.port)
            try:
                return await work(bus), server
            except Exception as exc:
                return exc, server
            finally:
                await bus.close()

    return asyncio.run(scenario())


def answer_registers(request: bytes, values: Sequence[int], **frame: int) -> bytes:
    """The right answer to a register read of ``request``, its fields overridable."""
    tid = frame.get("tid", struct.unpack(">H", request[0:2])[0])
    unit = frame.get("unit", request[6])
    function = frame.get("function", request[7])
    data = struct.pack(f">{len(values)}H", *values)
    return mbap(tid, unit, bytes([function, len(data)]) + data)


def read3(bus: Bus) -> Awaitable[list[int] | list[bool]]:
    return bus.read(HOLDING_3, timeout=0.5)


# -- a real pymodbus server -------------------------------------------------------------------


def test_every_table_is_read_and_written_against_a_real_server() -> None:
    context = device_context({0: 1, 1: 0xFFFF, 2: 0x8000}, coils={0: True, 9: True})

    async def scenario() -> None:
        async with tcp_server({1: context}) as port:
            bus = bus_to(port)
            try:
                assert await bus.read(ReadRequest(1, Table.HOLDING, 0, 3), timeout=1) == [
                    1,
                    0xFFFF,
                    0x8000,
                ]
                assert await bus.read(ReadRequest(1, Table.COIL, 0, 10), timeout=1) == [
                    True,
                    *[False] * 8,
                    True,
                ]
                await bus.write(1, Table.HOLDING, 10, [7], timeout=1)
                await bus.write(1, Table.HOLDING, 11, [8, 65535], timeout=1)
                await bus.write(1, Table.COIL, 3, [True], timeout=1)
                await bus.write(1, Table.COIL, 20, [True, False, True], timeout=1)
                assert await bus.read(ReadRequest(1, Table.INPUT, 0, 2), timeout=1) == [1, 0xFFFF]
                assert await bus.read(ReadRequest(1, Table.HOLDING, 10, 3), timeout=1) == [
                    7,
                    8,
                    65535,
                ]
                coils = await bus.read(ReadRequest(1, Table.COIL, 0, 24), timeout=1)
                assert [i for i, on in enumerate(coils) if on] == [0, 3, 9, 20, 22]
                # the discrete inputs start as the coils did (tests/modbus_servers.device_context)
                assert await bus.read(ReadRequest(1, Table.DISCRETE, 0, 3), timeout=1) == [
                    True,
                    False,
                    False,
                ]
                with pytest.raises(DeviceError, match="input is read-only"):
                    await bus.write(1, Table.INPUT, 0, [1], timeout=1)
            finally:
                await bus.close()

    asyncio.run(scenario())


def test_an_exception_answer_is_a_device_error_with_its_code_and_place() -> None:
    async def scenario() -> None:
        async with tcp_server({1: device_context(size=10)}) as port:
            bus = bus_to(port)
            try:
                with pytest.raises(DeviceError) as refused:
                    await bus.read(ReadRequest(1, Table.HOLDING, 50, 2), timeout=1)
                assert refused.value.code == 2
                assert str(refused.value) == (
                    "bus tcp: unit 1 holding 50+2: exception 2 (illegal data address)"
                )
                # the connection is still good for the next read
                assert await bus.read(ReadRequest(1, Table.HOLDING, 0, 1), timeout=1) == [0]
            finally:
                await bus.close()

    asyncio.run(scenario())


def test_a_unit_that_never_answers_times_out_and_is_named() -> None:
    async def scenario() -> None:
        async with tcp_server({1: device_context()}) as port:
            bus = bus_to(port)
            try:
                started = time.monotonic()
                with pytest.raises(CommError) as silent:
                    await bus.read(ReadRequest(9, Table.HOLDING, 0, 1), timeout=0.3)
                assert 0.25 <= time.monotonic() - started < 2
                assert (
                    str(silent.value)
                    == "bus tcp: unit 9 holding 0+1: no answer (nothing within 0.3 s)"
                )
                assert await bus.read(ReadRequest(1, Table.HOLDING, 0, 1), timeout=1) == [0]
            finally:
                await bus.close()

    asyncio.run(scenario())


def test_an_endpoint_that_refuses_connections_is_named() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        server.close()
        await server.wait_closed()
        bus = bus_to(port)
        with pytest.raises(CommError, match=f"bus tcp: cannot connect to 127.0.0.1:{port}"):
            await bus.read(HOLDING_3, timeout=0.5)
        await bus.close()

    asyncio.run(scenario())


# -- answers that are wrong on purpose ------------------------------------------------------


def test_a_late_answer_with_an_earlier_transaction_id_is_dropped() -> None:
    def script(request: bytes) -> list[Step]:
        late = answer_registers(request, [9, 9, 9], tid=(request[1] + 100) % 256)
        return [late, 0.02, answer_registers(request, [1, 2, 3])]

    result, server = with_server(script, read3)
    assert result == [1, 2, 3]
    assert server.connections == 1


def test_answers_with_another_transaction_id_only_time_out() -> None:
    def script(request: bytes) -> list[Step]:
        return [answer_registers(request, [1, 2, 3], tid=4242)]

    result, _server = with_server(script, read3)
    assert isinstance(result, CommError)
    assert str(result) == "bus tcp: unit 1 holding 0+3: no answer (nothing within 0.5 s)"


def test_transaction_id_zero_is_taken_as_pymodbus_takes_it() -> None:
    result, _server = with_server(lambda r: [answer_registers(r, [4, 5, 6], tid=0)], read3)
    assert result == [4, 5, 6]


def test_an_answer_from_another_unit_is_refused_and_named() -> None:
    result, _server = with_server(lambda r: [answer_registers(r, [1, 2, 3], unit=7)], read3)
    assert isinstance(result, AnswerError)
    assert str(result) == "bus tcp: unit 1 holding 0+3: the answer comes from unit 7"
    assert result.retry_can_help


def test_an_answer_with_another_function_code_is_refused_and_named() -> None:
    result, _server = with_server(lambda r: [answer_registers(r, [1, 2, 3], function=4)], read3)
    assert isinstance(result, AnswerError)
    assert str(result) == (
        "bus tcp: unit 1 holding 0+3: the answer has function code 4 to a request with 3"
    )


@pytest.mark.parametrize(("code", "name"), [(6, "server device busy"), (99, "unknown exception")])
def test_an_exception_answer_names_its_code(code: int, name: str) -> None:
    def script(request: bytes) -> list[Step]:
        return [mbap(struct.unpack(">H", request[:2])[0], 1, bytes([0x83, code]))]

    result, _server = with_server(script, read3)
    assert isinstance(result, DeviceError)
    assert result.code == code
    assert str(result) == f"bus tcp: unit 1 holding 0+3: exception {code} ({name})"


def test_an_exception_answer_without_its_code_is_refused() -> None:
    def script(request: bytes) -> list[Step]:
        return [mbap(struct.unpack(">H", request[:2])[0], 1, bytes([0x83]))]

    result, _server = with_server(script, read3)
    assert isinstance(result, AnswerError)
    assert "exception answer without its code" in str(result)


def test_an_exception_to_another_function_is_refused() -> None:
    def script(request: bytes) -> list[Step]:
        return [mbap(struct.unpack(">H", request[:2])[0], 1, bytes([0x84, 2]))]

    result, _server = with_server(script, read3)
    assert isinstance(result, AnswerError)
    assert "function code 132 to a request with 3" in str(result)


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ({"protocol": 1}, "protocol id 1, length 9"),
        ({"length": 1}, "protocol id 0, length 1"),
        ({"length": 300}, "protocol id 0, length 300"),
    ],
)
def test_a_frame_that_is_not_mbap_drops_the_connection_and_the_next_read_connects_anew(
    frame: dict[str, int], problem: str
) -> None:
    bad = iter([True])

    def script(request: bytes) -> list[Step]:
        tid = struct.unpack(">H", request[:2])[0]
        if next(bad, False):
            return [mbap(tid, 1, bytes([3, 6, 0, 1, 0, 2, 0, 3]), **frame)]
        return [answer_registers(request, [1, 2, 3])]

    async def twice(bus: Bus) -> list[object]:
        started = time.monotonic()
        with pytest.raises(CommError) as lost:
            await read3(bus)
        assert time.monotonic() - started < 0.4  # not a timeout: refused at once
        return [str(lost.value), await read3(bus)]

    result, server = with_server(script, twice)
    assert result == [
        f"bus tcp: unit 1 holding 0+3: no answer (not a Modbus TCP answer ({problem}))",
        [1, 2, 3],
    ]
    assert server.connections == 2


def test_a_server_that_closes_mid_answer_fails_the_read_at_once_and_is_reconnected() -> None:
    closed = iter([True])

    def script(request: bytes) -> list[Step]:
        right = answer_registers(request, [1, 2, 3])
        if next(closed, False):
            return [right[:9], 0.05, None]
        return [right]

    async def twice(bus: Bus) -> list[object]:
        started = time.monotonic()
        with pytest.raises(CommError) as lost:
            await bus.read(HOLDING_3, timeout=2.0)
        assert time.monotonic() - started < 1.0
        return [str(lost.value), await read3(bus)]

    result, server = with_server(script, twice)
    assert result == [
        "bus tcp: unit 1 holding 0+3: no answer (the connection closed: the device closed it)",
        [1, 2, 3],
    ]
    assert server.connections == 2


def test_an_answer_that_comes_a_byte_at_a_time_is_read() -> None:
    def script(request: bytes) -> list[Step]:
        right = answer_registers(request, [10, 20, 30])
        steps: list[Step] = []
        for i in range(len(right)):
            steps += [right[i : i + 1], 0.005]
        return steps

    result, _server = with_server(script, read3)
    assert result == [10, 20, 30]


@pytest.mark.parametrize(
    ("values", "byte_count"), [([1, 2], 4), ([1, 2, 3, 4], 8)], ids=["short", "extra"]
)
def test_a_misshapen_read_answer_is_refused(values: list[int], byte_count: int) -> None:
    result, _server = with_server(lambda r: [answer_registers(r, values)], read3)
    assert isinstance(result, AnswerError)
    assert f"byte count {byte_count}" in str(result)


def test_a_write_answered_for_another_address_is_refused() -> None:
    def script(request: bytes) -> list[Step]:
        tid = struct.unpack(">H", request[:2])[0]
        return [mbap(tid, 1, bytes([6, 0, 99, 0, 7]))]

    async def write(bus: Bus) -> None:
        await bus.write(1, Table.HOLDING, 10, [7], timeout=0.5)

    result, _server = with_server(script, write)
    assert isinstance(result, AnswerError)
    assert str(result) == (
        "bus tcp: unit 1 holding 10 write [7]: the answer 00 63 00 07 does not repeat "
        "the write's 00 0a"
    )


def test_timeouts_in_a_row_drop_the_connection() -> None:
    answering = {"on": False}

    def script(request: bytes) -> list[Step]:
        return [answer_registers(request, [1, 2, 3])] if answering["on"] else []

    async def work(bus: Bus) -> list[int] | list[bool]:
        for _ in range(DROP_AFTER):
            with pytest.raises(CommError, match="nothing within"):
                await bus.read(HOLDING_3, timeout=0.05)
        answering["on"] = True
        return await read3(bus)

    result, server = with_server(script, work)
    assert result == [1, 2, 3]
    assert server.connections == 2
    assert len(server.requests) == DROP_AFTER + 1


def test_a_cancelled_read_leaves_the_bus_usable() -> None:
    def script(request: bytes) -> list[Step]:
        return [0.2, answer_registers(request, [request[1]] * 3)]

    async def work(bus: Bus) -> tuple[list[int] | list[bool], int]:
        first = asyncio.create_task(read3(bus))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await bus.read(HOLDING_3, timeout=1.0), 0

    result, server = with_server(script, work)
    assert isinstance(result, tuple)
    values, _ = result
    # the answer to the cancelled read (its transaction id's low byte in every register)
    # came first and was dropped: this is the second request's answer
    assert values == [server.requests[1][1]] * 3
