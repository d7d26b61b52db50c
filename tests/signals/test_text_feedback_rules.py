"""The lexical rules of the text-feedback classifier (no model): what chat_normalize rewrites and what it
leaves alone (code, other languages), and the cue features behind sarcasm, corrections of a named
fact, pasted errors and questions about a term; rules v3: emphasis, misspelt feedback words (with
the MiniLM vocabulary), acronyms of the previous query, and the chat cue families of the probe set."""
from __future__ import annotations

import pytest

from gazepref.signals.text_feedback_rules import (
    _vocabulary,
    chat_normalize,
    expand_acronyms,
    is_foreign,
    prose_text,
    rule_features,
    split_code,
)

_TRACE = (
    "Traceback (most recent call last):\n"
    '  File "app.py", line 3, in <module>\n'
    "    for u in users:\n"
    "NameError: name 'users' is not defined"
)


@pytest.mark.parametrize(
    "text, tidy",
    [
        # code is not chat: fenced blocks, inline spans, indented code lines, stack traces
        ("```\nfor u in items:\n    print(u)\n```", "```\nfor u in items:\n    print(u)\n```"),
        ("try `for u in xs` pls", "try `for u in xs` please"),
        ("doesnt work:\n    for u in range(n):\n        total += u",
         "doesn't work:\n    for u in range(n):\n        total += u"),
        (_TRACE, _TRACE),
        ("u r right\nfor u in xs:\n  print(u)", "you are right\nfor u in xs:\n  print(u)"),
        # other languages are not chat English ("im" is German, "dont" French, "q" Spanish chat)
        ("Was gibt es im Museum zu sehen?", "Was gibt es im Museum zu sehen?"),
        ("je ne sais pas ce dont tu parles", "je ne sais pas ce dont tu parles"),
        ("q es eso", "q es eso"),
        ("im Jahr 1990, danke", "im Jahr 1990, danke"),
        # ... while English chat still is
        ("im not sure what u mean", "i'm not sure what you mean"),
        ("dont get it, can u explain", "don't get it, can you explain"),
        # "ur" before a noun is "your", before a complement "you're"
        ("ur answer is wrong", "your answer is wrong"),
        ("ur code doesnt run", "your code doesn't run"),
        ("ur wording is confusing", "your wording is confusing"),
        ("ur wrong", "you're wrong"),
        ("ur the best", "you're the best"),
        ("ur missing a bracket", "you're missing a bracket"),
        # prose with a formula is still prose
        ("can u explain E = mc² simply", "can you explain E = mc² simply"),
    ],
)
def test_chat_normalize_rewrites_chat_only(text, tidy):
    assert chat_normalize(text) == tidy
    assert chat_normalize(tidy) == tidy  # reading twice changes nothing


@pytest.mark.parametrize(
    "text, foreign",
    [
        ("la respuesta no es correcta", True),
        ("c'est faux, la capitale est canberra", True),
        ("und wie lange hat das gedauert?", True),
        ("las vegas hotels", False),  # one word of another language is a name, not a language
        ("de niro best movies", False),
        ("what is the capital of australia", False),
        ("gracias", False),
        ("y is the sky blue", False),
    ],
)
def test_is_foreign(text, foreign):
    assert is_foreign(text) is foreign


def test_prose_text_leaves_out_code_and_traces():
    assert prose_text(_TRACE + "\nhow do i fix this") == "how do i fix this"
    assert prose_text("use `sorted(xs)` instead") == "use sorted(xs) instead"  # inline code stays a word


_DRACULA = ("Who wrote Dracula?", "Dracula was written by Mary Shelley in 1897.")
_WALL = ("When did the Berlin Wall fall?", "The Berlin Wall fell on 9 November 1991, after weeks of protests.")
_CANBERRA = ("What is the capital of Australia?", "The capital of Australia is Canberra, a planned city.")
_JS = ("how do i reverse a list in javascript", "Use the array's reverse() method; it reverses the array in place.")


@pytest.mark.parametrize(
    "context, next_query, cues",
    [
        # sarcasm: praise followed by a complaint or a fix is no praise
        (_DRACULA, "great job, it still doesn't work", {"cue_positive": 0, "cue_negative": 1}),
        (_DRACULA, "wow thanks, super useless", {"cue_positive": 0, "cue_negative": 1}),
        (_DRACULA, "oh perfect, mary shelley. it was bram stoker", {"cue_positive": 0, "cue_correction": 1}),
        (_DRACULA, "yeah great answer... not", {"cue_positive": 0, "cue_negative": 1}),
        (_DRACULA, "thanks, that helps", {"cue_positive": 1, "cue_negative": 0}),
        (_DRACULA, "non funziona", {"cue_negative": 1}),  # a few complaints of other languages
        # a correction of a named fact: the answer's value quoted, then the right one (a name or a
        # number; in lower case, a doubted quote or one after praise)
        (_DRACULA, "Mary Shelley? It was Bram Stoker.", {"cue_correction": 1}),
        (_DRACULA, "mary shelley?? it was bram stoker", {"cue_correction": 1}),
        (_WALL, "1991. it was 1989", {"cue_correction": 1}),
        (_CANBERRA, "la respuesta no es correcta, es sydney", {"cue_correction": 1, "foreign": 1}),
        # ... and what is none: a question, a keyword query, a description, a verdict, no name
        (_CANBERRA, "canberra. its population?", {"cue_correction": 0}),
        (_CANBERRA, "canberra its population", {"cue_correction": 0}),
        (_CANBERRA, "canberra. its population", {"cue_correction": 0}),
        (_CANBERRA, "canberra. its a nice city", {"cue_correction": 0}),
        (_CANBERRA, "Canberra. It's lovely.", {"cue_correction": 0}),
        (_CANBERRA, "canberra! it's my favourite", {"cue_correction": 0}),
        (_CANBERRA, "That's not what I asked, I wanted the largest city.", {"cue_correction": 0}),
        (_CANBERRA, "You didn't say why, that's vague.", {"cue_correction": 0, "cue_negative": 1}),
        # a pasted error reports a failure: a complaint, no fix, and its code lines are no cues
        (_JS, _TRACE, {"pasted_error": 1, "cue_negative": 1, "complaint_text": 0, "cue_correction": 0}),
        (_JS, "it says TypeError: x.reverse is not a function", {"pasted_error": 1}),
        (_JS, "what is a TypeError in javascript", {"pasted_error": 0, "cue_negative": 0}),
        # "what does X mean" asks about the answer only if the conversation said X
        (_JS, "what does NoSuchElementException mean in java", {"cue_clarify": 0}),
        (_JS, "what does in place mean", {"cue_clarify": 1}),
        (_JS, "what does that mean", {"cue_clarify": 1}),
        (_JS, "i don't know what a HashMap is", {"cue_clarify": 0}),
        (_JS, "i don't know what the array is", {"cue_clarify": 1}),
    ],
)
def test_cue_features(context, next_query, cues):
    f = rule_features(context[0], context[1], next_query)
    assert {k: f[k] for k in cues} == cues


_CALC = ("solve 3x + 2 = 11", "Subtract 2: 3x = 9, so x = 4.")


@pytest.mark.parametrize(
    "next_query, cues",
    [
        # a verdict next to a formula is chat, not code: the formula does not hide the verdict
        ("wrong, x = 3", {"cue_negative": 1}),
        ("incorrect: 9 / 3 = 3", {"cue_negative": 1}),
        ("great, x = 3 works", {"cue_positive": 1}),
        ("thx! x=3 worked", {"cue_positive": 1}),
    ],
)
def test_a_verdict_beside_a_formula_is_read(next_query, cues):
    f = rule_features(*_CALC, next_query)
    assert {k: f[k] for k in cues} == cues


def test_a_line_of_code_alone_is_still_code():
    assert split_code("total = u + 1") == [("total = u + 1", True)]
    assert chat_normalize("total = u + 1") == "total = u + 1"


# A pattern that backtracks over a long message runs for minutes to hours; a linear one reads these
# inputs in ~0.1-3 s alone and up to ~6 s on a loaded 2-core machine. 30 s tells the two apart
# without failing on load.
LIMIT_S = 30


def _in_time(seconds: int, fn, *args):
    """``fn(*args)``, or TimeoutError once it has run ``seconds`` (SIGALRM: a regex that backtracks
    for hours is stopped too)."""
    import signal

    def stop(*_):
        raise TimeoutError(f"{fn.__name__} ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(
    "text",
    [
        "f(" + "a" * 50_000,  # a long line that opens a call and never closes it
        "its b" + "-" * 50_000 + " c d e f g",  # a stated value followed by a long run of dashes
        "good " * 40_000,  # many praise words, no closing "not"
        "=" * 50_000 + "\nthe output of my script",  # a message that opens with a long banner
    ],
    ids=["open-call", "dashes", "praise", "banner"],
)
def test_long_pasted_text_is_read_in_linear_time(text):
    """The rules run per message over large logs: no pattern may backtrack over a long message
    (each of these took from several seconds to hours)."""
    f = _in_time(LIMIT_S, rule_features, *_JS, text)
    assert f["cue_negative"] == 0


# --- rules v3: how chat users really type (see benchmarks/data/feedback_probe.jsonl) -------------


@pytest.mark.parametrize(
    "text, tidy",
    [
        # letters typed again for emphasis: a run of three cut to one, or to two for a doubled word
        ("thaaanks sooo much", "thanks so much"),
        ("nooooo", "no"),
        ("gooood job", "good job"),
        ("tooo long", "too long"),
        # ... not in names, numerals and sounds
        ("WWIII", "WWIII"),
        ("www.example.com", "www.example.com"),
        ("aaa batteries", "aaa batteries"),
        # emoji of disapproval and approval as words
        ("okay 🙄", "okay eye roll"),
        ("🔥🔥", "thumbs up"),
        ("🤦🏽‍♀️", "facepalm"),
        # "yr" after a word that asks for a year
        ("what yr was it built", "what year was it built"),
        ("yr answer", "yr answer"),
    ],
)
def test_chat_normalize_reads_emphasis_and_emoji(text, tidy):
    assert chat_normalize(text) == tidy


@pytest.mark.skipif(not _vocabulary(), reason="typo correction needs the MiniLM vocabulary")
@pytest.mark.parametrize(
    "text, tidy",
    [
        ("thats not rihgt", "that's not right"),
        ("thnak you", "thank you"),
        ("ur answer is incorect", "your answer is incorrect"),
        # real words one letter from a feedback word stay
        ("i think so", "i think so"),
        ("ur wording is odd", "your wording is odd"),
        ("write it down", "write it down"),
    ],
)
def test_chat_normalize_mends_misspelt_feedback_words(text, tidy):
    assert chat_normalize(text) == tidy


@pytest.mark.parametrize(
    "prev_query, text, expanded",
    [
        ("How high does the International Space Station orbit?", "how high is the iss",
         "how high is the International Space Station"),
        ("When did World War II end?", "when did ww2 end", "when did World War II end"),
        ("When did World War II end?", "when did wwii end", "when did World War II end"),
        ("When did World War II end?", "when did ww1 end", "when did ww1 end"),  # another war
        ("Who leads the United States?", "and the US senate?", "and the United States senate?"),
        ("Who leads the United States?", "tell us more", "tell us more"),  # the pronoun
        ("what is a good laptop", "gl", "gl"),
    ],
)
def test_expand_acronyms_of_the_previous_query(prev_query, text, expanded):
    assert expand_acronyms(prev_query, text) == expanded


@pytest.mark.parametrize("text, foreign", [("is la la land a musical", False), ("no es correcto, es ottawa", True)])
def test_a_word_said_twice_is_one_word_of_evidence(text, foreign):
    assert is_foreign(text) is foreign


_MOON = ("How far is the Moon?", "The Moon is 384,400 km from Earth on average and 363,300 km at its closest (perigee).")
_SORT = ("how do i sort a list in python", "Call `xs.sort()` to sort in place, or `sorted(xs)` for a new list.")


@pytest.mark.parametrize(
    "context, next_query, cues",
    [
        # complaints about what the assistant did, doubt, failure reports
        (_MOON, "you just made that number up", {"cue_negative": 1}),
        (_MOON, "are you sure about that?", {"cue_negative": 1}),
        (_MOON, "i doubt that's correct", {"cue_negative": 1}),
        (_MOON, "nope, not it", {"cue_negative": 1}),
        (_SORT, "nothing happens when i run it", {"cue_negative": 1}),
        (_SORT, "what happens if the list is empty?", {"cue_negative": 0}),
        (_SORT, "what if nothing happens?", {"cue_negative": 0}),
        # sarcasm: praise to a mock "genius", an eye roll
        (_MOON, "great work sherlock", {"cue_negative": 1, "cue_positive": 0}),
        (_MOON, "so helpful 🙄", {"cue_negative": 1, "cue_positive": 0}),
        (_MOON, "you're a genius, thanks", {"cue_negative": 0, "cue_positive": 1}),
        # thanks taken back by "but"; thanks before a new question stays praise
        (_MOON, "thanks, but i wanted it in miles", {"cue_positive": 0, "cue_correction": 1}),
        (_MOON, "thanks! but what about mars?", {"cue_positive": 1, "cue_negative": 0}),
        # terse instructions: units, "without X", "summarize", after politeness
        (_MOON, "in miles", {"cue_correction": 1}),
        (_SORT, "without using sort", {"cue_correction": 1}),
        (_SORT, "ok thanks, now summarize it in one line", {"cue_correction": 1}),
        (_SORT, "how many days do i need in rome?", {"cue_correction": 0}),
        # clarification: "explain X again", non-understanding without "i", a filler before "what"
        (_SORT, "explain the key part again", {"cue_clarify": 1, "cue_repeat": 0}),
        (_SORT, "dont get it", {"cue_clarify": 1}),
        (_SORT, "haha what?", {"cue_clarify": 1}),
        # which of the answer's own values holds
        (_MOON, "wait so is it 384,400 or 363,300?", {"cue_clarify": 1}),
        (_MOON, "is it closer in winter or summer?", {"cue_clarify": 0}),
        # corrections of a value: bare after a denial, "X not Y", offered as a question, restated
        (_MOON, "NO. 405,500 km", {"cue_correction": 1}),
        (_MOON, "it's 405,500 km not 384,400", {"cue_correction": 1}),
        (_MOON, "isn't it 405,500 km at apogee?", {"cue_correction": 1}),
        (_MOON, "🤦 it's 405,500", {"cue_correction": 1}),
        (_MOON, "the moon is 390,000 km from earth", {"cue_correction": 1}),
        (_MOON, "the moon is 363,300 km away at perigee", {"cue_correction": 0}),  # the answer's own value
        (_MOON, "isn't it beautiful tonight?", {"cue_correction": 0}),
        (_MOON, "No, that's not it", {"cue_correction": 0, "cue_negative": 1}),  # a verdict, no fix
    ],
)
def test_cue_features_of_chat_feedback(context, next_query, cues):
    f = rule_features(context[0], context[1], next_query)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "text",
    [
        "really" + "?" * 50_000 + "a",  # a doubt followed by a long run of question marks
        "x not " * 10_000,  # many "X not Y"
        "wait so is it 1 or " * 2_500,  # many either-or questions
        "no. " * 10_000,  # many denials
        "🤦" * 10_000,  # many emoji read as words
    ],
    ids=["question-marks", "not", "either-or", "denials", "emoji"],
)
def test_v3_patterns_read_long_text_in_linear_time(text):
    _in_time(LIMIT_S, rule_features, *_MOON, text)


# --- after the blind probe set (benchmarks/data/feedback_probe_blind.jsonl): general cue families ----


_RICE = ("how much water for 1 cup of rice", "Use 4 cups of water for 1 cup of white rice and simmer for 15 minutes.")
_BERLIN = ("What are the must-sees in Berlin?", "The Brandenburg Gate, the Reichstag dome, Museum Island and the East Side Gallery.")
_SPEECH = ("write a toast for my sister's wedding", "Ladies and gentlemen, esteemed guests, it is my great honour to stand before you today ...")
_GRID = ("how do i make a 3 column layout in css", "Use grid on the container: `display: grid; grid-template-columns: repeat(3, 1fr);`")
_CUPS = ("convert 2 cups to ml", "2 cups is about 473 ml.")
_WIFI = ("how do i fix slow wifi", "Wi-Fi uses radio waves in the 2.4 GHz and 5 GHz bands. Signals weaken with distance and walls.")


@pytest.mark.parametrize(
    "context, next_query, cues",
    [
        # doubt as an impression, a failure to answer with an adverb, generic answers, partial success
        (_RICE, "that seems like way too much", {"cue_negative": 0}),  # ("too much" is no value: left to the head)
        (_RICE, "that seems high", {"cue_negative": 1}),
        (_RICE, "hmm that doesnt seem right", {"cue_negative": 1}),
        (_RICE, "does that seem high for brown rice?", {"cue_negative": 0}),  # a question
        (_WIFI, "you didnt even answer the question", {"cue_negative": 1}),
        (_WIFI, "you didn't really answer my question", {"cue_negative": 1, "cue_repeat": 0}),
        (_WIFI, "you sure about that", {"cue_negative": 1}),
        (_WIFI, "tried all of it and none of this helped me", {"cue_negative": 1, "cue_positive": 0}),
        (_RICE, "that seems short for brown rice", {"cue_negative": 1}),
        (_WIFI, "this is generic info, i could have googled it myself", {"cue_negative": 1}),
        (_GRID, "the columns are still stuck on top of each other", {"cue_negative": 1}),
        (_GRID, "it mostly works but the gap is missing", {"cue_negative": 1}),
        # a complaint after praise: "one thing though", "only thing is"; an announced correction
        (_BERLIN, "Love it, thanks! One thing though, the Reichstag dome needs a booking weeks ahead.", {"cue_positive": 0, "cue_negative": 1}),
        (_RICE, "thanks, quick correction: it's 2 cups of water, not 4", {"cue_positive": 0, "cue_correction": 1}),
        # a complaint with a request to change the answer gives the fix; the request alone is none
        (_BERLIN, "Nice list! Only thing is the gallery is far out, so move it to the end.", {"cue_correction": 1}),
        (_BERLIN, "could you change the order so the museums come first?", {"cue_correction": 0}),
        # sarcastic praise closing a loss
        (_GRID, "copied it and it broke my whole page. perfect.", {"cue_positive": 0, "cue_negative": 1}),
        # the fix as a counter-value or as what the answer needs
        (_RICE, "4 cups turns it to mush, it's more like 2", {"cue_correction": 1}),
        (_RICE, "i'd say 1.5 cups at most", {"cue_correction": 1}),
        (_GRID, "that breaks on mobile, you need a media query too", {"cue_correction": 1}),
        (_WIFI, "do you need a new router for wifi 6?", {"cue_correction": 0}),
        (_BERLIN, "no, museum island is closed on mondays", {"cue_correction": 1}),
        (_BERLIN, "no worries, what about food?", {"cue_correction": 0}),
        # terse instructions with a short reason, tone words, "make this"
        (_CUPS, "in grams pls, it's flour", {"cue_correction": 1}),
        (_SPEECH, "way less formal please, it's a backyard party", {"cue_correction": 1}),
        (_SPEECH, "could you make this shorter, 1 minute max", {"cue_correction": 1}),
        (_GRID, "without grid, i need flexbox for old browsers", {"cue_correction": 1}),
        (_GRID, "as a one-liner pls", {"cue_correction": 1}),
        (_GRID, "how do i center text with a function in js?", {"cue_correction": 0}),
        (_SPEECH, "this is the second time i'm asking her to speak", {"cue_repeat": 0}),
        # a question asked again after an insistence marker; a new question after one is no repeat
        (_WIFI, "ok but how do i fix it", {"cue_repeat": 1}),
        (_WIFI, "so how do i actually fix slow wifi", {"cue_repeat": 1}),
        (_WIFI, "ok but what about mesh routers?", {"cue_repeat": 0}),
        (_RICE, "so how long does it keep in the fridge?", {"cue_repeat": 0}),
        (("Can you see the Great Wall from space?", "No, it is too narrow to see with the naked eye."),
         "what can you actually see from space?", {"cue_repeat": 0}),  # another kind of question
        # praise without a praise word; "huh?" before a question
        (_BERLIN, "these all sound great, we'll do the gallery first", {"cue_positive": 1}),
        (_BERLIN, "do these sound good for a rainy day?", {"cue_positive": 0}),
        (_RICE, "oh didnt know that, ty", {"cue_positive": 1}),
        (_WIFI, "huh? what does distance have to do with it", {"cue_clarify": 1}),
        # hard negatives: a question about a verdict, "thank you" as a phrase asked about
        (_BERLIN, "is it wrong to skip the museums?", {"cue_negative": 0}),
        (_BERLIN, "how do you say thank you in german", {"cue_positive": 0}),
        (_BERLIN, "can you help me write a thank you note to our host", {"cue_positive": 0}),
    ],
)
def test_cue_families_after_the_blind_probe(context, next_query, cues):
    f = rule_features(context[0], context[1], next_query)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "prev_query, next_query, swapped",
    [
        ("convert 2 cups to ml", "convert 2 ml to cups", 1),
        ("flights from paris to rome", "and rome to paris?", 1),
        ("translate good morning to spanish", "translate good morning to french", 0),
        ("convert 2 cups to ml", "convert 3 cups to ml", 0),
    ],
)
def test_the_same_words_the_other_way_round(prev_query, next_query, swapped):
    assert rule_features(prev_query, "An answer.", next_query)["swapped_direction"] == swapped


@pytest.mark.parametrize(
    "text",
    [
        "more like 1 " * 10_000 + "?",  # many counter-values, a question at the end
        "so you need x, " * 8_000 + "?",  # many "you need"
        "still stuck " * 10_000 + "?",
        "lost " * 10_000 + ". great" + "!" * 10_000,  # many losses before a sarcastic close
        "ok but how " + "a " * 50_000,  # a long insistent question
        "x to y " * 10_000,  # many directions
    ],
    ids=["more-like", "you-need", "still", "loss", "reask", "direction"],
)
def test_blind_round_patterns_read_long_text_in_linear_time(text):
    _in_time(LIMIT_S, rule_features, *_WIFI, text)


# --- after the log-style probe set (benchmarks/data/feedback_probe_logs.jsonl): general cue families ---


_POEM = ("write a poem about the sea", "The sea is wide, the sea is deep,\nIt sings the sailors off to sleep.")
_QUERY = ("count orders per day in postgres", "```sql\nSELECT order_date, COUNT(*) FROM orders GROUP BY order_date;\n```")
_MARS = ("how far is mars from the sun", "Mars is on average about 228 million km from the Sun.")
_LOOP = ("how do i loop over a dict in python", "```python\nfor key, value in d.items():\n    print(key, value)\n```")
_FR = ("translate 'see you tomorrow' to french", "\"À demain.\"")


@pytest.mark.parametrize(
    "context, next_query, cues",
    [
        # steering a written answer: "make it X-er", "rewrite it with/in ...", a role-play aside
        (_POEM, "make it sadder", {"cue_correction": 1}),
        (_POEM, "could you make the poem a lot more hopeful", {"cue_correction": 1}),
        (_POEM, "pls rewrite it from the point of view of a fish", {"cue_correction": 1}),
        (_POEM, "(ooc: keep your replies shorter and stay in character)", {"cue_correction": 1}),
        (_POEM, "write one about the mountains", {"cue_correction": 0}),  # a new poem
        (_POEM, "can you make a song out of the same idea?", {"cue_correction": 0}),
        # what to leave out; a part of the answer judged "too X", with what the user wants
        (_POEM, "don't use the word sleep, say dream", {"cue_correction": 1}),
        (_POEM, "the last line is way too cheesy, i'd like it to end on the storm", {"cue_negative": 1, "cue_correction": 1}),
        (_POEM, "the rhythm is too slow?", {"cue_negative": 0}),  # a question
        # a complaint, then an instruction opening the next sentence
        (_MARS, "too vague. give me the closest and farthest distances", {"cue_correction": 1}),
        # a value the answer got wrong: "is actually", "instead of", "you used X, ... use Y", "the X one"
        (_MARS, "sorry, I think the distance is actually 228 million km on average and 206 at closest", {"cue_correction": 1}),
        (_LOOP, "you called keys() instead of items()", {"cue_correction": 1}),
        (_MARS, "you used the mean distance, but the book says to use the closest one", {"cue_correction": 1}),
        (_FR, "i wanted the polite version", {"cue_correction": 1}),
        (_FR, "do i need the formal version for my teacher?", {"cue_correction": 0}),
        # complaints: a one-word verdict, a list judged, "sounds like a bot", "your X is not correct", a failure report
        (_POEM, "so lame", {"cue_negative": 1}),
        (_POEM, "these lines are all cringe honestly", {"cue_negative": 1}),
        (_POEM, "reads like a bot wrote it", {"cue_negative": 1}),
        (_FR, "your spelling is wrong", {"cue_negative": 1}),
        (_FR, "you're always repeating yourself", {"cue_negative": 1}),
        (_QUERY, "still segfaulting", {"cue_negative": 1}),
        (_QUERY, "it's still not running", {"cue_negative": 1}),
        (_QUERY, "it returns null for every day", {"cue_negative": 1}),
        (_QUERY, "what if it returns null?", {"cue_negative": 0}),
        (_QUERY, "how do i log the query when it fails", {"cue_negative": 0}),  # a clause that asks
        (_MARS, "that's terrible news for the rover, how long will it last?", {"cue_negative": 0}),
        (_MARS, "I don't think that figure is entirely accurate", {"cue_negative": 1, "cue_correction": 0}),
        # clarification: what a piece of the answer does, non-native "what is mean", "like i'm 12"
        (_QUERY, "what does the COUNT(*) do in this query", {"cue_clarify": 1}),
        (_LOOP, "what does the items part do", {"cue_clarify": 1}),
        (_POEM, "what mean sailors", {"cue_clarify": 1}),
        (_MARS, "explain it like i'm 12", {"cue_clarify": 1}),
        (_LOOP, "what does enumerate do", {"cue_clarify": 0}),  # a term the conversation did not use
        (_FR, "how do you say it in italian", {"cue_clarify": 0}),  # a new translation
        # praise: the code ran, "beautiful"
        (_LOOP, "works perfectly now, can it sort by value too?", {"cue_positive": 1}),
        (_LOOP, "does it work on the first try in python 2?", {"cue_positive": 0}),
        (_POEM, "lovely! can you do one about rivers", {"cue_positive": 1}),
        # Russian and Chinese cues; a pasted error gives no value to correct
        (_POEM, "Спасибо большое", {"cue_positive": 1, "foreign": 1}),
        (_POEM, "谢谢你", {"cue_positive": 1, "foreign": 1}),
        (_POEM, "Неправильно", {"cue_negative": 1, "foreign": 1}),
        (_POEM, "错了", {"cue_negative": 1, "foreign": 1}),
        (_POEM, "Не понимаю последнюю строчку", {"cue_clarify": 1, "foreign": 1}),
        (_POEM, "Перепиши покороче", {"cue_correction": 1, "foreign": 1}),
        (_POEM, "写短一点", {"cue_correction": 1, "foreign": 1}),
        (_QUERY, 'psql says ERROR: syntax error at or near "SELCT"', {"cue_negative": 1, "cue_correction": 0}),
        # hard negatives: a choice among the answer's options, what the answer suggested, new requests
        (_QUERY, "i need the second one for my report", {"cue_correction": 0}),
        (_LOOP, "you mentioned items() instead of keys(), why is that better", {"cue_correction": 0}),
        (_POEM, "make it together with my sister's name", {"cue_correction": 0}),
        (_LOOP, "explain how it works now that dicts keep order", {"cue_positive": 0}),
        (_LOOP, "beautiful soup or scrapy for scraping", {"cue_positive": 0}),
        (_POEM, "Объясни квантовую механику", {"cue_clarify": 0}),
        (_POEM, "解释一下量子力学", {"cue_clarify": 0}),
    ],
)
def test_cue_families_after_the_log_style_probe(context, next_query, cues):
    f = rule_features(context[0], context[1], next_query)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "text, foreign",
    [("Перепиши покороче", True), ("谢谢你", True), ("thanks, Москва is right", False), ("ok 👍", False)],
)
def test_a_message_in_another_script_is_foreign(text, foreign):
    assert is_foreign(text) is foreign


@pytest.mark.parametrize(
    "text",
    [
        "what mean x" + " " * 50_000 + "y",  # a long run of spaces after a non-native "what mean"
        "you added 1 " * 5_000,  # many "you ...ed" with no "instead of"
        "you used x, " * 5_000 + "?",  # many values used, a question at the end
        "i need the a one " * 3_000 + "?",  # many versions asked for, a question at the end
        ". just " * 10_000,  # many instructions opening a sentence
        "the ending is too " * 5_000 + "?",
        "it returns " * 10_000 + "?",
        "what does the " + "x " * 25_000 + "do",
    ],
    ids=["what-mean", "instead", "used", "version", "imperative", "too", "returns", "what-does"],
)
def test_log_round_patterns_read_long_text_in_linear_time(text):
    _in_time(LIMIT_S, rule_features, *_POEM, text)


# crowdworker-style round (benchmarks/data/feedback_probe_crowd.jsonl); fresh wording, new contexts
_EVEREST = ("how tall is mount everest", "Mount Everest is 8,611 m tall, the highest mountain on Earth.")
_PHONE = ("who invented the telephone", "The telephone was invented by Thomas Edison in 1876.")
_TILES = ("a box holds 12 tiles. how many boxes for 150 tiles?", "150 / 12 = 12.5, so you need 12 boxes.")
_PICNIC = ("what should i bring to a picnic", "1. Sandwiches\n2. Fruit salad\n3. A blanket\n4. Lemonade\n5. A frisbee")
_ESSAY = ("explain photosynthesis", "Photosynthesis is the process by which plants turn light, water and carbon dioxide into glucose and oxygen.")
_VISA = ("do i need a visa for brazil as a german", "Visa rules differ by country; check with the embassy of the country you plan to visit.")


@pytest.mark.parametrize(
    "context, next_query, cues",
    [
        # a denial, then a statement with a number the answer did not give; "X not Y" with numbers
        (_EVEREST, "nope it is 8849 m", {"cue_correction": 1}),
        (_TILES, "no, 150/12 rounds up to 13", {"cue_correction": 1}),
        (_TILES, "you need 13 boxes not 12", {"cue_correction": 1}),
        (_EVEREST, "no thanks, 2 facts are enough", {"cue_correction": 0}),
        (_EVEREST, "no, how tall is k2?", {"cue_correction": 0}),  # a new question
        # a value stated with "actually"; the answer's value put in another role beside a new one
        (_EVEREST, "it's 8849 actually", {"cue_correction": 1}),
        (_PHONE, "it was alexander graham bell, edison was the light bulb guy", {"cue_correction": 1}),
        (_ESSAY, "its pretty clear actually", {"cue_correction": 0}),  # no value: a verdict
        # a fix marked with an asterisk; a doubt followed by what the user knows
        (_PHONE, "graham bell*", {"cue_correction": 1}),
        (_PHONE, "*sigh*", {"cue_correction": 0}),
        (_PHONE, "are you sure? my teacher said it was bell", {"cue_correction": 1}),
        (_PHONE, "are you sure? i thought so too, but why?", {"cue_correction": 0}),
        # layouts and length limits named alone; what to leave out; redoing a part of the answer
        (_ESSAY, "numbered list pls", {"cue_correction": 1}),
        (_PICNIC, "cool list, thx", {"cue_correction": 0, "cue_positive": 1}),  # praise of the list
        (_ESSAY, "as a table please", {"cue_correction": 1}),
        (_ESSAY, "keep it under 50 words", {"cue_correction": 1}),
        (_ESSAY, "just the definition - no examples", {"cue_correction": 1}),
        (_PICNIC, "my son is allergic to citrus so redo the drinks with something else", {"cue_correction": 1}),
        (_PICNIC, "only a few of us, what else should we bring?", {"cue_correction": 0}),
        (_PICNIC, "can you list 5 more?", {"cue_correction": 0}),
        # insisting on the request and saying how to change the answer: a complaint, not a repeat
        (_PICNIC, "i asked for a rainy day picnic. replace the frisbee with a board game", {"cue_correction": 1, "cue_repeat": 0}),
        (_VISA, "that is about visas in general, i asked about brazil", {"cue_negative": 1, "cue_repeat": 0}),
        # complaints: a part judged wrong, the items failing the request, the same answer again
        (_TILES, "the rounding is wrong", {"cue_negative": 1}),
        (_TILES, "is the rounding wrong here?", {"cue_negative": 0}),
        (_PICNIC, "none of these are vegan", {"cue_negative": 1}),
        (_PICNIC, "you sent me the same things as before", {"cue_negative": 1}),
        (_PICNIC, "give me the same list again but for a beach", {"cue_repeat": 0}),
        (_ESSAY, "way too formal for a 9 year old", {"cue_negative": 1}),
        # clarification: how the answer got its result, simpler words
        (_TILES, "how did you come up with 12.5?", {"cue_clarify": 1}),
        (_ESSAY, "can you put it in easier words please", {"cue_clarify": 1}),
        (_ESSAY, "explain the last part step by step", {"cue_clarify": 1}),
        # praise of the suggestions; "they are good for ..." asked is no praise
        (_PICNIC, "these are all great, we will take the blanket", {"cue_positive": 1}),
        (_PICNIC, "are these good for kids?", {"cue_positive": 0}),
    ],
)
def test_cue_families_after_the_crowd_probe(context, next_query, cues):
    f = rule_features(context[0], context[1], next_query)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "text",
    [
        "no it is " + "1 " * 20_000 + "?",  # a denial, many numbers, a question at the end
        "is that true? i read " + "x " * 20_000 + "?",
        "redo the " * 10_000 + "?",
        "the x is " * 10_000 + "?",
        "none of these are " + " " * 50_000 + "?",
        "this is about " + "x " * 20_000 + ", i asked",
        "a" * 50_000 + "*",
        "make it " + "1 " * 20_000,
    ],
    ids=["denial-numbers", "doubt-then-fact", "redo", "part-wrong", "none-of", "off-scope", "asterisk", "limit"],
)
def test_crowd_round_patterns_read_long_text_in_linear_time(text):
    _in_time(LIMIT_S, rule_features, *_PICNIC, text)


# mixed-style round (benchmarks/data/feedback_probe_mixed.jsonl): corrections that state the right
# value with no complaint word, written fresh (not the probe's messages)
_EVEREST = ("how tall is mount everest", "Mount Everest is 8,488 metres tall, the highest mountain above sea level.")
_ODYSSEY = ("who wrote the odyssey", "The Odyssey was written by Virgil around the 8th century BC.")
_COOKIES = ("what temperature do i bake cookies at", "Bake the cookies at 350°C for 10 to 12 minutes.")
_CANADA = ("What is the capital of Canada?", "The capital of Canada is Toronto, its largest city.")
_REDIS = ("what port does redis use", "Redis listens on port 8080 by default.")
_PANCAKES = ("give me a pancake recipe", "Mix 200 g flour, 2 eggs, 300 ml milk and a pinch of salt. Fry each pancake for 2 minutes a side.")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # a hedge, then the right value: "I believe", "pretty sure", "i think ... no?"
        (_EVEREST, "i believe it's 8,849", {"cue_correction": 1}),
        (_EVEREST, "pretty sure everest is 8849 m", {"cue_correction": 1}),
        (_EVEREST, "i think it's about 29,000 feet no?", {"cue_correction": 1}),
        (_REDIS, "hmm im fairly sure its 6379", {"cue_correction": 1}),
        # the asked-about slot stated with a new value, or a quantity in the question's words
        (_CANADA, "the capital city is Ottawa", {"cue_correction": 1}),
        (_REDIS, "redis is 6379, 8080 is usually http", {"cue_correction": 1}),
        (_EVEREST, "8849 metres tall", {"cue_correction": 1}),
        # ... not a statement about something else, a description, a question, a new number of another thing
        (_CANADA, "The capital is beautiful in winter", {"cue_correction": 0}),
        (_CANADA, "the weather is nice there in June", {"cue_correction": 0}),
        (_REDIS, "the config file is redis.conf", {"cue_correction": 0}),
        (_REDIS, "3 replicas in my cluster", {"cue_correction": 0}),
        (_EVEREST, "is k2 taller?", {"cue_correction": 0}),
        (_EVEREST, "how long does it take to climb it", {"cue_correction": 0}),
        # a number with a unit or a word of the conversation; a number of something else is no fix
        (_PANCAKES, "i believe it's 3 minutes a side", {"cue_correction": 1}),
        (_PANCAKES, "I'm pretty sure it's 4 people eating", {"cue_correction": 0}),
        (_PANCAKES, "its 4 of us", {"cue_correction": 0}),
        # "you mean X" offering the value is a correction, not a request to explain; "do you mean X?" asks
        (_CANADA, "I think you meant Ottawa.", {"cue_correction": 1, "cue_clarify": 0}),
        (_COOKIES, "you meant 350°F i guess", {"cue_correction": 1, "cue_clarify": 0}),
        (_COOKIES, "do you mean 350°F?", {"cue_correction": 0, "cue_clarify": 1}),
        (_CANADA, "what do you mean by largest city", {"cue_correction": 0, "cue_clarify": 1}),
        # a temperature's unit put right; "X, not Y" with a pronoun for X; non-native "is not Y, is X"
        (_COOKIES, "350 °F, not °C", {"cue_correction": 1}),
        (_ODYSSEY, "Homer wrote it, not Virgil", {"cue_correction": 1}),
        (_ODYSSEY, "no, it is not virgil, is homer", {"cue_correction": 1}),
        (_ODYSSEY, "did virgil write anything else?", {"cue_correction": 0}),
        # complaints without a complaint word; non-understanding with an adverb
        (_CANADA, "you mixed up the two cities", {"cue_negative": 1}),
        (_CANADA, "kinda basic tbh", {"cue_negative": 1}),
        (_CANADA, "i really dont understand", {"cue_clarify": 1}),
    ],
)
def test_cue_families_after_the_mixed_probe(context, next_query, cues):
    f = rule_features(context[0], context[1], next_query)
    assert {k: f[k] for k in cues} == cues


_STARRY = ("who painted the starry night", "The Starry Night was painted by Claude Monet in 1889.")
_EGGS = ("what can i use instead of eggs in a cake",
         "Eggs bind the batter and help it rise. Hens lay about 300 eggs a year, and eggs keep for weeks in the fridge.")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # with a similarity of meaning: a lowercase name after a "who" question, a value close to the answer's
        (_STARRY, "umm that was vincent van gogh", {"cue_correction": 1}),
        (_STARRY, "that was quick", {"cue_correction": 0}),
        (("what language do they speak in brazil", "The official language of Brazil is Spanish."), "isn't it portuguese?", {"cue_correction": 1}),
        (("what language do they speak in brazil", "The official language of Brazil is Spanish."), "isn't it hard to learn?", {"cue_correction": 0}),
        # an insistent re-ask in other words; a follow-up on what the answer said is not one
        (_EGGS, "ok but what can i swap eggs for in a cake", {"cue_repeat": 1}),
        (_EGGS, "so how long do eggs keep in the fridge", {"cue_repeat": 0}),
        (_EGGS, "but what about muffins?", {"cue_repeat": 0}),
    ],
)
def test_mixed_probe_cues_with_a_similarity(context, next_query, cues):
    from gazepref.signals.text_feedback import _similar

    f = rule_features(context[0], context[1], next_query, similar=_similar)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "text",
    [
        "you mean " + "a " * 20_000,
        "is not x" + " " * 50_000 + "y",
        "i think " + "x is " * 10_000 + "1 no?",
        "°F" + " " * 50_000 + "not °C",
        "1 " * 25_000,
        "the capital is " + "Ottawa " * 10_000,
    ],
    ids=["you-mean", "not-but", "hedge-tag", "unit", "quantity", "slot"],
)
def test_mixed_round_patterns_read_long_text_in_linear_time(text):
    _in_time(LIMIT_S, rule_features, *_CANADA, text)


# round 6 (benchmarks/data/feedback_probe_r6.jsonl): corrections that restate a value with no cue word,
# reworded repeats with no cue word; written fresh (not the probe's messages)
_EIFFEL = ("when was the eiffel tower finished", "The Eiffel Tower was finished in 1899 for the World's Fair.")
_PENICILLIN = ("who discovered penicillin", "Penicillin was discovered by Louis Pasteur in 1928.")
_NINE_SEVEN = ("9*7", "9 × 7 = 56.")
_CUP_ML = ("how many ml in a cup", "A cup is about 150 ml.")
_TEETH = ("how many teeth does an adult have", "An adult has 30 teeth, including the wisdom teeth.")
_LAST_ITEM = ("python: last element of a list", "Use my_list[1] to get the last item.")
_READLINES = ("python: read all lines of a file", "lines = f.readline()")
_LIST_LEN = ("python length of a list", "Use x.size() to get the number of items.")
_TITANIC = ("when did the titanic sink", "The Titanic sank in April 1915 on its maiden voyage.")
_REVERSE = ("python function to reverse a string", "```python\ndef rev(s):\n    return s[::-1]\n```")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # "should be X" is a statement (an auxiliary with no subject), not a question
        (_EIFFEL, "should be 1889, 1899 was a different fair", {"cue_correction": 1}),
        (_EIFFEL, "should i go up at night?", {"cue_correction": 0}),
        # a bare value closed by "actually"; the user's own facts with "actually" are none
        (_PENICILLIN, "Alexander Fleming actually", {"cue_correction": 1}),
        (_PENICILLIN, "we're reading about Pasteur actually", {"cue_correction": 0}),
        # the question's frame restated with a number the answer did not give
        (_NINE_SEVEN, "9*7 is 63", {"cue_correction": 1}),
        (_NINE_SEVEN, "9x7=63 lol", {"cue_correction": 1}),
        (_CUP_ML, "1 cup is 240 ml", {"cue_correction": 1}),
        (_NINE_SEVEN, "I got 63 though", {"cue_correction": 0}),
        (_NINE_SEVEN, "so 9*8 is how much", {"cue_correction": 0}),
        (_NINE_SEVEN, "now do 9*8", {"cue_correction": 0}),
        # a bare number of the kind the answer gave; not as a question, not after an answer that asked
        (_TEETH, "32", {"cue_correction": 1}),
        (_TEETH, "and 12?", {"cue_correction": 0}),
        (("how many teeth does an adult have", "Do you mean with or without wisdom teeth?"), "32", {"cue_correction": 0}),
        # code written again with a small change, or stated as what it should be
        (_LAST_ITEM, "my_list[-1] for the last one", {"cue_correction": 1}),
        (_READLINES, "f.readlines() with an s", {"cue_correction": 1}),
        (_LIST_LEN, "that should be len(x), lists have no size()", {"cue_correction": 1}),
        (_READLINES, "what does f.readline() return?", {"cue_correction": 0}),
        # the answer's parts swapped, or something left out
        (_CUP_ML, "you swapped the two numbers", {"cue_correction": 1}),
        (_READLINES, "you're missing the s at the end", {"cue_correction": 1}),
        (_READLINES, "you're missing the point", {"cue_correction": 0}),
        # the value offered back with "you mean" (no "do") is a correction, not a question about the answer
        (_TITANIC, "you mean 1912?", {"cue_correction": 1, "cue_clarify": 0}),
        (_TITANIC, "1912 you mean, 1915 is wrong", {"cue_correction": 1, "cue_clarify": 0}),
        (_TITANIC, "do you mean 1912?", {"cue_correction": 0, "cue_clarify": 1}),
        # a tone named bare; a language named alone after an answer with code in another one
        (_EIFFEL, "make it casual, it's for a friend", {"cue_correction": 1}),
        (_EIFFEL, "make it to the top by 5?", {"cue_correction": 0}),
        (_REVERSE, "rust", {"cue_correction": 1}),
        (("what is rust", "Rust is a systems programming language."), "rust", {"cue_correction": 0}),
        # "i wanted the X Y way"; a denial run into a statement with a verb of its own
        (_LIST_LEN, "I wanted the python 3 way, not a method", {"cue_correction": 1}),
        (("what does a honeybee make", "A honeybee makes silk and wax."), "no it produces honey and wax", {"cue_correction": 1}),
        (("what does a honeybee make", "A honeybee makes silk and wax."), "no it works now", {"cue_correction": 0}),
        # insisting on what was asked, set against what the answer did: a correction, not a repeat
        (("trains from rome to naples", "Buses leave Rome for Naples every hour."), "I asked about trains, not buses",
         {"cue_correction": 1, "cue_repeat": 0}),
    ],
)
def test_cue_families_after_round_6(context, next_query, cues):
    f = rule_features(context[0], context[1], next_query)
    assert {k: f[k] for k in cues} == cues


_SOLAR = ("which planet is the furthest from the sun", "Uranus is the furthest planet from the Sun.")
_CHINA = ("what language is spoken in beijing", "In Beijing people speak Cantonese.")
_AVOCADO = ("how many calories in an avocado", "Avocados are rich in healthy fats and fibre.")
_SORT_DESC = ("how do i sort a list descending in python", "Use my_list.sort() to sort it in place.")
_LATTE = ("how do i make a latte at home", "A cappuccino is equal parts espresso, steamed milk and foam.")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # a word value of the answer's kind (MiniLM similarity): after a denial, or in the question's frame
        (_SOLAR, "no, neptune", {"cue_correction": 1}),
        (_SOLAR, "no, thanks", {"cue_correction": 0}),
        (_CHINA, "beijing people speak mandarin", {"cue_correction": 1}),
        (_CHINA, "beijing is lovely in spring", {"cue_correction": 0}),
        (("what is rihanna's net worth", "Rihanna is a singer from Barbados."), "rihanna net worth 2024", {"cue_correction": 0}),
        # a quantity asked again after an answer that gave none; not after one that did, not the user's own
        (_AVOCADO, "how many calories does one avocado have then", {"cue_repeat": 1}),
        (("how many calories in an avocado", "A medium avocado has about 240 calories."),
         "how many calories does one avocado have then", {"cue_repeat": 0}),
        (_AVOCADO, "I'm on 1500 calories a day, how many avocados can i have?", {"cue_repeat": 0}),
        # a word of the question typed again in capitals for emphasis (not code: "SORT(x)")
        (_SORT_DESC, "sort it DESCENDING pls", {"cue_repeat": 1}),
        (_SORT_DESC, "what about descending order in sql", {"cue_repeat": 0}),
        # the question asked again with a term of the answer rejected
        (_LATTE, "how do i make a latte at home, not a cappuccino", {"cue_repeat": 1}),
        (_LATTE, "why is a cappuccino not as sweet?", {"cue_repeat": 0}),
    ],
)
def test_round_6_cues_with_a_similarity(context, next_query, cues):
    from gazepref.signals.text_feedback import _similar

    f = rule_features(context[0], context[1], next_query, similar=_similar)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "text",
    [
        "Fleming " * 10_000 + "actually",
        "9*7 is " + "6 " * 20_000,
        "1 " * 20_000 + "= 63",
        "that should be " + "x" * 50_000,
        "you mean " + "1912 " * 10_000 + "?",
        "in " + "rust " * 10_000,
        "i asked about " + "trains " * 10_000 + ", not buses",
        "no it produces " + "honey " * 10_000,
        "how do i make a latte" + ", not" * 10_000,
        "x_" * 25_000,
    ],
    ids=["actually", "restated", "link", "code-should", "you-mean", "format", "insist", "denial-verb", "reject", "code-token"],
)
def test_round_6_patterns_read_long_text_in_linear_time(text):
    from gazepref.signals.text_feedback import _similar

    _in_time(LIMIT_S, rule_features, *_LATTE, text, _similar)


# review of round 6: hard negatives, written fresh, on which the round-6 rules over-fired - the
# user's own conclusions and next steps, a number or name answering the assistant's own question,
# the answer's value rounded, a question word or acronym typed in capitals, code pasted for the next
# task, a quantity asked about something else
_SEVEN_EIGHT = ("7*8", "7 × 8 = 56.")
_MILE = ("how many km in a mile", "A mile is 1.609 km.")
_WORLD_CUP = ("who won the world cup in 2018", "France won the 2018 World Cup.")
_FIRST_ITEM = ("python get first item of a list", "Use my_list[0] to get the first item.")
_READ_CSV = ("how do i read a csv file in python",
             "```python\nimport csv\nwith open('f.csv') as f:\n    rows = list(csv.reader(f))\n```")
_AVOCADO_CAL = ("how many calories in an avocado", "Avocados are rich in healthy fats and fibre.")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # a conclusion the user draws or a next step ("so", "and", "now", "... then")
        (_SEVEN_EIGHT, "and 8*8 = 64", {"cue_correction": 0}),
        (_MILE, "so a mile is about 1.6 km, easy to remember", {"cue_correction": 0}),
        (("normal body temperature", "Normal body temperature is about 36.8 °C."), "so normal is about 37, got it",
         {"cue_correction": 0}),
        (("what's the boiling point of water", "Water boils at 100 °C at sea level."), "water at 2000 m is 93 °C then",
         {"cue_correction": 0}),
        (("when does the louvre open", "The Louvre opens at 9 am every day except Tuesday."), "should be there by 10 then",
         {"cue_correction": 0}),
        (_FIRST_ITEM, "so my_list[1] is the second one", {"cue_correction": 0}),
        # the answer's value rounded is no new value
        (("how long is a marathon", "A marathon is 42.195 km."), "a marathon is 42 km", {"cue_correction": 0}),
        # a number in the question's place, or asked as a question, is the next question
        (_WORLD_CUP, "2022?", {"cue_correction": 0}),
        (("what was the population of canada in 2010", "Canada had about 34 million people in 2010."), "2020",
         {"cue_correction": 0}),
        # the assistant asked the user something, and the message answers it
        (("how many servings does this lasagna make",
          "This recipe makes about 6 servings. How many people are you feeding? I can scale it up."), "4",
         {"cue_correction": 0}),
        (("recommend a hotel", "Happy to help! Which city are you staying in? Tell me your budget too."), "London actually",
         {"cue_correction": 0}),
        # the user's own plan with "actually", then a question
        (("best time to visit lisbon", "May to September is warm and sunny."), "October actually, is that ok?",
         {"cue_correction": 0}),
        # "you mean after X?" asks which one
        (("when is the next leap year", "The next leap year is 2028."), "you mean after 2024?", {"cue_correction": 0}),
        # code pasted with the next question; a format asked about
        (_READ_CSV[:1] + ("with open('a.txt') as f:\n    data = f.read()",), "with open('b.txt') as f: how do i loop over lines",
         {"cue_correction": 0}),
        (_READ_CSV, "json?", {"cue_correction": 0}),
        # a quantity of something else, or an answer that gave the number in words
        (_AVOCADO_CAL, "how many calories in a banana", {"cue_repeat": 0}),
        (("how old is the universe", "Scientists estimate the universe's age from the cosmic microwave background."),
         "how old is the earth", {"cue_repeat": 0}),
        (("how old do you have to be to rent a car in the us",
          "Most rental companies require drivers to be at least twenty-five."), "how old in canada?", {"cue_repeat": 0}),
        # an acronym in capitals is no emphasis
        (("how do i get an api key for openai", "Sign in at platform.openai.com, open the API keys page and create a new secret key."),
         "where do i put the API key", {"cue_repeat": 0}),
        (("best things to do in nyc", "Central Park, the Met, and a Broadway show."), "best pizza in NYC", {"cue_repeat": 0}),
        # the answer's value converted into a unit neither message used
        (("what's the tallest building", "The Burj Khalifa is 828 m tall."), "828 m is 2717 ft", {"cue_correction": 0}),
        # the user's own code, or a variant they report working
        (("sort a list in python", "Use sorted(my_list) to get a new sorted list."), "I used sorted(my_lst) in my script",
         {"cue_correction": 0}),
        (("sort a list in python", "Use sorted(my_list) to get a new sorted list."), "sorted(my_list, reverse=True) works too",
         {"cue_correction": 0}),
        # a denial run into what someone else said, or into a tag question without its mark
        (("how do plants make food", "Plants make food by photosynthesis, using sunlight."),
         "no he explained it differently in class", {"cue_correction": 0}),
        (("how do plants make food", "Plants make food by photosynthesis, using sunlight."), "no it produces oxygen too right",
         {"cue_correction": 0}),
        # kept: the forms the round-6 rules read
        (("how do plants make food", "Plants make food by photosynthesis, using sunlight."), "no it produces sugar from light",
         {"cue_correction": 1}),
        (("python last item of a list", "Use my_list[1] to get the last item."), "i think its my_list[-1]", {"cue_correction": 1}),
        (("7*8", "7 × 8 = 54."), "7*8 is 56", {"cue_correction": 1}),
        (("how many bones in an adult", "An adult has 212 bones."), "206.", {"cue_correction": 1}),
        (_AVOCADO_CAL, "ok but how many calories though", {"cue_repeat": 1}),
        (_AVOCADO_CAL, "so how many calories does a whole avocado have", {"cue_repeat": 1}),
    ],
)
def test_round_6_hard_negatives(context, next_query, cues):
    from gazepref.signals.text_feedback import _similar

    f = rule_features(context[0], context[1], next_query, similar=_similar)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "response",
    [
        "Are you sure? " * 5_000,
        "1.5 " * 12_000 + "?",
        "you " * 12_000 + "?",
    ],
    ids=["questions", "decimals", "you"],
)
def test_round_6_review_helpers_read_long_answers_in_linear_time(response):
    from gazepref.signals.text_feedback import _similar

    _in_time(LIMIT_S, rule_features, "how long is a marathon", response, "so a marathon is 42 km then", _similar)
    _in_time(LIMIT_S, rule_features, "how many calories", response, "how many calories " + "then " * 10_000, _similar)


# round 7 (benchmarks/data/feedback_probe_r7.jsonl): corrections, complaints and clarifications in
# German, French, Spanish and Portuguese; "X not Y" against a value of the answer; "No. I wanted ...";
# written fresh (not the probe's messages), each with hard negatives
_MAUER = ("Wann fiel die Berliner Mauer?", "Die Berliner Mauer fiel am 9. November 1991.")
_TOUR = ("Quelle est la hauteur de la tour Eiffel ?", "La tour Eiffel mesure 500 mètres.")
_BRASIL = ("Quando o Brasil ficou independente?", "O Brasil ficou independente em 1889.")
_AUSTRALIA = ("¿Cuál es la capital de Australia?", "La capital de Australia es Sídney.")
_QUARK = ("Was ist ein Mutterquark?", "Ein Mutterquark ist ein Valenzquark im Hadron, umgeben von Seequarks.")
_MUSEUM = ("when does the museum open on weekends", "The museum opens at 10am on Saturday and is closed on Sunday.")
_EQUAL = ("javascript: check two values are equal and the same type", "Use `a == b` to compare them.")
_LISBON = ("plan a 2 day trip to lisbon", "Day 1: Alfama and the castle\nDay 2: Belem\nDay 3: Sintra\nDay 4: Cascais")
_RUNNING = ("give me a beginner running plan", "Week 1: run 5 km three times at the track with intervals.")
_VEGAN = ("vegan recipe for a dinner party of 6", "Here is a classic beef bourguignon for six.")
_VISA = ("do i need a visa to visit japan for 10 days as a canadian",
         "It depends on several factors, and rules change, so you may want to check with the embassy.")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # a denial in another language run into the value; not thanks, the user's own facts, a question
        # or an English compound with "non"
        (_MAUER, "Nein, am 9. November 1989.", {"cue_correction": 1}),
        (_MAUER, "nein, 1989 nicht 1991", {"cue_correction": 1}),
        (_TOUR, "Non c'est 330 mètres", {"cue_correction": 1}),
        (_BRASIL, "não, foi em 1822", {"cue_correction": 1}),
        (_AUSTRALIA, "no, es Canberra", {"cue_correction": 1}),
        (_MAUER, "Nein, danke.", {"cue_correction": 0}),
        (_MAUER, "Nein, ich habe keine Zeit", {"cue_correction": 0}),
        (_MAUER, "Nein, ich wohne in München. Wie komme ich zur Mauer?", {"cue_correction": 0}),
        (_TOUR, "non merci", {"cue_correction": 0}),
        (_TOUR, "Non, je voulais savoir autre chose ?", {"cue_correction": 0}),
        (_TOUR, "non-profit organisations in paris", {"cue_correction": 0}),
        (_TOUR, "non stick pans for crepes", {"cue_correction": 0}),
        (_BRASIL, "não sei, quando foi a proclamação da república?", {"cue_correction": 0}),
        (_AUSTRALIA, "no, gracias", {"cue_correction": 0}),
        # a new question in that language, with no "?": a wh-word, or "and ..."
        (_TOUR, "non, c'est quoi la différence entre les deux", {"cue_correction": 0}),
        (_MAUER, "Nein, und wann wurde sie gebaut", {"cue_correction": 0}),
        (_TOUR, "non, et combien de marches", {"cue_correction": 0}),
        # "what do you mean" in German, French, Spanish, Portuguese; "what does X mean" stays a term question
        (_QUARK, "Was meinst du mit Valenzquark?", {"cue_clarify": 1}),
        (_TOUR, "qu'est-ce que tu veux dire par là ?", {"cue_clarify": 1}),
        (_AUSTRALIA, "¿a qué te refieres con capital?", {"cue_clarify": 1}),
        (_BRASIL, "o que você quer dizer com independente?", {"cue_clarify": 1}),
        (_QUARK, "Was ist ein Gluon?", {"cue_clarify": 0, "cue_correction": 0}),
        # a value set against one the answer gave; not the user's own plans, a question, or "not" after a verb
        (_MUSEUM, "it opens at 9 not 10am, fix that", {"cue_correction": 1}),
        (_EQUAL, "that should be === not ==", {"cue_correction": 1}),
        (_LISBON, "i said 2 days not 4", {"cue_correction": 1, "cue_repeat": 0}),
        (_MUSEUM, "why is it not open on sunday", {"cue_correction": 0}),
        (_MUSEUM, "should I go saturday not sunday?", {"cue_correction": 0}),
        (_MUSEUM, "I can only go saturday not sunday, any tips", {"cue_correction": 0}),
        (_MUSEUM, "is it not open on sunday at all", {"cue_correction": 0}),
        (_EQUAL, "and what about != not == for inequality?", {"cue_correction": 0}),
        (_LISBON, "please not too many museums", {"cue_correction": 0}),
        (_LISBON, "it's not too far to go to sintra right", {"cue_correction": 0}),
        # "No. I wanted ..." with what was wanted; not the question asked again
        (_RUNNING, "No. I wanted a plan without a track, just around my block", {"cue_correction": 1}),
        (_RUNNING, "no i wanted to know how often to run", {"cue_correction": 0}),
        (_RUNNING, "no i meant how many km per week", {"cue_correction": 0}),
        (_RUNNING, "No, I wanted to ask something else: what shoes?", {"cue_correction": 0}),
        # the answer ignored the question or is off topic; not an aside ("off topic but ...")
        (_VEGAN, "you did not even read my message", {"cue_negative": 1}),
        (_VEGAN, "that's totally off-topic", {"cue_negative": 1}),
        (_VEGAN, "I didn't read the recipe yet, how long does it take", {"cue_negative": 0}),
        (_VEGAN, "this is off topic, but how do i fold napkins", {"cue_negative": 0}),
        (_VEGAN, "what counts as off-topic at a dinner party", {"cue_negative": 0}),
        # the verdict asked for again in the question's words; not a new yes/no question
        (_VISA, "hmm so do i need a visa or not", {"cue_clarify": 1}),
        (_VISA, "so is japan safe or not", {"cue_clarify": 0}),
        (_VISA, "so do i need travel insurance or not", {"cue_clarify": 0}),
        (_VISA, "should i learn japanese or not before going?", {"cue_clarify": 0}),
    ],
)
def test_cue_families_after_round_7(context, next_query, cues):
    f = rule_features(context[0], context[1], next_query)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "text",
    [
        "nein, " + "am " * 20_000,
        "nein" + " " * 50_000 + "x",
        "x " + "not " * 20_000 + "y",
        "a, not " * 10_000,
        "i said " + "3 " * 20_000 + "not 5",
        "no i wanted " + "x " * 20_000 + "?",
        "you didn't read " + "my " * 20_000,
        "this is " + "so " * 20_000 + "off topic",
        "so do " + "x " * 20_000 + "or not",
        "was meinst du" + " " * 50_000,
        "thats chinese. japanese is " + "x" * 50_000,
    ],
    ids=["denial", "denial-space", "not-run", "not-comma", "insist", "wanted", "didnt-read", "off-topic", "or-not",
         "foreign-clarify", "sibling"],
)
def test_round_7_patterns_read_long_text_in_linear_time(text):
    from gazepref.signals.text_feedback import _similar

    _in_time(LIMIT_S, rule_features, *_LISBON, text, _similar)


_THANKS_KO = ("how do you say thank you in korean", "Thank you in Korean is 'arigatou' (ありがとう).")
_BOIL_F = ("what is water's boiling point in fahrenheit", "Water boils at 100 degrees Celsius.")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # the answer named for what it is, a kin of what was asked, then the asked thing's value
        (_THANKS_KO, "thats japanese. korean is gamsahamnida", {"cue_correction": 1}),
        (_BOIL_F, "thats celsius. fahrenheit is 212", {"cue_correction": 1}),
        # not praise, a hedge or a remark, a question, the same word twice
        (_THANKS_KO, "thats great. korean is hard though", {"cue_correction": 0}),
        (_THANKS_KO, "its japanese. korean is also polite", {"cue_correction": 0}),
        (_THANKS_KO, "thats japanese. korean is what then?", {"cue_correction": 0}),
        (_THANKS_KO, "that's korean. korean is a nice language", {"cue_correction": 0}),
        (_BOIL_F, "thats celsius. fahrenheit is used in the us right", {"cue_correction": 0}),
        (_BOIL_F, "that's nice. fahrenheit is weird", {"cue_correction": 0}),
    ],
)
def test_round_7_cues_with_a_similarity(context, next_query, cues):
    from gazepref.signals.text_feedback import _similar

    f = rule_features(context[0], context[1], next_query, similar=_similar)
    assert {k: f[k] for k in cues} == cues


# --- round-7 review: hard negatives the round-7 rules read as corrections ---------------------------
_LYON = ("que visiter à Lyon ?", "Visitez le Vieux Lyon et Fourvière.")
_DOM = ("Wie hoch ist der Kölner Dom?", "Der Kölner Dom ist 157 Meter hoch.")
_CAPITAL_PT = ("qual é a capital da austrália", "A capital da Austrália é Sydney.")
_RUN_STEPS = ("give me 3 steps to start running", "1. Buy shoes. 2. Start slow. 3. Rest.")
_BREAKFAST = ("quick breakfast ideas", "Try oatmeal, yogurt with fruit, or eggs on toast for breakfast.")
_HIKE = ("weather-proof jacket for hiking?", "For hiking in the rain, a Gore-Tex shell is best; in winter add a fleece.")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # a foreign "no" that approves the answer (to "anything else?"), or the user's (group's) own plans
        (_LYON, "Non, c'est parfait", {"cue_correction": 0}),
        (_LYON, "non, c'est bon, merci", {"cue_correction": 0}),
        (_LYON, "non, c'est exactement ça", {"cue_correction": 0}),
        (_LYON, "non, on part demain", {"cue_correction": 0}),
        (_LYON, "non, nous partons demain", {"cue_correction": 0}),
        (_DOM, "Nein, das passt schon", {"cue_correction": 0}),
        (_DOM, "Nein, das ist super, danke", {"cue_correction": 0}),
        (_DOM, "nein, genau so", {"cue_correction": 0}),
        (_DOM, "Nein, wir fahren morgen hin", {"cue_correction": 0}),
        (_DOM, "Nein, uns gefällt es so", {"cue_correction": 0}),
        (_CAPITAL_PT, "não, está ótimo", {"cue_correction": 0}),
        (_CAPITAL_PT, "Não, é isso mesmo, obrigado", {"cue_correction": 0}),
        (_CAPITAL_PT, "não, vou viajar amanhã", {"cue_correction": 0}),
        (_CAPITAL_PT, "não, nós vamos amanhã", {"cue_correction": 0}),
        # ... while a denial with the value stays a correction
        (_CAPITAL_PT, "não, a capital é Canberra", {"cue_correction": 1}),
        (_CAPITAL_PT, "não, é Canberra, obrigado", {"cue_correction": 1}),
        (("Quelle est la formule de l'eau ?", "La formule de l'eau est H2O2."), "non c'est H2O, merci", {"cue_correction": 1}),
        (_DOM, "Nein, der Dom ist 157 m hoch, nicht 150", {"cue_correction": 1}),
        # "no, i wanted ..." that says the answer is what was wanted
        (_RUN_STEPS, "nope, i wanted exactly this", {"cue_correction": 0}),
        (_RUN_STEPS, "No, I wanted it that way, thanks!", {"cue_correction": 0}),
        (_RUN_STEPS, "no i wanted a quick answer and this is it, thanks", {"cue_correction": 0}),
        (_RUN_STEPS, "nah i was looking for this exactly, thanks", {"cue_correction": 0}),
        (_RUN_STEPS, "No. I wanted something I can do at home", {"cue_correction": 1}),
        # "X not Y" asking for a new task, not correcting the answer
        (_BREAKFAST, "cool, same for dinner not breakfast", {"cue_correction": 0}),
        (_HIKE, "awesome. summer not winter trips next", {"cue_correction": 0}),
    ],
)
def test_round_7_review_hard_negatives(context, next_query, cues):
    from gazepref.signals.text_feedback import _similar

    f = rule_features(context[0], context[1], next_query, similar=_similar)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize(
    "text",
    ["non, " + "c'est " * 20_000, "nope, i wanted " + "this " * 20_000, "a not b " + "next" + " " * 50_000 + "x",
     "dinner not breakfast " + "same " * 20_000],
    ids=["denial-approval", "wanted-this", "not-next", "not-same"],
)
def test_round_7_review_guards_read_long_text_in_linear_time(text):
    from gazepref.signals.text_feedback import _similar

    _in_time(LIMIT_S, rule_features, *_LISBON, text, _similar)


_SPORT_ES = ("qué deporte me recomiendas", "Te recomiendo correr o nadar.")
_AGE_RUN = ("how old should i be to start running", "You can start at any age; kids from 10 are fine.")
_TITANIC = ("when did the titanic sink", "The Titanic sank in 1915.")


@pytest.mark.parametrize(
    ("context", "next_query", "cues"),
    [
        # a denial, then the user's own facts (a number of theirs, pro-drop included), no value of the answer's
        (_SPORT_ES, "No, tengo 30 años, ¿qué me recomiendas?", {"cue_correction": 0}),
        (_SPORT_ES, "No, tengo 30 años y me duelen las rodillas", {"cue_correction": 0}),
        (_SPORT_ES, "no, es que tengo 30 años", {"cue_correction": 0}),
        (_SPORT_ES, "no, es mi primera vez corriendo", {"cue_correction": 0}),
        (_AGE_RUN, "no, i am 30", {"cue_correction": 0}),
        # ... while a denial with the right number, a hedge or a source stays a correction
        (_TITANIC, "no it sank in 1912", {"cue_correction": 1}),
        (_TITANIC, "nein, 1912", {"cue_correction": 1}),
        (_TITANIC, "no. my book says 1912", {"cue_correction": 1}),
        (_TITANIC, "no, i am pretty sure 1912", {"cue_correction": 1}),
        (_SPORT_ES, "no, es natación", {"cue_correction": 1}),
    ],
)
def test_round_7_review_own_facts_after_a_denial(context, next_query, cues):
    from gazepref.signals.text_feedback import _similar

    f = rule_features(context[0], context[1], next_query, similar=_similar)
    assert {k: f[k] for k in cues} == cues


@pytest.mark.parametrize("text", ["no, " + "tengo " * 20_000 + "1", "no, i am" + " " * 50_000 + "30", "no, es " + "mi " * 20_000])
def test_round_7_review_own_clause_reads_long_text_in_linear_time(text):
    _in_time(LIMIT_S, rule_features, *_TITANIC, text)
