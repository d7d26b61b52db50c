"""Per-turn implicit features read the character under each sample where it really is."""
import numpy as np
import pandas as pd

from gazepref.models.implicit_features import turn_features


def test_char_index_counted_from_a_paragraph_is_re_anchored_by_its_window():
    """Some IFLLM recordings count ``char_index`` from the rendered paragraph, not the response:
    the window (the text around the caret) puts the sample back where it was, so reading depth is
    that of the last paragraph, not of the first."""
    left = "Intro paragraph about sleep and memory. " * 5 + "The final paragraph names the character who lived."
    right = "Another answer entirely, about something else. " * 6
    at = left.index("character")
    rows = []
    for i in range(40):  # the sample sits on "character" in the last paragraph; the recorder counted 12
        rows.append({"t": 74.0 * i, "source": "gaze", "position": 0, "x": 50.0, "char_index": 12,
                     "window": left[at - 10:at + 10]})
    hits = pd.DataFrame(rows)
    lens = (len(left), len(right))
    raw = turn_features(hits, lens)
    fixed = turn_features(hits, lens, (left, right))
    assert raw["gaze_d_depth"] < 0.1  # read as the start of the answer
    assert np.isclose(fixed["gaze_d_depth"], at / len(left), atol=0.05)  # where the words really are
    assert fixed["gaze_d_share"] == raw["gaze_d_share"]  # dwell is not a matter of characters
