"""The read planner covers a device's points with the fewest requests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from watchpost.drivers.base import Table
from watchpost.drivers.planner import MAX_BITS, MAX_REGISTERS, plan_reads


@dataclass(frozen=True)
class Point:
    table: Table
    address: int
    width: int = 1


def spans(plans):
    return [(p.request.table.value, p.request.address, p.request.count) for p in plans]


def test_contiguous_points_make_one_request():
    points = [Point(Table.HOLDING, a, 2) for a in (0, 2, 4, 6)]
    assert spans(plan_reads(1, points, max_gap=0)) == [("holding", 0, 8)]


def test_small_gaps_are_bridged_large_gaps_split():
    points = [Point(Table.HOLDING, 0), Point(Table.HOLDING, 9), Point(Table.HOLDING, 30)]
    assert spans(plan_reads(1, points, max_gap=8)) == [("holding", 0, 10), ("holding", 30, 1)]
    assert spans(plan_reads(1, points, max_gap=0)) == [
        ("holding", 0, 1),
        ("holding", 9, 1),
        ("holding", 30, 1),
    ]


def test_tables_never_share_a_request():
    points = [
        Point(Table.HOLDING, 0),
        Point(Table.INPUT, 1),
        Point(Table.COIL, 2),
        Point(Table.DISCRETE, 3),
    ]
    assert len(plan_reads(1, points, max_gap=100)) == 4


def test_a_request_never_exceeds_the_protocol_limit():
    registers = [Point(Table.INPUT, a, 2) for a in range(0, 400, 2)]
    plans = plan_reads(1, registers, max_gap=8)
    assert all(p.request.count <= MAX_REGISTERS for p in plans)
    assert len(plans) == 4  # 400 registers need at least ceil(400 / 125) requests
    bits = [Point(Table.COIL, a) for a in range(4500)]
    assert [p.request.count for p in plan_reads(1, bits, max_gap=0)] == [MAX_BITS, MAX_BITS, 500]


def test_offsets_locate_every_point_in_the_answer():
    points = [Point(Table.HOLDING, 12, 2), Point(Table.HOLDING, 10), Point(Table.HOLDING, 20)]
    [plan] = plan_reads(3, points, max_gap=8)
    assert plan.request.unit == 3
    assert {(p.address, offset) for p, offset in plan.points} == {(10, 0), (12, 2), (20, 10)}


@pytest.mark.parametrize("gap", [0, 3, 8])
def test_every_point_is_covered_exactly_once(gap):
    points = [Point(Table.HOLDING, a, 1 + a % 2) for a in range(0, 300, 7)]
    plans = plan_reads(1, points, max_gap=gap)
    covered = [p for plan in plans for p, _ in plan.points]
    assert sorted(covered, key=lambda p: p.address) == sorted(points, key=lambda p: p.address)
    for plan in plans:
        for point, offset in plan.points:
            assert offset + point.width <= plan.request.count
