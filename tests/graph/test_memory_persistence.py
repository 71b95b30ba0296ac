"""MemoryGraphStore beyond the shared contract: crash safety, compaction, the writer lock, validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmkg.graph.memory import SNAPSHOT, WAL, MemoryGraphStore, StoreCorruptError, StoreLockedError
from mmkg.graph.schema import Edge, Label, Node, Rel


def fill(store: MemoryGraphStore, start: int, n: int) -> None:
    """n images, each depicting entity `ent:e<i % 7>`, one commit."""
    store.upsert_nodes([Node(f"ent:e{i}", Label.ENTITY) for i in range(7)])
    store.upsert_nodes([Node(f"img:{i}", Label.IMAGE, {"n": i}) for i in range(start, start + n)])
    store.upsert_edges(
        [Edge(f"img:{i}", f"ent:e{i % 7}", Rel.DEPICTS, {"score": 0.5}) for i in range(start, start + n)]
    )
    store.commit()


def state(store: MemoryGraphStore) -> tuple[object, ...]:
    nodes = {n.id: n.props for label in Label for n in store.iter_nodes(label)}
    edges = {e.key: e.props for rel in Rel for e in store.iter_edges(rel)}
    return store.counts(), nodes, edges


def run_child(path: Path, body: str, expect_rc: int = 0) -> subprocess.CompletedProcess[str]:
    """Run `body` in a fresh interpreter with `store = MemoryGraphStore(path)` and helpers in scope."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from mmkg.graph.memory import MemoryGraphStore
        from mmkg.graph.schema import Edge, Label, Node, Rel
        store = MemoryGraphStore(Path({str(path)!r}), compact_min_bytes=int(os.environ.get("COMPACT", 1 << 30)))
        """
    ) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == expect_rc, proc.stderr
    return proc


# ---------------------------------------------------------------- crash safety


def test_torn_last_log_line_is_dropped_and_cut_off(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        fill(store, 0, 10)
        expected = state(store)
    wal = tmp_path / WAL
    with open(wal, "ab") as fh:
        fh.write(b'{"seq":2,"ops":[["N","img:99","Image",{}]')  # a crash mid-append
    size_before = wal.stat().st_size
    with MemoryGraphStore(tmp_path) as store:
        assert state(store) == expected
        assert wal.stat().st_size < size_before  # repaired, so the next line starts clean
        fill(store, 10, 5)
        expected = state(store)
    with MemoryGraphStore(tmp_path) as store:
        assert state(store) == expected
        assert store.counts()[0]["Image"] == 15


def test_zero_filled_tail_is_treated_as_torn(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        fill(store, 0, 3)
    with open(tmp_path / WAL, "ab") as fh:
        fh.write(b"\0" * 4096)
    with MemoryGraphStore(tmp_path) as store:
        assert store.counts()[0]["Image"] == 3


def test_killed_while_writing_the_log_keeps_earlier_commits(tmp_path: Path) -> None:
    run_child(
        tmp_path,
        """
        store.upsert_nodes([Node("img:1", Label.IMAGE, {"ok": True})])
        store.commit()
        real_write = os.write
        def dying_write(fd, data):
            real_write(fd, bytes(data)[: len(data) // 2])
            os._exit(9)
        os.write = dying_write
        store.upsert_nodes([Node("img:2", Label.IMAGE)])
        store.commit()
        """,
        expect_rc=9,
    )
    with MemoryGraphStore(tmp_path) as store:  # the lock died with the process
        assert set(store.existing_ids(["img:1", "img:2"])) == {"img:1"}
        assert store.get_nodes(["img:1"])["img:1"].props == {"ok": True}
        store.upsert_nodes([Node("img:3", Label.IMAGE)])
    with MemoryGraphStore(tmp_path) as store:
        assert store.existing_ids(["img:1", "img:2", "img:3"]) == {"img:1", "img:3"}


def test_uncommitted_writes_are_lost_in_a_crash(tmp_path: Path) -> None:
    run_child(
        tmp_path,
        """
        store.upsert_nodes([Node("img:1", Label.IMAGE)])
        store.commit()
        store.upsert_nodes([Node("img:2", Label.IMAGE)])
        os._exit(0)
        """,
    )
    with MemoryGraphStore(tmp_path) as store:
        assert store.existing_ids(["img:1", "img:2"]) == {"img:1"}


@pytest.mark.parametrize("die_at", ["before_rename", "after_rename"])
def test_crash_during_compaction(tmp_path: Path, die_at: str) -> None:
    with MemoryGraphStore(tmp_path) as store:
        for k in range(5):
            fill(store, k * 10, 10)
        store.upsert_edges([Edge("ent:e1", "ent:e2", Rel.CO_OCCURS, {"count": 4})])
        store.delete_record("rec:none")
        expected = state(store)
    hook = (
        "os.replace = lambda *a: os._exit(7)"
        if die_at == "before_rename"
        else "real = os.ftruncate\nos.ftruncate = lambda fd, n: os._exit(7) if n == 0 else real(fd, n)"
    )
    run_child(tmp_path, hook + "\nstore.compact()\n", expect_rc=7)
    leftovers = list(tmp_path.glob(f".{SNAPSHOT}.*.tmp"))
    assert bool(leftovers) == (die_at == "before_rename")
    with MemoryGraphStore(tmp_path) as store:
        assert state(store) == expected  # replaying the not-yet-emptied log must not double anything
        assert not list(tmp_path.glob(f".{SNAPSHOT}.*.tmp"))
        fill(store, 100, 2)
        expected = state(store)
    with MemoryGraphStore(tmp_path) as store:
        assert state(store) == expected


def test_damage_before_the_last_line_is_an_error(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        fill(store, 0, 3)
        fill(store, 3, 3)
    wal = tmp_path / WAL
    lines = wal.read_bytes().split(b"\n")
    wal.write_bytes(b"\n".join([lines[0][:-5] + b"#####", *lines[1:]]))
    with pytest.raises(StoreCorruptError, match="damaged"):
        MemoryGraphStore(tmp_path)


def test_truncated_snapshot_is_an_error(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        fill(store, 0, 30)
        store.compact()
    snap = tmp_path / SNAPSHOT
    snap.write_bytes(b"\n".join(snap.read_bytes().split(b"\n")[:2]) + b"\n")
    with pytest.raises(StoreCorruptError, match="incomplete"):
        MemoryGraphStore(tmp_path)


# ---------------------------------------------------------------- compaction


def test_compaction_when_the_log_grows(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path, compact_min_bytes=4096) as store:
        for k in range(40):
            fill(store, k * 10, 10)
        store.delete_record("rec:none")
        store.upsert_nodes([Node("img:0", Label.IMAGE, {"extra": "x"})])
        store.commit()
        expected = state(store)
        assert (tmp_path / SNAPSHOT).exists()
        assert (tmp_path / WAL).stat().st_size <= max(4096, (tmp_path / SNAPSHOT).stat().st_size)
    with MemoryGraphStore(tmp_path) as store:
        assert state(store) == expected
        assert store.counts()[0]["Image"] == 400


def test_commit_cost_follows_the_batch_not_the_graph(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        fill(store, 0, 5000)
        store.compact()
        snap = (tmp_path / SNAPSHOT).stat()
        wal_before = (tmp_path / WAL).stat().st_size
        store.upsert_nodes([Node("img:new", Label.IMAGE)])
        store.upsert_edges([Edge("img:new", "ent:e1", Rel.DEPICTS, {"score": 0.1})])
        store.commit()
        assert 0 < (tmp_path / WAL).stat().st_size - wal_before < 200
        assert (tmp_path / SNAPSHOT).stat().st_mtime_ns == snap.st_mtime_ns


def test_rewriting_unchanged_data_does_not_grow_the_log(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        fill(store, 0, 50)
        size = (tmp_path / WAL).stat().st_size
        fill(store, 0, 50)
        assert (tmp_path / WAL).stat().st_size == size


def test_files_on_disk_are_json(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        fill(store, 0, 20)
        store.compact()
        fill(store, 20, 2)
    for name in (SNAPSHOT, WAL):
        for line in (tmp_path / name).read_text("ascii").splitlines():
            json.loads(line)


# ---------------------------------------------------------------- lock, read-only


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path):
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            MemoryGraphStore(tmp_path)
        proc = run_child(tmp_path, "", expect_rc=1)
        assert "StoreLockedError" in proc.stderr
    with MemoryGraphStore(tmp_path):  # released on close
        pass


def test_read_only_sees_commits_and_refuses_writes(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as writer:
        fill(writer, 0, 10)
        writer.upsert_nodes([Node("img:uncommitted", Label.IMAGE)])
        reader = MemoryGraphStore(tmp_path, read_only=True)
        assert reader.counts()[0]["Image"] == 10
        with pytest.raises(Exception, match="read-only"):
            reader.upsert_nodes([Node("img:x", Label.IMAGE)])
        reader.close()


def test_read_only_on_a_missing_folder_is_empty(tmp_path: Path) -> None:
    store = MemoryGraphStore(tmp_path / "nothing", read_only=True)
    assert sum(store.counts()[0].values()) == 0
    assert not (tmp_path / "nothing").exists()


# ---------------------------------------------------------------- validation and isolation


@pytest.mark.parametrize("value", [None, {"a": 1}, [1, [2]], object()])
def test_unsupported_property_values_are_refused(tmp_path: Path, value: object) -> None:
    with MemoryGraphStore(tmp_path) as store, pytest.raises(ValueError, match="property"):
        store.upsert_nodes([Node("img:1", Label.IMAGE, {"bad": value})])


def test_a_node_keeps_its_label(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        store.upsert_nodes([Node("x:1", Label.IMAGE)])
        with pytest.raises(ValueError, match="Image"):
            store.upsert_nodes([Node("x:1", Label.TEXT)])


def test_an_entity_does_not_co_occur_with_itself(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        store.upsert_nodes([Node("ent:a", Label.ENTITY)])
        with pytest.raises(ValueError, match="itself"):
            store.upsert_edges([Edge("ent:a", "ent:a", Rel.CO_OCCURS, {"count": 1})])


def test_results_are_copies(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        props = {"tags": ["a"]}
        store.upsert_nodes([Node("img:1", Label.IMAGE, props)])
        props["tags"].append("mutated by caller")
        got = store.get_nodes(["img:1"])["img:1"]
        got.props["tags"].append("mutated by reader")
        got.props["new"] = 1
        assert store.get_nodes(["img:1"])["img:1"].props == {"tags": ["a"]}


def test_type_change_is_a_change(tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path) as store:
        store.upsert_nodes([Node("img:1", Label.IMAGE, {"v": 1})])
        store.upsert_nodes([Node("img:1", Label.IMAGE, {"v": True})])
    with MemoryGraphStore(tmp_path) as store:
        assert store.get_nodes(["img:1"])["img:1"].props["v"] is True
