"""The embedded store: durable files, restart, one process per data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from router.store.embedded import EmbeddedStore
from router.store.interface import KIND_PHONE_NUMBER, Doc, ListQuery, StoreUnavailable

PN = KIND_PHONE_NUMBER
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def number(doc_id: str, created: int = 0, num: str = "+14155550100", **extra: Any) -> Doc:
    stamp = (EPOCH + timedelta(microseconds=created)).isoformat()
    return {
        "id": doc_id,
        "orgId": "org-a",
        "provider": "twilio",
        "number": num,
        "createdAt": stamp,
        "updatedAt": stamp,
        **extra,
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def embedded(data_dir: Path) -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(data_dir)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def test_restart_keeps_documents_claims_and_order(data_dir: Path) -> None:
    """After close and a new instance on the same dir: same documents, claims and order."""
    first = EmbeddedStore(data_dir)
    await first.start()
    for i in range(4):
        await first.create(PN, number(f"n{i}", created=i, num=f"+1415555010{i}"), f"k{i}")
    await first.replace(PN, number("n1", created=1, name="moved"), "k9")
    await first.delete(PN, "org-a", "n2")
    before = await first.list(PN, "org-a", ListQuery())
    await first.close()

    second = EmbeddedStore(data_dir)
    await second.start()
    try:
        assert await second.list(PN, "org-a", ListQuery()) == before
        assert [d["id"] for d in before.items] == ["n3", "n1", "n0"]
        assert (await second.lookup("k9") or {})["name"] == "moved"
        assert await second.lookup("k1") is None
        assert await second.lookup("k2") is None
        assert (await second.lookup("k0") or {})["id"] == "n0"
        with pytest.raises(Exception, match="already claimed by n3"):
            await second.create(PN, number("n5"), "k3")
    finally:
        await second.close()


async def test_each_document_is_one_json_file_written_before_the_call_returns(
    embedded: EmbeddedStore, data_dir: Path
) -> None:
    """create writes <dir>/<kind>/<id>.json (document and its key); delete removes it."""
    await embedded.create(PN, number("n1"), "twilio:+14155550100")
    path = data_dir / PN / "n1.json"
    stored = json.loads(path.read_text())
    assert stored == {"uniqueKey": "twilio:+14155550100", "doc": number("n1")}
    assert sorted(p.name for p in path.parent.iterdir()) == ["n1.json"]  # no temp files left

    await embedded.delete(PN, "org-a", "n1")
    assert not path.exists()


def test_a_second_process_on_the_same_dir_is_refused(data_dir: Path) -> None:
    """While one process holds the dir, another gets StoreUnavailable saying to use Redis."""
    holder = _run_python(
        "import asyncio, sys\n"
        "from router.store.embedded import EmbeddedStore\n"
        "async def main():\n"
        "    store = EmbeddedStore(__import__('pathlib').Path(sys.argv[1]))\n"
        "    await store.start()\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    await store.close()\n"
        "asyncio.run(main())\n",
        str(data_dir),
    )
    try:
        assert holder.stdout is not None
        while holder.stdout.readline().strip() != b"ready":
            assert holder.poll() is None, "the first process did not start"
        second = _run_python(
            "import asyncio, sys, pathlib\n"
            "from router.store.interface import StoreUnavailable\n"
            "from router.store.embedded import EmbeddedStore\n"
            "try:\n"
            "    asyncio.run(EmbeddedStore(pathlib.Path(sys.argv[1])).start())\n"
            "except StoreUnavailable as exc:\n"
            "    print('REFUSED', exc)\n",
            str(data_dir),
        )
        out, _ = second.communicate(timeout=30)
        message = out.decode().strip().splitlines()[-1]
        assert message.startswith("REFUSED another router process")
        assert f"pid {holder.pid}" in message
        assert "Redis" in message
    finally:
        holder.communicate(b"\n", timeout=30)
    assert holder.returncode == 0


async def test_the_lock_is_released_on_close(data_dir: Path) -> None:
    """A closed store lets the next instance take the directory (also in one process)."""
    first = EmbeddedStore(data_dir)
    await first.start()
    second = EmbeddedStore(data_dir)
    with pytest.raises(StoreUnavailable, match="another router process"):
        await second.start()
    await first.close()
    await second.start()
    await second.close()


async def test_failed_disk_write_raises_unavailable_and_changes_nothing(
    embedded: EmbeddedStore, data_dir: Path
) -> None:
    """If the file cannot be written, create/replace/delete raise and memory stays as it was."""
    original = number("n1", name="original")
    await embedded.create(PN, original, "k1")
    # Make the kind's directory unusable (a plain file in its place): fails even as root.
    kind_dir = data_dir / PN
    kind_dir.rename(data_dir / "saved")
    kind_dir.write_text("not a directory")

    with pytest.raises(StoreUnavailable, match="data directory is not writable"):
        await embedded.create(PN, number("n2"), "k2")
    with pytest.raises(StoreUnavailable, match="data directory is not writable"):
        await embedded.replace(PN, number("n1", name="changed"), "k3")
    with pytest.raises(StoreUnavailable, match="data directory is not writable"):
        await embedded.delete(PN, "org-a", "n1")

    assert await embedded.get(PN, "org-a", "n2") is None
    assert await embedded.get(PN, "org-a", "n1") == original
    assert await embedded.lookup("k1") == original
    assert await embedded.lookup("k2") is None
    assert await embedded.lookup("k3") is None
    assert [d["id"] for d in (await embedded.list(PN, "org-a", ListQuery())).items] == ["n1"]

    kind_dir.unlink()
    (data_dir / "saved").rename(kind_dir)
    await embedded.create(PN, number("n2"), "k2")  # works again once the disk does


async def test_unreadable_files_are_skipped_and_logged(data_dir: Path) -> None:
    """Corrupt or mismatched files are logged and skipped; the rest load; temp files go."""
    first = EmbeddedStore(data_dir)
    await first.start()
    await first.create(PN, number("good"), "k1")
    await first.close()
    (data_dir / PN / "broken.json").write_text("{not json")
    (data_dir / PN / "renamed.json").write_text(json.dumps({"uniqueKey": None, "doc": number("x")}))
    (data_dir / PN / ".good.json.abc.tmp").write_text("half a write")

    store = EmbeddedStore(data_dir)
    with capture_logs() as logs:
        await store.start()
    try:
        unreadable = sorted(e["path"] for e in logs if e["event"] == "store.file_unreadable")
        assert [Path(p).name for p in unreadable] == ["broken.json", "renamed.json"]
        assert [d["id"] for d in (await store.list(PN, "org-a", ListQuery())).items] == ["good"]
        assert (await store.lookup("k1") or {})["id"] == "good"
        assert not (data_dir / PN / ".good.json.abc.tmp").exists()
    finally:
        await store.close()


async def test_two_files_claiming_one_key_keep_the_older(data_dir: Path) -> None:
    """On load, a key claimed twice stays with the older document; the clash is logged."""
    folder = data_dir / PN
    folder.mkdir(parents=True)
    for doc_id, created in (("newer", 50), ("older", 10)):
        body = {"uniqueKey": "k", "doc": number(doc_id, created=created)}
        (folder / f"{doc_id}.json").write_text(json.dumps(body))

    store = EmbeddedStore(data_dir)
    with capture_logs() as logs:
        await store.start()
    try:
        assert (await store.lookup("k") or {})["id"] == "older"
        clash = [e for e in logs if e["event"] == "store.claim_duplicate"]
        assert [(e["kept"], e["dropped"]) for e in clash] == [("older", "newer")]
        assert (await store.list(PN, "org-a", ListQuery())).total == 2
    finally:
        await store.close()


async def test_ids_that_are_not_safe_file_names_are_refused(embedded: EmbeddedStore) -> None:
    """An id that could escape the data directory never becomes a path."""
    with pytest.raises(ValueError, match="unsafe"):
        await embedded.create(PN, number("../escape"), None)
    assert await embedded.get(PN, "org-a", "../escape") is None


def _run_python(code: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(  # noqa: S603  # our own interpreter running our own snippet
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
