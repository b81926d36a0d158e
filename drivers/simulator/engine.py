"""The site's physics: every point's value at simulated time ``t``, and its register image.

Pure and deterministic: the engine advances in fixed steps of ``tick`` seconds, so the same
site file and seed give the same values however late the event loop runs. Nothing here
knows about sockets or pseudo-terminals.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass, field
from typing import Any, cast

from pymodbus.client.mixin import ModbusClientMixin

from watchpost.drivers.base import Table
from watchpost.drivers.simulator.site import (
    Constant,
    Drift,
    Integral,
    Linear,
    Noisy,
    Phase,
    Product,
    SimDeviceConfig,
    SimPoint,
    SiteConfig,
    Square,
    Stuck,
    Wander,
    evaluation_order,
)

Value = float | bool

_DATATYPES = {
    "int16": ModbusClientMixin.DATATYPE.INT16,
    "uint16": ModbusClientMixin.DATATYPE.UINT16,
    "int32": ModbusClientMixin.DATATYPE.INT32,
    "uint32": ModbusClientMixin.DATATYPE.UINT32,
    "float32": ModbusClientMixin.DATATYPE.FLOAT32,
}
_LIMITS = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


def encode(point: SimPoint, value: float) -> list[int]:
    """The registers that carry ``value`` (engineering units) for ``point``.

    Integers saturate at the limits of their type, as a transmitter's output does.
    """
    raw = (value - point.offset) / point.scale
    if point.type == "float32":
        raw = max(-_FLOAT32_MAX, min(_FLOAT32_MAX, raw))
        return ModbusClientMixin.convert_to_registers(
            raw, _DATATYPES["float32"], word_order=point.word_order
        )
    low, high = _LIMITS[point.type]
    whole = max(low, min(high, round(raw)))
    return ModbusClientMixin.convert_to_registers(
        whole, _DATATYPES[point.type], word_order=point.word_order
    )


def decode(point: SimPoint, words: list[int]) -> float:
    """The engineering value carried by ``words`` (the inverse of ``encode``)."""
    raw = ModbusClientMixin.convert_from_registers(
        words, _DATATYPES[point.type], word_order=point.word_order
    )
    return float(cast(float, raw)) * point.scale + point.offset


@dataclass
class Segment:
    """A linear move of a mean from ``(t0, v0)`` to ``(t1, v1)``; flat before and after."""

    t0: float
    v0: Value
    t1: float
    v1: Value

    def at(self, t: float) -> Value:
        if isinstance(self.v1, bool):
            return self.v1 if t >= self.t1 else self.v0
        if t >= self.t1:
            return self.v1
        if t <= self.t0:
            return self.v0
        return float(self.v0) + (float(self.v1) - float(self.v0)) * (t - self.t0) / (
            self.t1 - self.t0
        )


@dataclass
class PointState:
    """What the engine keeps per point."""

    config: SimPoint
    rng: random.Random
    mean: Segment
    noise: float = 0.0  # current state of the correlated noise
    true: Value = 0.0  # the physical quantity
    shown: Value = 0.0  # what the sensor reports (after faults and writes)
    held: Value | None = None  # written by a master; overrides the signal
    stuck_at: dict[int, Value] = field(default_factory=dict)  # fault index -> frozen value


@dataclass(frozen=True)
class Crossing:
    """The scripted mean of ``point`` passes ``mark`` at ``t``."""

    point: str
    mark: float
    direction: str  # "up" or "down"
    t: float


@dataclass(frozen=True)
class RampInfo:
    """A change as scheduled: for the phase's event."""

    point: str
    start: float
    end: float
    value_from: Value
    value_to: Value


class SiteEngine:
    """The values of every point of a site, advanced tick by tick."""

    def __init__(self, site: SiteConfig, *, seed: int | None = None) -> None:
        self.site = site
        self.tick = site.site.tick
        seed = site.site.seed if seed is None else seed
        self.t = 0.0
        self.steps = 0
        self._order = evaluation_order(site)
        self.points: dict[str, PointState] = {}
        for _device, point in site.points():
            start = _initial_mean(point)
            # one generator per point, seeded from the site's seed and the point's name, so
            # adding a point does not change the noise of the others
            rng = random.Random(f"{seed}:{point.name}")
            state = PointState(point, rng, Segment(0.0, start, 0.0, start))
            if isinstance(point.signal, Noisy):
                state.noise = rng.gauss(0.0, point.signal.noise) if point.signal.noise else 0.0
            if isinstance(point.signal, Integral):
                state.true = point.signal.start
            self.points[point.name] = state
        self._images: dict[tuple[str, Table], list[Any]] = {}  # ints, or bools for bits
        self._served = site.modbus_devices()  # the others are read by value, not registers
        for device in self._served:
            for table in Table:
                self._images[(device.name, table)] = _blank_image(device, table)
        self._evaluate(0.0, 0.0)

    # -- time ------------------------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        """Step in ticks until the engine's time reaches ``t`` (it never goes back)."""
        while (self.steps + 1) * self.tick <= t + 1e-9:
            self.steps += 1
            new_t = self.steps * self.tick
            self._evaluate(new_t, new_t - self.t)
            self.t = new_t

    def apply_phase(self, phase: Phase, at: float) -> tuple[list[RampInfo], list[Crossing]]:
        """Start the changes of ``phase`` at time ``at``; return them and the mark crossings."""
        ramps: list[RampInfo] = []
        crossings: list[Crossing] = []
        for change in phase.changes:
            state = self.points[change.point]
            start_value = state.mean.at(at)
            to: Value = change.to if state.config.is_bool else float(change.to)
            state.mean = Segment(at, start_value, at + change.over, to)
            ramps.append(RampInfo(change.point, at, at + change.over, start_value, to))
            if state.config.is_bool:
                continue
            v0, v1 = float(start_value), float(to)
            for mark in state.config.marks:
                if v0 < mark <= v1 or v1 <= mark < v0:
                    fraction = (mark - v0) / (v1 - v0)
                    crossings.append(
                        Crossing(
                            change.point,
                            mark,
                            "up" if v1 > v0 else "down",
                            at + change.over * fraction,
                        )
                    )
        crossings.sort(key=lambda crossing: crossing.t)
        return ramps, crossings

    # -- reads and writes from masters ------------------------------------------------------

    def image(self, device: str, table: Table) -> list[Any]:
        """The current registers (or bits) of a device's table, from address 0."""
        return self._images[(device, table)]

    def write(
        self, device: SimDeviceConfig, table: Table, address: int, values: list[int] | list[bool]
    ) -> None:
        """A master wrote ``values``: the points they cover hold the written value."""
        image = self._images[(device.name, table)]
        for offset, value in enumerate(values):
            if address + offset < len(image):
                image[address + offset] = value
        end = address + len(values)
        for point in device.points:
            if (
                point.table != table
                or point.address + point.width <= address
                or point.address >= end
            ):
                continue
            state = self.points[point.name]
            if point.is_bool:
                state.held = bool(image[point.address])
            else:
                words = [int(w) for w in image[point.address : point.address + point.width]]
                state.held = decode(point, words)
            state.shown = state.held

    def value(self, name: str) -> Value:
        """What the sensor of point ``name`` reports now."""
        return self.points[name].shown

    # -- inside ------------------------------------------------------------------------------

    def _evaluate(self, t: float, dt: float) -> None:
        for name in self._order:
            state = self.points[name]
            signal = state.config.signal
            if dt > 0 and isinstance(signal, Noisy) and signal.noise > 0:
                decay = math.exp(-dt / signal.tau)
                spread = signal.noise * math.sqrt(1.0 - decay * decay)
                state.noise = state.noise * decay + state.rng.gauss(0.0, spread)
            state.true = self._signal_value(state, t, dt)
            state.shown = self._sensor_value(state, t)
        for device in self._served:
            self._render(device)

    def _signal_value(self, state: PointState, t: float, dt: float) -> Value:
        signal = state.config.signal
        value: Value
        if isinstance(signal, Constant):
            return state.mean.at(t)
        if isinstance(signal, Square):
            return (t % signal.period) < signal.duty * signal.period
        if isinstance(signal, Integral):
            return float(state.true) + signal.gain * float(self.points[signal.of].true) * dt
        if isinstance(signal, Wander):
            value = float(state.mean.at(t)) + signal.amplitude * math.sin(
                2 * math.pi * t / signal.period
            )
        elif isinstance(signal, Linear):
            value = signal.gain * float(self.points[signal.of].true) + signal.bias
        elif isinstance(signal, Product):
            value = signal.gain * math.prod(float(self.points[n].true) for n in signal.of)
        else:  # pragma: no cover - the union is closed
            raise TypeError(signal)
        value += state.noise
        if signal.min is not None:
            value = max(signal.min, value)
        if signal.max is not None:
            value = min(signal.max, value)
        return value

    def _sensor_value(self, state: PointState, t: float) -> Value:
        value: Value = state.true if state.held is None else state.held
        for index, fault in enumerate(self.site.faults):
            if not isinstance(fault, Stuck | Drift) or fault.point != state.config.name:
                continue
            if not fault.active(t):
                state.stuck_at.pop(index, None)
                continue
            if isinstance(fault, Drift):
                value = float(value) + fault.rate * (t - fault.start)
            else:
                # frozen at the given value, or at the reading of the moment it began
                frozen = state.stuck_at.setdefault(
                    index, fault.value if fault.value is not None else value
                )
                value = frozen
        return value

    def _render(self, device: SimDeviceConfig) -> None:
        for point in device.points:
            image = self._images[(device.name, point.table)]
            value = self.points[point.name].shown
            if point.is_bool:
                image[point.address] = bool(value)
            else:
                image[point.address : point.address + point.width] = encode(point, float(value))


def _initial_mean(point: SimPoint) -> Value:
    signal = point.signal
    if isinstance(signal, Wander):
        return signal.base
    if isinstance(signal, Constant):
        return signal.value if point.is_bool else float(signal.value)
    return False if point.is_bool else 0.0


def _blank_image(device: SimDeviceConfig, table: Table) -> list[Any]:
    span = max((p.address + p.width for p in device.points if p.table == table), default=0)
    return [False] * span if table.is_bits else [0] * span


def float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as a master decodes it."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])
