"""Time of the dashboard's per-participant plots page (issue 17 item 6): the page and every panel
image it shows, as a browser would fetch them, for a mouse-only participant of the embedded demo
study (2 tasks × 3 turns, mouse + layout + events streams like the site stores them).

    .venv/bin/python benchmarks/dashboard_plots_page.py [--turns 3] [--tasks 2]

Prints the page's wall time, each image kind's total, the first view (the page and the images
it shows before a turn is opened; images are fetched in page order, the shown ones first), for
the first load and a reload (images cached on the server).
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import defaultdict


def build(app, n_tasks: int, n_turns: int) -> tuple[str, str]:
    from sqlalchemy import select

    from gazepref import store
    from gazepref.signals.plots.synthetic import site_like

    syn = site_like()
    (turn0, _) = syn.turns()
    streams = syn.streams("p_synth/7")
    with app.extensions["gazepref"].sessions() as s:
        study = s.scalars(select(store.Study)).first()
        p = store.Participant(study_id=study.id, pseudonym="bench0123456789abcdef", platform="bench", consent=True,
                              consent_at=store.utcnow(), state={})
        s.add(p)
        s.flush()
        for k in range(n_tasks):
            task = store.Task(participant_id=p.id, index=k, kind="pairwise", clock_anchor_epoch_ms=1.7e12)
            s.add(task)
            s.flush()
            seq = 0
            for i in range(n_turns):
                shift = i * 10_000.0
                row = store.Turn(task_id=task.id, index=i, kind="pairwise", prompt=f"{turn0.prompt} ({i})",
                                 choice=turn0.choice, t_shown=shift, t_decided=shift + 9_000.0)
                row.responses = [store.Response(position=r.position, model=r.model, text=r.text, likert=r.likert)
                                 for r in turn0.responses]
                s.add(row)
                for name in ("mouse", "layout", "events"):
                    tb = streams[name]
                    t = tb.column("t").to_numpy() + shift
                    tb = tb.set_column(tb.schema.get_field_index("t"), "t", __import__("pyarrow").array(t))
                    if name == "layout":
                        tb = tb.set_column(tb.schema.get_field_index("turn"), "turn",
                                           __import__("pyarrow").array([i] * tb.num_rows, __import__("pyarrow").int32()))
                    else:
                        tb = tb.drop_columns(["turn"])
                    s.add(store.make_chunk(task.id, name, seq, tb, clock_origin_epoch_ms=1.7e12))
                    seq += 1
        s.commit()
        return study.slug, p.pseudonym


def _log_in(app, client) -> None:
    """A researcher account, logged in through the login form (as the dashboard requires)."""
    import re

    from gazepref import store
    from gazepref.capture_site.accounts import grant, set_password

    with app.extensions["gazepref"].sessions() as s:
        user = store.User(username="bench", password_hash="")
        s.add(user)
        set_password(s, user, "a bench password")
        s.flush()
        grant(s, user, [store.ALL_STUDIES])
        s.commit()
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/admin/login", data={"csrf_token": csrf, "username": "bench", "password": "a bench password"})
    assert r.status_code == 302, r.status_code


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--turns", type=int, default=3)
    a = ap.parse_args()
    from gazepref.capture_site.app import create_app

    with tempfile.TemporaryDirectory() as d:
        app = create_app(d, {"TESTING": True, "SECRET_KEY": "bench"})
        slug, pseudonym = build(app, a.tasks, a.turns)
        client = app.test_client()
        _log_in(app, client)
        url = f"/admin/studies/{slug}/participants/{pseudonym[:12]}/plots"
        for label in ("first load", "reload"):
            w = time.perf_counter()
            r = client.get(url)
            page_s = time.perf_counter() - w
            assert r.status_code == 200, r.status_code
            html = r.get_data(as_text=True)
            imgs = re.findall(r'<img[^>]*src="([^"]+)"', html)
            # what a browser fetches at first: images outside closed <details> (the others load when opened)
            shown = []
            for k, block in enumerate(re.split(r"<details", html)):
                closed = k > 0 and not re.match(r'[^>]*\bopen\b', block)
                inner = block.split("</details>", 1)
                shown += re.findall(r'<img[^>]*src="([^"]+)"', inner[1] if (closed and len(inner) > 1) else
                                    ("" if closed else block))
            first_view = None
            per_kind: dict[str, float] = defaultdict(float)
            statuses = defaultdict(int)
            for n, src in enumerate(imgs):
                if first_view is None and n == len(shown):
                    first_view = time.perf_counter() - w
                src = src.replace("&amp;", "&")
                t = time.perf_counter()
                resp = client.get(src)
                statuses[resp.status_code] += 1
                per_kind[re.search(r"plot/(\w+)\.png", src).group(1)] += time.perf_counter() - t
            total = time.perf_counter() - w
            first_view = total if first_view is None else first_view
            print(f"{label}: page {page_s:.2f} s + {len(imgs)} images {sum(per_kind.values()):.2f} s = "
                  f"{total:.2f} s (status {dict(statuses)})")
            print(f"   first view (page + the {len(shown)} images shown before any turn is opened): {first_view:.2f} s")
            print("   " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(per_kind.items())))


if __name__ == "__main__":
    main()
