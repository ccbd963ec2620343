"""The dashboard's SVG charts."""

from __future__ import annotations

from datetime import datetime, timedelta
from xml.etree import ElementTree

import pytest

from pypicache.admin.charts import Series, grid_step, line_chart, per_minute

START = datetime(2026, 1, 1, 12, 0)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("highest", "step"), [(0, 1), (3, 1), (4.5, 2), (37, 10), (180, 50), (2_000_000, 500_000)]
)
def test_grid_steps_are_round_and_reach_the_highest_value(highest: float, step: float):
    assert grid_step(highest) == step
    assert step * 4 >= highest


def test_per_minute_turns_a_counter_into_rates():
    times = [START + timedelta(seconds=30 * i) for i in range(4)]
    assert per_minute(times, [0, 5, 5, 20]) == [None, 10.0, 0.0, 30.0]
    assert per_minute(times, [9, 0, 0, 0])[1] == 0.0, "a restarted counter is no negative rate"


def test_a_chart_is_valid_svg_with_escaped_labels_and_a_gap_for_missing_values():
    times = [START + timedelta(minutes=i) for i in range(6)]
    values = [1.0, 2.0, None, 4.0, 5.0, 3.0]
    svg = line_chart("Lag <serials>", times, [Series("a & b", values, "#4f46e5")])
    root = ElementTree.fromstring(str(svg))  # well-formed XML: every text was escaped
    assert root.find(f"{SVG}title").text == "Lag <serials>"
    assert len(root.findall(f"{SVG}polyline")) == 2, "the missing sample splits the line"
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "a & b" in labels
    assert {"0", "2", "4", "6", "8"} <= set(labels), "y axis from 0 in round steps"
    assert "12:00" in labels
    assert "12:05" in labels


def test_a_chart_without_two_samples_says_so():
    svg = line_chart("Lag", [START], [Series("lag", [None], "#000")])
    assert "Collecting data" in svg
    assert "<polyline" not in svg
