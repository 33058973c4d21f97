"""Posted form values become JSON by the schema's types, and come back to the page as they were typed."""
from __future__ import annotations

from django.http import QueryDict

from approvals import forms_render as fr

SCHEMA = {"type": "object", "properties": {
    "amount": {"type": "number"}, "count": {"type": "integer"}, "ok": {"type": "boolean"}, "note": {"type": "string"}}}


def post(**values: str) -> QueryDict:
    query = QueryDict(mutable=True)
    query.update(values)
    return query


def test_whole_numbers_stay_whole_and_fractions_stay_fractions():
    data = fr.data_from_post(SCHEMA, post(amount="5000", count="3", ok="on", note=" hi "))
    assert data == {"amount": 5000, "count": 3, "ok": True, "note": "hi"}
    assert type(data["amount"]) is int  # shown again as "5000", not "5000.0"
    assert fr.data_from_post(SCHEMA, post(amount="12.50"))["amount"] == 12.5
    assert fr.data_from_post(SCHEMA, post(amount="1e3"))["amount"] == 1000.0


def test_wrong_types_are_kept_for_the_schema_check_and_empty_inputs_left_out():
    data = fr.data_from_post(SCHEMA, post(amount="lots", count="", note=""))
    assert data == {"amount": "lots", "ok": False}
    field = next(f for f in fr.fields_for(SCHEMA, None, {"amount": 5000}, {}) if f["name"] == "amount")
    assert str(field["value"]) == "5000"
