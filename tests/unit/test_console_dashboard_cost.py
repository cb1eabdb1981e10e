"""The dashboard's cost and budget helpers: US dollars to the cent, a budget's percent and state as
the budget check decides them (at the limit is over; at warn_at is a warning), the order they are
listed in, and the unpriced models named from ``GET /api/models``."""

from __future__ import annotations

from typing import Any

import pytest

from insightmesh.console.dashboard_pages import budget_rows, unpriced_models, usd


@pytest.mark.parametrize(("value", "shown"), [(0, "$0.00"), (0.75, "$0.75"), (1234.567, "$1,234.57"),
                                              (0.004999, "< $0.01"), (0.005, "$0.01"), (0.000001, "< $0.01")])
def test_usd_is_dollars_to_the_cent_and_a_tiny_cost_is_not_zero(value: float, shown: str) -> None:
    assert usd(value) == shown


def budget(value: str, limit: float, spent: float | None, warn_at: float = 0.8, scope: str = "agent") -> dict[str, Any]:
    return {"scope": scope, "value": value, "limit_usd": limit, "period": "month", "warn_at": warn_at,
            "fallback_model": None, "spent_usd": spent, "resets_at": "2027-01-01T00:00:00Z", "version": 1,
            "updated_at": None, "updated_by": None}


def test_budget_rows_have_a_percent_and_a_state_and_those_needing_attention_come_first() -> None:
    rows = budget_rows([budget("calm", 10, 1), budget("edge", 1, 0.8), budget("spent", 2, 2),
                        budget("past", 1, 3.5), budget("near", 10, 9.99), budget("unread", 5, None),
                        budget("team", 4, 2, warn_at=0.5, scope="group")])
    assert [(row.value, row.state, row.percent) for row in rows] == [
        ("past", "over", 350), ("spent", "over", 100),  # at the limit is over, as the check refuses there
        ("near", "warning", 99), ("edge", "warning", 80), ("team", "warning", 50),  # at warn_at is a warning
        ("calm", "ok", 10), ("unread", "ok", 0)]  # no spend read yet counts zero
    assert rows[4].scope == "group" and rows[4].warn_at == 0.5 and rows[0].limit_usd == 1.0
    assert budget_rows([]) == []
    assert [row.percent for row in budget_rows([budget("a", 0.01, 0.57), budget("b", 0.1, 0.3)])] == [5700, 300]


def test_the_unpriced_models_are_those_used_this_month_without_a_price() -> None:
    def model(name: str, price: float | None, *sources: str) -> dict[str, Any]:
        return {"model": name, "input_usd_per_million": price, "output_usd_per_million": price,
                "default_input_usd_per_million": 0.0, "default_output_usd_per_million": 0.0, "sources": list(sources)}

    listed = {"items": [model("cheap", None, "fallback"), model("gpt-4o-mini", 0.15, "priced", "used"),
                        model("local-llm", None, "configured", "used"), model("zed", None, "used")]}
    assert unpriced_models(listed) == ["local-llm", "zed"]  # a configured but unused one costs nothing yet
    assert unpriced_models({"items": []}) == []
