"""The spatial CLI group: exact degree conversion and the RPC each command makes."""

from __future__ import annotations

import pytest

from crowdmesh.daemon.client.cli import parse_args
from crowdmesh.daemon.client.cli_command import Invocation, Options
from crowdmesh.daemon.client.cli_report import _REPORT_ACTIONS, micro_degrees
from crowdmesh.errors import UsageError


@pytest.mark.parametrize(("text", "want"), [
    ("35.2271", 35_227_100), ("-80.8431", -80_843_100), ("0.0000005", 1), ("-0.0000005", -1),
    ("90", 90_000_000), (" 12.3456789 ", 12_345_679),
])
def test_degrees_become_micro_degrees_exactly(text, want):
    assert micro_degrees(text) == want


@pytest.mark.parametrize("text", ["north", "nan", "inf", ""])
def test_bad_coordinates_are_refused(text):
    with pytest.raises(UsageError) as info:
        micro_degrees(text)
    assert info.value.code == "bad-coordinate"


def _call(argv):
    args = parse_args(argv)
    inv = Invocation(args.command, Options(None, None, False, 30.0), args)
    return _REPORT_ACTIONS[args.action](inv)


def test_report_commands_map_to_their_rpc_calls():
    assert _call(["report", "submit", "--type", "flood", "--lat", "35.2271", "--lon",
                  "-80.8431", "--id", "r1"]) == (
        "report_submit", ["flood", 35_227_100, -80_843_100, "r1"])
    assert _call(["report", "list", "--near", "35.2", "-80.8", "--radius", "500"]) == (
        "report_list", [35_200_000, -80_800_000, 500, None])
    assert _call(["report", "list", "--status", "confirmed"]) == (
        "report_list", [None, None, None, "confirmed"])
    assert _call(["report", "vote", "ab" * 32, "reject"]) == (
        "report_vote", ["ab" * 32, "reject"])
    assert _call(["report", "pending"]) == ("report_pending", [])
