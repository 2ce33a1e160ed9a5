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
What the embedded tansu broker answers (measured, aiokafka 0.14, DescribeGroups
v2): each member's id and the group's state, but an empty client id, client
host and assignment; and an ``OffsetFetch`` for all of a group's partitions
(no partitions named) breaks the connection, while one naming them answers.
So the offsets are asked for every partition of every topic, and where the
broker reports no assignment, it is derived as the group leader made it:
aiokafka's round-robin assignor (every driftline consumer's) over the
members' ids and the topics the group has committed on (``assignment`` says
``derived``, a note says why). A member's client id, when not reported, is
its member id less the broker's ``-<uuid>`` suffix.
A service in ``assign`` mode (one process a service, the default) holds no
membership, only commits: its group shows with no members, and its lag still
counts. Only ``group`` mode replicas (``driftline up --replicas``) appear as
members.
"""

from __future__ import annotations

import asyncio
import json
import re
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

UUID_SUFFIX = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _member(raw: Any) -> dict[str, Any]:
    """One member of a DescribeGroups answer (v0-v3 and v4+, which adds the instance id)."""
    member_id, client_id, host, assignment = raw[0], raw[-4], raw[-3], raw[-1]
    if not client_id and UUID_SUFFIX.search(member_id):
        client_id = UUID_SUFFIX.sub("", member_id)
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
    described: dict[str, Any] = {"group": group, "state": None, "protocol": None, "members": []}
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
            described["protocol"] = entry[4]
            described["members"] = sorted(
                (_member(m) for m in entry[5]), key=lambda m: (m["client_id"], m["member_id"])
            )
    return described


async def _committed(
    admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition], notes: list[str]
) -> dict[TopicPartition, int]:
    if not partitions:
        return {}
    try:  # partitions named: tansu cannot answer for "all of the group's"
        found = await admin.list_consumer_group_offsets(group, partitions=partitions)
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
        every = await _all_partitions(admin, notes) if names else []
        committed = {name: await _committed(admin, name, every, notes) for name in names}
    finally:
        await admin.close()
    wanted: set[TopicPartition] = set()
    for group in groups:
        _derive_assignment(group, set(committed[group["group"]]), every, notes)
        read = {tp.topic for tp in committed[group["group"]]}
        wanted.update(tp for tp in every if tp.topic in read)
        wanted.update(
            TopicPartition(p["topic"], p["partition"])
            for m in group["members"]
            for p in m["partitions"]
        )
    ends = await _ends(bootstrap, wanted)
    for group in groups:
        group["partitions"] = _lag_rows(group, committed[group["group"]], every, ends)
        group["lag"] = sum(row["lag"] for row in group["partitions"])
    return {"bootstrap": bootstrap, "log_epoch": epoch, "groups": groups, "notes": notes}


async def _all_partitions(admin: AIOKafkaAdminClient, notes: list[str]) -> list[TopicPartition]:
    try:
        described = await admin.describe_topics()
    except KafkaError as exc:
        notes.append(f"Metadata: {type(exc).__name__} {exc} (no partitions, no lag)")
        return []
    return sorted(
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if not topic["is_internal"]
        for partition in topic["partitions"]
    )


def _derive_assignment(
    group: dict[str, Any],
    committed: set[TopicPartition],
    every: list[TopicPartition],
    notes: list[str],
) -> None:
    """Where the broker reported no member's partitions, the round-robin assignor's answer."""
    members = group["members"]
    reported = any(member["partitions"] for member in members)
    group["assignment"] = "reported" if reported or not members else "derived"
    if reported or not members:
        return
    subscribed = {tp.topic for tp in committed}
    if group.get("protocol") not in ("", None, "roundrobin"):
        group["assignment"] = "unknown"
        notes.append(
            f"{group['group']}: the broker reports no assignment, and the group's assignor "
            f"{group['protocol']!r} is not the round-robin one: partitions unknown"
        )
        return
    if not subscribed:
        group["assignment"] = "unknown"
        notes.append(
            f"{group['group']}: the broker reports no assignment and the group has no "
            "commit to tell its topics: partitions unknown"
        )
        return
    ordered = sorted(members, key=lambda m: m["member_id"])  # as the assignor orders them
    for index, tp in enumerate(tp for tp in every if tp.topic in subscribed):
        held = ordered[index % len(ordered)]["partitions"]
        held.append({"topic": tp.topic, "partition": tp.partition})
    notes.append(
        f"{group['group']}: the broker reports no assignment; derived with aiokafka's "
        f"round-robin assignor over {len(members)} members and topics {sorted(subscribed)}"
    )


def _lag_rows(
    group: dict[str, Any],
    committed: dict[TopicPartition, int],
    every: list[TopicPartition],
    ends: dict[TopicPartition, int],
) -> list[dict[str, Any]]:
    """A row for every partition of every topic the group reads (holds or has committed on)."""
    holder: dict[TopicPartition, str] = {}
    for member in group["members"]:
        for p in member["partitions"]:
            holder[TopicPartition(p["topic"], p["partition"])] = member["member_id"]
    read = {tp.topic for tp in (*committed, *holder)}
    rows = []
    for tp in sorted({tp for tp in every if tp.topic in read} | set(committed) | set(holder)):
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
            f"assignment={group['assignment']}  lag={group['lag']}",
            title_justify="left",
        )
        for column in ("topic", "partition", "member", "committed", "end", "lag"):
            table.add_column(
                column, justify="right" if column not in ("topic", "member") else "left"
            )
        for row in group["partitions"]:
            member = next((_label(m) for m in members if m["member_id"] == row["member"]), "-")
            table.add_row(
                row["topic"],
                str(row["partition"]),
                member,
                "-" if row["committed"] is None else str(row["committed"]),
                str(row["end"]),
                str(row["lag"]),
            )
        console.print(table)
        for member in members:
            if not member["partitions"]:
                console.print(f"  {_label(member)}: no partitions")
    for note in status["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def _label(member: dict[str, Any]) -> str:
    """A member as a person reads it: client id, host when known, and its id's tail."""
    tail = member["member_id"].rsplit("-", 1)[-1][:8]
    return " ".join(part for part in (member["client_id"], member["host"], f"({tail})") if part)


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
