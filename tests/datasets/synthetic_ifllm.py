"""Build small IFLLM-layout folders with every documented quirk, for tests."""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

HOUR = 3_600_000

RESP = {
    "a1": "Paris is the capital of France. It lies on the Seine.",
    "a2": "The capital of France is Paris, a city of about two million people.",
    "b1": "Mount Everest is the highest mountain above sea level.",
    "b2": "Everest, at 8849 m, is the tallest peak on Earth.",
    "c1": "Water boils at 100 degrees Celsius at sea level.",
}


def _ts(epoch_ms: int) -> str:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def build(root: Path, *, hour_offset: int = 0) -> dict:
    """A release with one pairwise task (2 turns) and one pointwise task (2 turns).

    ``hour_offset``: the query timestamps are written this many hours off the trajectories'
    epoch (the time-zone defect). Returns facts the tests check against.
    """
    root.mkdir(parents=True, exist_ok=True)
    t0 = 1_760_000_000_000  # trajectories' epoch at page timer 0
    q = [  # (query_ID, worker, task, query, r1, r2, n1, n2, l1, l2, pref, adj, epoch)
        (10, "worker_aaa", 1, "capital of France?", RESP["a1"], RESP["a2"], "gpt-4o-mini",
         "deepseek-ai/\r\nDeepSeek-V3", 4, 3, 2.0, 1, t0 + 5_000),
        (11, "worker_aaa", 1, "highest mountain?", RESP["b1"], RESP["b2"], "gpt-4o-mini", "claude-3", 5, 4, 1.0, 0,
         t0 + 20_000),
        (12, "worker_aaa", 2, "boiling point?", RESP["c1"], "", "gpt-4o-mini", "", 4, None, None, 0, t0 + 5_000),
        (13, "worker_aaa", 2, "and at altitude?", RESP["c1"], "", "gpt-4o-mini", "", 2, None, 0.0, 0, None),
    ]
    with open(root / "query_logs_table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query_ID", "user_id", "task_id", "user_query", "llm_response_1", "llm_response_2",
                    "llm_name_1", "llm_name_2", "likert_1", "likert_2", "preference", "adjustment",
                    "query_timestamp"])
        for r in q:
            epoch = r[-1]
            stamp = "0000-00-00 00:00:00" if epoch is None else _ts(epoch + hour_offset * HOUR)
            w.writerow([*r[:-1], stamp])
    with open(root / "task_table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "task_id", "copy_sentence", "summary", "feedback", "understand_before",
                    "understand_after", "query_copy", "llm_response_copy", "accuracy", "finished", "domain"])
        w.writerow(["worker_aaa", 1, "x", "sum", "nice &amp; easy", 1, 3, "q", "r", 78, "2025-10-15 16:20:34", "France"])
        w.writerow(["worker_aaa", 2, "x", "sum", "", 2, 4, "q", "r", 81, "2025-10-15 16:30:34", "Water"])
        w.writerow(["worker_bbb", 1, "", "", "", "", "", "", "", 50, "", "Unfinished"])
    with open(root / "record_info_table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "consent", "age"])
        w.writerow(["worker_aaa", 1, 30])
        w.writerow(["worker_bbb", 1, 41])

    # pairwise folder: samples every 100 ms from t=0 to 35 s; turn 0 from 5 s, turn 1 from 20 s
    d = root / "user_behavior" / "worker_aaa" / "1"
    d.mkdir(parents=True)
    times = list(range(0, 35_000, 100))
    gaze = [(100 + i % 50, 200 + i % 30, t, t0 + t) for i, t in enumerate(times)]
    with open(d / "abs_gaze.csv", "w", newline="") as fh:  # every row twice, in batches
        w = csv.writer(fh)
        for k in range(0, len(gaze), 100):
            w.writerows(gaze[k:k + 100])
            w.writerows(gaze[k:k + 100])
    with open(d / "abs_mouse.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([(-1, -1, t, e) if i < 3 else (x + 1, y + 1, t, e) for i, (x, y, t, e) in enumerate(gaze)])
    for name, pos in (("rel_gaze_one.csv", 0), ("rel_gaze_two.csv", 1), ("rel_mouse_left.csv", 0),
                      ("rel_mouse_right.csv", 1)):
        with open(d / name, "w", newline="") as fh:
            for t in times:
                turn = -1 if t < 5_000 else (0 if t < 20_000 else 1)
                if turn < 0 or (t // 1000) % 2 != pos:
                    fh.write(f"-1,-1,,,{t},1,{t0 + t + 3}\n")
                    continue
                text = [RESP["a1"], RESP["a2"]][pos] if turn == 0 else [RESP["b1"], RESP["b2"]][pos]
                ci = (t // 100) % len(text)
                win = text[max(0, ci - 10): ci + 10].replace('"', '""')
                fh.write(f'{10 + pos},{20 + ci},"{win}",{ci},{t},1,{t0 + t + 3}\n')
        if name == "rel_gaze_two.csv":  # window text not CSV-escaped (9 fields): read; text for a number: not
            with open(d / name, "a") as fh:
                fh.write('5,6,"say "hi", he said",7,36000,1,' + str(t0 + 36_000) + "\n")
                fh.write('5,6,"x",notanumber,36100,1,' + str(t0 + 36_100) + "\n")

    # pointwise folder with an older 6-column rel file
    d = root / "user_behavior" / "worker_aaa" / "2"
    d.mkdir(parents=True)
    with open(d / "abs_gaze.csv", "w") as fh:
        fh.writelines(f"{300 + i},{400},{t},{t0 + t}\n" for i, t in enumerate(range(0, 10_000, 100)))
    with open(d / "abs_mouse.csv", "w") as fh:
        fh.writelines(f"{300 + i},{401},{t},{t0 + t}\n" for i, t in enumerate(range(0, 10_000, 100)))
    with open(d / "rel_gaze.csv", "w") as fh:
        for t in range(0, 10_000, 100):
            if t < 5_000:
                fh.write(f"-1,-1,,,{t},{t0 + t}\n")
            else:
                ci = (t // 100) % len(RESP["c1"])
                fh.write(f'1,2,"{RESP["c1"][max(0, ci - 8):ci + 8]}",{ci},{t},{t0 + t}\n')
    with open(d / "rel_mouse.csv", "w") as fh:
        fh.writelines(f"-1,-1,,,{t},{t0 + t}\n" for t in range(0, 10_000, 100))
    return {
        "pairwise_gaze_unique": len(gaze),
        "pointwise_gaze": 100,
        "mouse": len(gaze) + 100,
        "malformed": 1,
    }
