"""``driftline status``: who holds what. Each consumer group's members, the
partitions each holds, and the lag on every partition the group reads.

Everything comes from the broker through aiokafka's admin client:
``ListGroups`` names the groups, ``DescribeGroups`` their members (client id,
host and the assignment the group leader handed out), ``OffsetFetch`` their
committed offsets, and a plain consumer's ``ListOffsets`` where each
partition ends. Lag is the end offset minus the committed one; a partition
with no commit counts from its beginning.

A call the broker does not answer is said so in the output (``notes``)
instead of failing the whole command: what the other calls told still shows.
A service in ``assign`` mode (one process a service, the default) holds no
membership, only commits: its group shows with no members, and its lag still
counts. Only ``group`` mode replicas (``driftline up --replicas``) appear as
members.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from services.common.epoch import observed_epoch


def _member(raw: Any) -> dict[str, Any]:
    """One member of a DescribeGroups answer (v0-v3 and v4+, which adds the instance id)."""
    member_id, client_id, host, assignment = raw[0], raw[-4], raw[-3], raw[-1]
    held: list[dict[str, Any]] = []
    if assignment:
        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
        held = [
            {"topic": topic, "partition": int(partition)}
            for topic, partitions in decoded.assignment
            for partition in sorted(partitions)
        ]
    return {"member_id": member_id, "client_id": client_id, "host": host, "partitions": held}


async def _describe(admin: AIOKafkaAdminClient, group: str, notes: list[str]) -> dict[str, Any]:
    described: dict[str, Any] = {"group": group, "state": None, "members": []}
    try:
        responses = await admin.describe_consumer_groups([group])
    except KafkaError as exc:
        notes.append(f"DescribeGroups {group}: {type(exc).__name__} {exc} (members unknown)")
        return described
    for response in responses:
        for entry in response.groups:
            error_code, name, state = entry[0], entry[1], entry[2]
            if name != group:
                continue
            if error_code:
                notes.append(f"DescribeGroups {group}: error code {error_code} (members unknown)")
                continue
            described["state"] = state
            described["members"] = sorted(
                (_member(m) for m in entry[5]), key=lambda m: (m["client_id"], m["member_id"])
            )
    return described


async def _committed(
    admin: AIOKafkaAdminClient, group: str, notes: list[str]
) -> dict[TopicPartition, int]:
    try:
        found = await admin.list_consumer_group_offsets(group)
    except KafkaError as exc:
        notes.append(f"OffsetFetch {group}: {type(exc).__name__} {exc} (lag unknown)")
        return {}
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}


async def _ends(bootstrap: str, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(sorted(partitions))
        return ends
    finally:
        await consumer.stop()


async def collect(bootstrap: str, *, prefix: str | None = None) -> dict[str, Any]:
    """The status document: log epoch, groups (members, partitions, lag) and notes."""
    notes: list[str] = []
    try:
        epoch = await observed_epoch(bootstrap)
    except (KafkaError, OSError) as exc:
        epoch = None
        notes.append(f"log epoch unknown: {type(exc).__name__} {exc}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        try:
            listed = await admin.list_consumer_groups()
        except KafkaError as exc:
            listed = []
            notes.append(f"ListGroups: {type(exc).__name__} {exc} (no groups listed)")
        names = sorted({str(entry[0]) for entry in listed})
        if prefix is not None:
            names = [name for name in names if name.startswith(prefix)]
        groups = [await _describe(admin, name, notes) for name in names]
        committed = {name: await _committed(admin, name, notes) for name in names}
    finally:
        await admin.close()
    wanted: set[TopicPartition] = set()
    for group in groups:
        wanted.update(committed[group["group"]])
        wanted.update(
            TopicPartition(p["topic"], p["partition"])
            for m in group["members"]
            for p in m["partitions"]
        )
    ends = await _ends(bootstrap, wanted)
    for group in groups:
        group["partitions"] = _lag_rows(group, committed[group["group"]], ends)
        group["lag"] = sum(row["lag"] for row in group["partitions"])
    return {"bootstrap": bootstrap, "log_epoch": epoch, "groups": groups, "notes": notes}


def _lag_rows(
    group: dict[str, Any], committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> list[dict[str, Any]]:
    holder: dict[TopicPartition, str] = {}
    for member in group["members"]:
        for p in member["partitions"]:
            holder[TopicPartition(p["topic"], p["partition"])] = member["client_id"]
    rows = []
    for tp in sorted(set(committed) | set(holder)):
        end = ends.get(tp, 0)
        offset = committed.get(tp)
        rows.append(
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "member": holder.get(tp),
                "committed": offset,
                "end": end,
                "lag": max(end - (offset or 0), 0),
            }
        )
    return rows


def render(status: dict[str, Any], console: Console) -> None:
    """The status document as tables, one per group."""
    console.print(
        f"broker [bold]{status['bootstrap']}[/]  log epoch {status['log_epoch'] or '(none)'}",
        highlight=False,
    )
    if not status["groups"]:
        console.print("no consumer groups")
    for group in status["groups"]:
        members = group["members"]
        table = Table(
            title=f"{group['group']}  state={group['state'] or '?'}  members={len(members)}  "
            f"lag={group['lag']}",
            title_justify="left",
        )
        for column in ("topic", "partition", "member", "committed", "end", "lag"):
            table.add_column(
                column, justify="right" if column not in ("topic", "member") else "left"
            )
        for row in group["partitions"]:
            member = row["member"] or "-"
            host = next((m["host"] for m in members if m["client_id"] == row["member"]), "")
            table.add_row(
                row["topic"],
                str(row["partition"]),
                f"{member} {host}".strip(),
                "-" if row["committed"] is None else str(row["committed"]),
                str(row["end"]),
                str(row["lag"]),
            )
        console.print(table)
        for member in members:
            if not member["partitions"]:
                console.print(f"  {member['client_id']} {member['host']}: no partitions")
    for note in status["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``driftline status`` to the command line."""

    @app.command("status")
    def status(
        prefix: Annotated[
            str | None, typer.Option(help="only groups whose name starts with this")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
    ) -> None:
        """Each consumer group's members, the partitions each holds, and lag per partition."""
        from services.common.settings import CommonSettings

        document = asyncio.run(collect(CommonSettings().bootstrap, prefix=prefix))
        if as_json:
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
            return
        render(document, Console())
