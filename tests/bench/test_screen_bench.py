"""`python -m bench.screen`'s memory measure on a fixture (the throughput passes need minutes)."""

from __future__ import annotations

from pathlib import Path

from bench.screen import minute_memory

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "xhs.jsonl"


def test_minute_buckets_memory_is_measured_per_room() -> None:
    measured = minute_memory(FIXTURE)
    assert measured["minutes_kept"] == 60
    assert 0 < measured["session_minutes_held"] <= 60 * 114  # 114 sessions in the fixture
    assert measured["rooms_in_last_hour"] >= 1
    # At least a dict slot and a MinuteCounts per (session, minute) held.
    assert measured["bytes_per_session_minute"] > 64
    assert measured["bytes_per_room"] == measured["bytes"] / measured["rooms_in_last_hour"]


def test_staleness_compares_valid_events_with_valid_events() -> None:
    """A worker whose /status counts 1,000 records of which 990 valid events, and a page
    showing those 990: not behind (the bench once compared the records, so every fetch
    looked behind by the duplicates and invalid records read so far)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bench.screen import StatusWatcher

    class Status(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps({"records": 1000, "events": {"valid": 990}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Status)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    stopped = threading.Event()
    watcher = StatusWatcher(f"http://127.0.0.1:{server.server_address[1]}/status", stopped)
    watcher.start()
    try:
        for _ in range(100):
            if watcher.seen:
                break
            stopped.wait(0.05)
        assert watcher.behind(990) == (0, 0.0)
        assert watcher.behind(980)[0] == 10
    finally:
        stopped.set()
        watcher.join()
        server.shutdown()
        server.server_close()
        serving.join()
