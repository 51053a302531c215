"""FlagService over the wire on every backend: CRUD, etags, update masks, paging, evaluation."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from microstate.flags.v1 import flags_pb2 as f
from microstate.flags.v1 import flags_pb2_grpc

from .builders import COLORS, cond, header_color, split, string_flag

Stub = flags_pb2_grpc.FlagServiceStub


def details(error: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    """The ErrorInfo reason and the BadRequest fields of an error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    reason, fields = "", []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields = [v.field for v in bad.field_violations]
    return reason, fields


def context(targeting_key: str = "", **attributes: object) -> f.EvaluationContext:
    attrs = struct_pb2.Struct()
    attrs.update(attributes)
    return f.EvaluationContext(targeting_key=targeting_key, attributes=attrs)


async def test_create_get_evaluate_delete(stub: Stub) -> None:
    created = await stub.CreateFlag(f.CreateFlagRequest(flag=header_color()))
    assert created.etag and created.revision > 0 and created.state == f.FLAG_STATE_ENABLED
    assert created.create_time.seconds > 0 and created.update_time == created.create_time
    assert await stub.GetFlag(f.GetFlagRequest(key="headerColor")) == created

    answer = await stub.EvaluateFlag(
        f.EvaluateFlagRequest(key="headerColor", context=context("rachel@faas.com"))
    )
    assert (answer.variant, answer.value.string_value, answer.reason) == ("blue", "blue", f.REASON_SPLIT)
    assert answer.revision == created.revision

    missing = await stub.EvaluateFlag(f.EvaluateFlagRequest(key="nope", context=context("u")))
    assert (missing.reason, missing.error_code) == (f.REASON_ERROR, f.ERROR_CODE_FLAG_NOT_FOUND)
    mismatch = await stub.EvaluateFlag(
        f.EvaluateFlagRequest(key="headerColor", context=context("u"), expected_type=f.VARIANT_TYPE_BOOL)
    )
    assert (mismatch.reason, mismatch.error_code, mismatch.HasField("value")) == (
        f.REASON_ERROR,
        f.ERROR_CODE_TYPE_MISMATCH,
        False,
    )

    with pytest.raises(grpc.aio.AioRpcError) as exists:
        await stub.CreateFlag(f.CreateFlagRequest(flag=header_color()))
    assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details(exists.value)[0] == "FLAG_ALREADY_EXISTS"

    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await stub.DeleteFlag(f.DeleteFlagRequest(key="headerColor", etag='W/"999"'))
    assert stale.value.code() == grpc.StatusCode.ABORTED
    deleted = await stub.DeleteFlag(f.DeleteFlagRequest(key="headerColor", etag=created.etag))
    assert deleted.revision > created.revision
    gone = await stub.EvaluateFlag(f.EvaluateFlagRequest(key="headerColor", context=context("u")))
    assert gone.error_code == f.ERROR_CODE_FLAG_NOT_FOUND and gone.revision >= deleted.revision
    with pytest.raises(grpc.aio.AioRpcError) as not_found:
        await stub.GetFlag(f.GetFlagRequest(key="headerColor"))
    assert details(not_found.value)[0] == "FLAG_NOT_FOUND"


async def test_validate_only_writes_nothing(stub: Stub) -> None:
    preview = await stub.CreateFlag(f.CreateFlagRequest(flag=header_color(), validate_only=True))
    assert preview.key == "headerColor" and not preview.etag
    with pytest.raises(grpc.aio.AioRpcError) as absent:
        await stub.GetFlag(f.GetFlagRequest(key="headerColor"))
    assert absent.value.code() == grpc.StatusCode.NOT_FOUND
    await stub.CreateFlag(f.CreateFlagRequest(flag=header_color()))
    with pytest.raises(grpc.aio.AioRpcError) as exists:
        await stub.CreateFlag(f.CreateFlagRequest(flag=header_color(), validate_only=True))
    assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_update_mask_etag_and_impact(stub: Stub) -> None:
    created = await stub.CreateFlag(f.CreateFlagRequest(flag=header_color()))
    change = f.Flag(key="headerColor", description="ramp", default_variant="blue", etag=created.etag)
    updated = await stub.UpdateFlag(
        f.UpdateFlagRequest(flag=change, update_mask=field_mask_pb2.FieldMask(paths=["description"]))
    )
    assert updated.flag.description == "ramp" and updated.flag.default_variant == "red"  # not in the mask
    assert updated.flag.revision > created.revision and list(updated.flag.rules) == list(created.rules)
    assert updated.impact.max_reassigned_fraction == 0.0

    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await stub.UpdateFlag(
            f.UpdateFlagRequest(flag=change, update_mask=field_mask_pb2.FieldMask(paths=["description"]))
        )
    assert stale.value.code() == grpc.StatusCode.ABORTED and details(stale.value)[0] == "ETAG_MISMATCH"

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.UpdateFlag(
            f.UpdateFlagRequest(
                flag=f.Flag(key="headerColor"), update_mask=field_mask_pb2.FieldMask(paths=["key"])
            )
        )
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT and details(unknown.value)[1] == [
        "update_mask"
    ]

    # 25/25/25/25 -> 50/0/25/25: blue's quarter moves to red; nothing else moves.
    ramp = f.Flag(
        key="headerColor",
        rules=[f.Rule(split=split(("red", 50), ("blue", 0), ("green", 25), ("yellow", 25)))],
    )
    preview = await stub.UpdateFlag(
        f.UpdateFlagRequest(
            flag=ramp, update_mask=field_mask_pb2.FieldMask(paths=["rules"]), validate_only=True
        )
    )
    assert preview.impact.max_reassigned_fraction == 0.25
    assert [(r.rule_index, r.reassigned_fraction) for r in preview.impact.rules] == [(0, 0.25)]
    unchanged = await stub.GetFlag(f.GetFlagRequest(key="headerColor"))
    assert unchanged.revision == updated.flag.revision
    applied = await stub.UpdateFlag(
        f.UpdateFlagRequest(flag=ramp, update_mask=field_mask_pb2.FieldMask(paths=["rules"]))
    )
    assert applied.impact == preview.impact
    answer = await stub.EvaluateFlag(
        f.EvaluateFlagRequest(key="headerColor", context=context("rachel@faas.com"))
    )
    assert answer.variant == "red" and answer.revision == applied.flag.revision  # bucket 42 is red's now


async def test_invalid_flag_names_every_field(stub: Stub) -> None:
    bad = string_flag(
        "bad",
        ["a", "a", "b"],
        default="zz",
        rules=[
            f.Rule(variant="a"),
            f.Rule(),
            f.Rule(split=split(("nope", 1), ("b", 0))),
            f.Rule(split=split(("a", 0))),
            f.Rule(
                conditions=[
                    cond("v", f.OPERATOR_SEMVER_LESS_THAN, "1.x"),
                    cond("n", f.OPERATOR_LESS_THAN, "3"),
                    cond("e", f.OPERATOR_EXISTS, 1),
                ],
                variant="b",
            ),
            f.Rule(conditions=[f.Condition(attribute="x", operator=99)], variant="a"),
            f.Rule(split=split(("a", 2**31), ("b", 1))),
        ],
    )
    bad.variants.append(f.Variant(name="n", value=f.VariantValue(number_value=1)))
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.CreateFlag(f.CreateFlagRequest(flag=bad))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, fields = details(invalid.value)
    assert reason == "INVALID_FLAG"
    assert fields == [
        "flag.variants[1].name",
        "flag.variants[3].value",
        "flag.default_variant",
        "flag.rules[1].outcome",
        "flag.rules[2].split.weights[0].variant",
        "flag.rules[3].split.weights",
        "flag.rules[4].conditions[0].values[0]",
        "flag.rules[4].conditions[1].values[0]",
        "flag.rules[4].conditions[2].values",
        "flag.rules[4].conditions[2].values[0]",
        "flag.rules[5].conditions[0].operator",
        "flag.rules[6].split.weights",
    ]


async def test_list_pages_in_key_order(stub: Stub) -> None:
    keys = [f"flag-{i:03}" for i in range(25)]
    for key in reversed(keys):
        await stub.CreateFlag(f.CreateFlagRequest(flag=string_flag(key, COLORS, "red")))
    seen, token = [], ""
    while True:
        page = await stub.ListFlags(f.ListFlagsRequest(page_size=10, page_token=token))
        assert len(page.flags) <= 10
        seen += [flag.key for flag in page.flags]
        token = page.next_page_token
        if not token:
            break
    assert seen == keys
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.ListFlags(f.ListFlagsRequest(page_token="garbage"))
    assert details(bad.value)[0] == "INVALID_PAGE_TOKEN"


async def test_evaluate_all_at_one_revision(stub: Stub) -> None:
    for key in ("a", "b", "c"):
        await stub.CreateFlag(
            f.CreateFlagRequest(
                flag=string_flag(
                    key,
                    COLORS,
                    "red",
                    [f.Rule(conditions=[cond("plan", f.OPERATOR_EQUALS, "pro")], variant="blue")],
                )
            )
        )
    every = await stub.EvaluateAll(f.EvaluateAllRequest(context=context("u", plan="pro")))
    assert [e.flag_key for e in every.evaluations] == ["a", "b", "c"]
    assert {e.variant for e in every.evaluations} == {"blue"}
    assert {e.revision for e in every.evaluations} == {every.revision}
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.EvaluateFlag(
            f.EvaluateFlagRequest(key="a", context=f.EvaluationContext(targeting_key="x" * 2000))
        )
    assert details(bad.value)[1] == ["context.targeting_key"]


async def test_context_numbers_that_are_not_json(stub: Stub) -> None:
    """A NaN or infinite attribute is a number no ordering holds for, not an error."""
    rule = f.Rule(conditions=[cond("n", f.OPERATOR_LESS_THAN, 3, negate=True)], variant="blue")
    await stub.CreateFlag(f.CreateFlagRequest(flag=string_flag("nan", COLORS, "red", [rule])))
    attributes = struct_pb2.Struct()
    attributes.fields["n"].number_value = float("nan")
    request = f.EvaluateFlagRequest(
        key="nan", context=f.EvaluationContext(targeting_key="u", attributes=attributes)
    )
    assert (await stub.EvaluateFlag(request)).variant == "blue"
    request.context.attributes.fields["n"].number_value = float("-inf")
    assert (await stub.EvaluateFlag(request)).variant == "red"
