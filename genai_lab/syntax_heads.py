"""Does a head find a word's grammatical partner? Hand-labelled pairs scored on every head, against position.

Clark et al. (2019, *What does BERT look at?*) asked of each attention head: when a word attends
most strongly to one other word, how often is that word its syntactic partner? This module asks
the same of all-MiniLM-L6-v2 on a small hand-labelled set written for this book:

- :data:`LABELLED` — English sentences, each with its **determiner–noun** pairs ("the … man") and
  its **subject–verb** pairs (the subject noun and the finite verb that agrees with it, auxiliaries
  included: "The keys to the cabinet *are* …"). Many determiners are *not* next to their noun
  ("the very old man"), so that "look one word back" cannot pass for grammar.
- :func:`word_attention` turns a model's token-level maps into word-level ones (attention *to* a word
  is the sum over its sub-word tokens, attention *from* a word the mean over them; ``[CLS]`` and
  ``[SEP]`` are dropped, as in Clark et al.).
- :func:`head_accuracy` — the statistic: for each head, the share of query words whose most-attended
  *other* word is the labelled partner. :func:`offset_accuracy` — the position baseline: always
  predict the word ``k`` places away, for each ``k``; the best ``k`` is chosen on the same pairs.
- :func:`score_relation` runs both on the model, in both directions (noun → determiner and
  determiner → noun; verb → subject and subject → verb), and :func:`summary_rows` reports the best
  head and the best offset for all pairs, adjacent pairs and non-adjacent pairs.
- :func:`held_out_accuracy` picks the head and the offset on one half of the sentences and scores
  them on the other (the best of 72 heads picked on the very pairs it is scored on is flattered),
  with :func:`sign_test` on the pairs only one of the two gets right.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

RELATIONS = ("det-noun", "subj-verb")
#: for each relation: the two directions, (query is the right word, query is the left word)
DIRECTIONS = {"det-noun": ("noun → determiner", "determiner → noun"),
              "subj-verb": ("verb → subject", "subject → verb")}
DETERMINERS = frozenset({"the", "a", "an", "this", "these", "those", "my", "his", "her", "our", "their",
                         "every", "each", "some", "several", "no"})
SUBSETS = ("all", "adjacent", "non-adjacent")

#: 100 sentences: (sentence, determiner–noun pairs, subject–verb pairs); every pair is (left word,
#: right word) in the order of its left word in the sentence (see :func:`resolve_pairs` for how a word
#: is found). A coordinated subject ("My brother and his new wife moved …") gets no subject–verb pair.
LABELLED: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]] = [
    ("The very old man sat on a wooden bench.", [("The", "man"), ("a", "bench")], [("man", "sat")]),
    ("A small brown dog chased the ball across the garden.",
     [("A", "dog"), ("the", "ball"), ("the", "garden")], [("dog", "chased")]),
    ("The children in the back row were laughing.", [("The", "children"), ("the", "row")],
     [("children", "were")]),
    ("My younger sister bought a bright red umbrella yesterday.", [("My", "sister"), ("a", "umbrella")],
     [("sister", "bought")]),
    ("The keys to the cabinet are on the kitchen table.",
     [("The", "keys"), ("the", "cabinet"), ("the", "table")], [("keys", "are")]),
    ("An extremely rare bird landed on the roof.", [("An", "bird"), ("the", "roof")], [("bird", "landed")]),
    ("This new phone has a surprisingly long battery life.", [("This", "phone"), ("a", "life")],
     [("phone", "has")]),
    ("Those tall trees near the river lose their leaves early.",
     [("Those", "trees"), ("the", "river"), ("their", "leaves")], [("trees", "lose")]),
    ("The report that the committee wrote was very long.", [("The", "report"), ("the", "committee")],
     [("report", "was"), ("committee", "wrote")]),
    ("Every student in the class passed the final exam.",
     [("Every", "student"), ("the", "class"), ("the", "exam")], [("student", "passed")]),
    ("The little girl with the red hat waved at us.", [("The", "girl"), ("the", "hat")], [("girl", "waved")]),
    ("A cold, grey fog covered the whole city.", [("A", "fog"), ("the", "city")], [("fog", "covered")]),
    ("Her two older brothers live in a tiny village.", [("Her", "brothers"), ("a", "village")],
     [("brothers", "live")]),
    ("The price of these old books seems too high.", [("The", "price"), ("these", "books")],
     [("price", "seems")]),
    ("Some people never read the instructions.", [("Some", "people"), ("the", "instructions")],
     [("people", "read")]),
    ("The quick brown fox jumps over the lazy dog.", [("The", "fox"), ("the", "dog")], [("fox", "jumps")]),
    ("Our new neighbours have a big black cat.", [("Our", "neighbours"), ("a", "cat")],
     [("neighbours", "have")]),
    ("The man who lives next door plays the piano.", [("The", "man"), ("the", "piano")],
     [("man", "plays"), ("who", "lives")]),
    ("This old wooden house needs a new roof.", [("This", "house"), ("a", "roof")], [("house", "needs")]),
    ("The results of the first experiment were disappointing.", [("The", "results"), ("the", "experiment")],
     [("results", "were")]),
    ("A very large crowd gathered in the main square.", [("A", "crowd"), ("the", "square")],
     [("crowd", "gathered")]),
    ("The teacher gave each pupil a short poem.", [("The", "teacher"), ("each", "pupil"), ("a", "poem")],
     [("teacher", "gave")]),
    ("His first novel sold very well.", [("His", "novel")], [("novel", "sold")]),
    ("The dogs in the yard bark at every passing car.", [("The", "dogs"), ("the", "yard"), ("every", "car")],
     [("dogs", "bark")]),
    ("An old friend of mine sent me a long letter.", [("An", "friend"), ("a", "letter")], [("friend", "sent")]),
    ("The small village school closed last year.", [("The", "school")], [("school", "closed")]),
    ("The bright morning sun warmed the cold stones.", [("The", "sun"), ("the", "stones")],
     [("sun", "warmed")]),
    ("Several young doctors from the city hospital joined the team.",
     [("Several", "doctors"), ("the", "hospital"), ("the", "team")], [("doctors", "joined")]),
    ("The painting on the far wall is very valuable.", [("The", "painting"), ("the", "wall")],
     [("painting", "is")]),
    ("A tall, thin stranger knocked on the door.", [("A", "stranger"), ("the", "door")],
     [("stranger", "knocked")]),
    ("These fresh green apples taste sour.", [("These", "apples")], [("apples", "taste")]),
    ("The old farmer sold his best cow at the market.", [("The", "farmer"), ("his", "cow"), ("the", "market")],
     [("farmer", "sold")]),
    ("A loud noise from the street woke the baby.", [("A", "noise"), ("the", "street"), ("the", "baby")],
     [("noise", "woke")]),
    ("The players on the winning team received a small gold medal.",
     [("The", "players"), ("the", "team"), ("a", "medal")], [("players", "received")]),
    ("Her grandmother keeps an enormous collection of stamps.", [("Her", "grandmother"), ("an", "collection")],
     [("grandmother", "keeps")]),
    ("The train to the airport leaves in ten minutes.", [("The", "train"), ("the", "airport")],
     [("train", "leaves")]),
    ("A strange, silent, empty street stretched before us.", [("A", "street")], [("street", "stretched")]),
    ("The new manager of the small shop hired two students.", [("The", "manager"), ("the", "shop")],
     [("manager", "hired")]),
    ("My favourite coffee shop opens at seven.", [("My", "shop")], [("shop", "opens")]),
    ("The heavy rain flooded the narrow streets of the old town.",
     [("The", "rain"), ("the", "streets"), ("the", "town")], [("rain", "flooded")]),
    ("The cat sat on the mat.", [("The", "cat"), ("the", "mat")], [("cat", "sat")]),
    ("A girl found a wallet in the park.", [("A", "girl"), ("a", "wallet"), ("the", "park")], [("girl", "found")]),
    ("The students who studied hard passed the test.", [("The", "students"), ("the", "test")],
     [("students", "passed"), ("who", "studied")]),
    ("This beautiful old bridge crosses a deep and dangerous river.", [("This", "bridge"), ("a", "river")],
     [("bridge", "crosses")]),
    ("The boxes under the stairs contain old photographs.", [("The", "boxes"), ("the", "stairs")],
     [("boxes", "contain")]),
    ("No honest politician would say such a thing.", [("No", "politician"), ("a", "thing")],
     [("politician", "would")]),
    ("The woman at the front desk answered the phone.", [("The", "woman"), ("the", "desk"), ("the", "phone")],
     [("woman", "answered")]),
    ("Some tired tourists took photos of the ancient temple.", [("Some", "tourists"), ("the", "temple")],
     [("tourists", "took")]),
    ("A long and very boring meeting ended at noon.", [("A", "meeting")], [("meeting", "ended")]),
    ("The three large black horses ran into the open field.", [("The", "horses"), ("the", "field")],
     [("horses", "ran")]),
    ("Her brand new leather jacket was stolen.", [("Her", "jacket")], [("jacket", "was")]),
    ("Each highly trained security guard carries a radio.", [("Each", "guard"), ("a", "radio")],
     [("guard", "carries")]),
    ("Their very quiet little daughter plays the violin beautifully.", [("Their", "daughter"), ("the", "violin")],
     [("daughter", "plays")]),
    ("A surprisingly warm winter wind blew through the valley.", [("A", "wind"), ("the", "valley")],
     [("wind", "blew")]),
    ("These two shiny silver coins belong to my uncle.", [("These", "coins"), ("my", "uncle")],
     [("coins", "belong")]),
    ("The tired but happy runners crossed the finish line.", [("The", "runners"), ("the", "line")],
     [("runners", "crossed")]),
    ("The young nurse at the night desk smiled at us.", [("The", "nurse"), ("the", "desk")], [("nurse", "smiled")]),
    ("A thick layer of fresh snow covered every car in the street.",
     [("A", "layer"), ("every", "car"), ("the", "street")], [("layer", "covered")]),
    ("His old grey car broke down again.", [("His", "car")], [("car", "broke")]),
    ("The letters from her first husband were never opened.", [("The", "letters"), ("her", "husband")],
     [("letters", "were")]),
    ("Several large, heavy boxes arrived this morning.", [("Several", "boxes"), ("this", "morning")],
     [("boxes", "arrived")]),
    ("Our small team of volunteers cleaned the entire beach.", [("Our", "team"), ("the", "beach")],
     [("team", "cleaned")]),
    ("The sound of distant church bells filled the quiet evening air.", [("The", "sound"), ("the", "air")],
     [("sound", "filled")]),
    ("A man in a dark blue coat was waiting outside.", [("A", "man"), ("a", "coat")], [("man", "was")]),
    ("These old photographs show my grandfather as a boy.",
     [("These", "photographs"), ("my", "grandfather"), ("a", "boy")], [("photographs", "show")]),
    ("The best students in each class receive a small prize.",
     [("The", "students"), ("each", "class"), ("a", "prize")], [("students", "receive")]),
    ("An unusually hot summer dried the little river.", [("An", "summer"), ("the", "river")], [("summer", "dried")]),
    ("Their huge, noisy dog barks at every stranger.", [("Their", "dog"), ("every", "stranger")], [("dog", "barks")]),
    ("The leaves on the old oak tree turned yellow.", [("The", "leaves"), ("the", "tree")], [("leaves", "turned")]),
    ("No single person can solve this difficult problem.", [("No", "person"), ("this", "problem")],
     [("person", "can")]),
    ("The captain of the small fishing boat knew the sea well.",
     [("The", "captain"), ("the", "boat"), ("the", "sea")], [("captain", "knew")]),
    ("A bright yellow kite flew high above the hill.", [("A", "kite"), ("the", "hill")], [("kite", "flew")]),
    ("My oldest and dearest friend lives in a small flat.", [("My", "friend"), ("a", "flat")], [("friend", "lives")]),
    ("The noise from the busy road keeps me awake.", [("The", "noise"), ("the", "road")], [("noise", "keeps")]),
    ("Some very old maps show a large island.", [("Some", "maps"), ("a", "island")], [("maps", "show")]),
    ("The cook in the hotel kitchen burned the soup.", [("The", "cook"), ("the", "kitchen"), ("the", "soup")],
     [("cook", "burned")]),
    ("Each small wooden chair was painted by hand.", [("Each", "chair")], [("chair", "was")]),
    ("The windows of the empty house were broken.", [("The", "windows"), ("the", "house")], [("windows", "were")]),
    ("A strong wind from the north brought the first snow.", [("A", "wind"), ("the", "north"), ("the", "snow")],
     [("wind", "brought")]),
    ("Her long black hair fell over her shoulders.", [("Her", "hair"), ("her", "shoulders")], [("hair", "fell")]),
    ("The shop on the corner sells fresh bread.", [("The", "shop"), ("the", "corner")], [("shop", "sells")]),
    ("This tiny but powerful engine drives the whole machine.", [("This", "engine"), ("the", "machine")],
     [("engine", "drives")]),
    ("The girls from the village school sing in a choir.", [("The", "girls"), ("the", "school"), ("a", "choir")],
     [("girls", "sing")]),
    ("An angry old woman shouted at the driver.", [("An", "woman"), ("the", "driver")], [("woman", "shouted")]),
    ("The cost of these new machines is very high.", [("The", "cost"), ("these", "machines")], [("cost", "is")]),
    ("Several hungry little birds waited near the window.", [("Several", "birds"), ("the", "window")],
     [("birds", "waited")]),
    ("The doctor with the kind eyes listened carefully.", [("The", "doctor"), ("the", "eyes")],
     [("doctor", "listened")]),
    ("A quiet, gentle rain fell all night.", [("A", "rain")], [("rain", "fell")]),
    ("Our first real holiday was a complete disaster.", [("Our", "holiday"), ("a", "disaster")],
     [("holiday", "was")]),
    ("The keys of the old piano are yellow.", [("The", "keys"), ("the", "piano")], [("keys", "are")]),
    ("Those three small islands belong to a rich family.", [("Those", "islands"), ("a", "family")],
     [("islands", "belong")]),
    ("The manager of the new hotel answered every question.",
     [("The", "manager"), ("the", "hotel"), ("every", "question")], [("manager", "answered")]),
    ("Every single seat in the large hall was taken.", [("Every", "seat"), ("the", "hall")], [("seat", "was")]),
    ("A group of young artists painted the old wall.", [("A", "group"), ("the", "wall")], [("group", "painted")]),
    ("His first two books sold well.", [("His", "books")], [("books", "sold")]),
    ("The voices in the next room grew louder.", [("The", "voices"), ("the", "room")], [("voices", "grew")]),
    ("An old stone wall surrounds the tiny garden.", [("An", "wall"), ("the", "garden")], [("wall", "surrounds")]),
    ("The smell of fresh coffee woke the whole family.", [("The", "smell"), ("the", "family")], [("smell", "woke")]),
    ("My brother and his new wife moved to a quiet town.", [("My", "brother"), ("his", "wife"), ("a", "town")], []),
    ("The pages of this very old book are torn.", [("The", "pages"), ("this", "book")], [("pages", "are")]),
]


def split_words(text: str) -> list[str]:
    """The words of ``text`` as a BERT tokenizer pre-splits them: runs of letters/digits, and every
    punctuation mark on its own (``"A cold, grey fog."`` → ``A cold , grey fog .``)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    return re.findall(r"\w+|[^\w\s]", text)


@dataclass(frozen=True)
class Pair:
    """One labelled pair: word indices ``left < right`` in sentence ``sentence`` of :data:`LABELLED`."""

    sentence: int
    relation: str
    left: int
    right: int

    @property
    def distance(self) -> int:
        return self.right - self.left

    @property
    def adjacent(self) -> bool:
        return self.distance == 1


def resolve_pairs(words: Sequence[str], pairs: Sequence[tuple[str, str]], *, sentence: int = 0,
                  relation: str = "det-noun") -> list[Pair]:
    """Word indices of labelled ``(left, right)`` pairs (case-insensitive).

    The pairs come in the order of their left words: each left word is its first occurrence at or
    after the previous pair's left word + 1, and its right word the first occurrence after it.

    Raises:
        ValueError: a word is missing (naming it and the sentence).
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    lower = [w.lower() for w in words]
    out, cursor = [], 0
    for left_word, right_word in pairs:
        try:
            left = lower.index(left_word.lower(), cursor)
            right = lower.index(right_word.lower(), left + 1)
        except ValueError:
            raise ValueError(f"pair ({left_word!r}, {right_word!r}) not found in order in sentence {sentence}: "
                             f"{' '.join(words)}") from None
        out.append(Pair(sentence, relation, left, right))
        cursor = left + 1
    return out


def labelled_pairs(relation: str = "det-noun") -> list[Pair]:
    """Every pair of ``relation`` in :data:`LABELLED`, resolved to word indices."""
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    column = 1 + RELATIONS.index(relation)
    return [pair for i, entry in enumerate(LABELLED)
            for pair in resolve_pairs(split_words(entry[0]), entry[column], sentence=i, relation=relation)]


# --------------------------------------------------------------------------- the statistic
def word_attention(attentions: Tensor, word_ids: Sequence[int | None]) -> Tensor:
    """Token-level attention ``(..., T, T)`` → word-level ``(..., W, W)``.

    ``word_ids[t]`` is the word of token ``t`` (``None`` for ``[CLS]``/``[SEP]``, whose rows and
    columns are dropped). Attention *to* a word is the sum over its tokens (a word split in two
    receives both shares); attention *from* a word is the mean over its tokens' rows.
    """
    if not isinstance(attentions, Tensor) or attentions.dim() < 2:
        raise TypeError(f"attentions must be a tensor (..., T, T), got {type(attentions).__name__}")
    if len(word_ids) != attentions.shape[-1] or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError(f"word_ids must have one entry per token ({attentions.shape[-1]}), got {len(word_ids)}")
    real = sorted({w for w in word_ids if w is not None})
    if real != list(range(len(real))) or not real:
        raise ValueError(f"word_ids must number the words 0..W-1 (None for special tokens), got {list(word_ids)}")
    assign = torch.zeros(len(word_ids), len(real), dtype=attentions.dtype)  # (T, W) one-hot
    for t, w in enumerate(word_ids):
        if w is not None:
            assign[t, w] = 1.0
    to_words = attentions @ assign  # (..., T, W): summed over each word's tokens
    return (assign / assign.sum(0)).T @ to_words  # (..., W, W): averaged over each word's rows


def pair_hits(word_maps: Sequence[Tensor], queries: Sequence[tuple[int, int]],
              targets: Sequence[int]) -> Tensor:
    """For every pair and head, whether the query's most-attended other word is the target: ``(N, L, H)`` bool.

    Args:
        word_maps: per sentence, word-level attention ``(L, H, W, W)`` (row = query word).
        queries: ``(sentence index, query word)`` per pair.
        targets: the labelled partner word of each query (same sentence).

    The query word itself is excluded from the arg-max (a word is never its own partner), nothing
    else is: punctuation counts as a word.
    """
    if len(queries) != len(targets) or not queries:
        raise ValueError(f"queries and targets must be non-empty and equally long, got {len(queries)} "
                         f"and {len(targets)}")
    hits = []
    for (sentence, query), target in zip(queries, targets):
        row = word_maps[sentence][..., query, :].clone()  # (L, H, W)
        row[..., query] = float("-inf")
        hits.append(row.argmax(-1) == target)
    return torch.stack(hits)


def head_accuracy(word_maps: Sequence[Tensor], queries: Sequence[tuple[int, int]],
                  targets: Sequence[int]) -> Tensor:
    """Share of queries whose most-attended other word is the target, for every head: ``(L, H)``
    (the mean of :func:`pair_hits` over the pairs)."""
    return pair_hits(word_maps, queries, targets).float().mean(0)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if either side were
    equally likely to win each pair on which the two rules disagree (ties are left out)."""
    if not all(isinstance(n, int) and n >= 0 for n in (wins, losses)):
        raise ValueError(f"wins and losses must be ints ≥ 0, got {wins!r}, {losses!r}")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def offset_accuracy(queries: Sequence[int], targets: Sequence[int], offsets: Sequence[int]) -> dict[int, float]:
    """The position baseline: for each offset ``k``, the share of pairs with ``target == query + k``."""
    if len(queries) != len(targets) or not queries:
        raise ValueError("queries and targets must be non-empty and equally long")
    return {k: sum(t == q + k for q, t in zip(queries, targets)) / len(queries) for k in offsets}


# --------------------------------------------------------------------------- on a model
def sentence_word_maps(tokenizer, model, text: str) -> tuple[list[str], Tensor]:
    """``(words, (L, H, W, W) word-level attention)`` of a BERT-style encoder on ``text``.

    The model must return attention maps (load it with ``attn_implementation="eager"``); the
    tokenizer must be a fast one (it supplies each token's word).
    """
    words = split_words(text)
    enc = tokenizer(text, return_tensors="pt").to(model.device)
    word_ids = enc.word_ids()
    if max(w for w in word_ids if w is not None) + 1 != len(words):
        raise ValueError(f"the tokenizer splits {text!r} into other words than split_words: {words}")
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    if not out.attentions:
        raise ValueError("model returned no attention maps; load it with attn_implementation='eager'")
    att = torch.stack([a[0] for a in out.attentions]).float().cpu()  # (L, H, T, T)
    return words, word_attention(att, word_ids)


@dataclass
class RelationScores:
    """Scores of one relation: per (direction, subset), head accuracies ``(L, H)``, offset
    accuracies ``{k: share}`` and the number of pairs."""

    relation: str
    pairs: list[Pair]
    words: list[list[str]]
    word_maps: list[Tensor]
    heads: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    offsets: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def best_head(self, direction: str, subset: str = "all") -> tuple[int, int, float]:
        """``(layer, head, accuracy)`` of the best head, chosen on that subset."""
        acc = self.heads[direction, subset]
        layer, head = divmod(int(acc.argmax()), acc.shape[1])
        return layer, head, float(acc.max())

    def best_offset(self, direction: str, subset: str = "all") -> tuple[int, float]:
        """``(k, accuracy)`` of the best fixed offset, chosen on that subset."""
        table = self.offsets[direction, subset]
        k = max(table, key=lambda o: (table[o], -abs(o)))
        return k, table[k]


def score_relation(tokenizer, model, relation: str = "det-noun", *, max_offset: int = 6,
                   reuse: RelationScores | None = None) -> RelationScores:
    """Score every head of ``model`` and every offset ``±1..±max_offset`` on :data:`LABELLED`'s pairs.

    ``reuse``: the result of an earlier call on the same model, whose word-level maps are reused
    (the model then does not run again).
    """
    pairs = labelled_pairs(relation)
    if not isinstance(max_offset, int) or max_offset < 1:
        raise ValueError(f"max_offset must be a positive int, got {max_offset!r}")
    if reuse is not None:
        words, maps = reuse.words, reuse.word_maps
    else:
        words, maps = zip(*(sentence_word_maps(tokenizer, model, entry[0]) for entry in LABELLED))
    result = RelationScores(relation, pairs, list(words), list(maps))
    offsets = [k for k in range(-max_offset, max_offset + 1) if k]
    chosen = {subset: _subset(pairs, subset) for subset in SUBSETS}
    for subset, group in chosen.items():
        if not group:
            continue
        for direction in DIRECTIONS[relation]:
            queries, targets = _queries_targets(group, relation, direction)
            result.heads[direction, subset] = head_accuracy(result.word_maps, queries, targets)
            result.offsets[direction, subset] = offset_accuracy([q for _, q in queries], targets, offsets)
            result.counts[direction, subset] = len(group)
    return result


def _queries_targets(pairs: Sequence[Pair], relation: str, direction: str) -> tuple[list[tuple[int, int]], list[int]]:
    """``([(sentence, query word)], [target word])`` of ``pairs`` read in ``direction``."""
    if direction not in DIRECTIONS[relation]:
        raise ValueError(f"direction must be one of {DIRECTIONS[relation]}, got {direction!r}")
    backward = direction == DIRECTIONS[relation][0]  # the right word asks for the left one
    queries = [(p.sentence, p.right if backward else p.left) for p in pairs]
    return queries, [p.left if backward else p.right for p in pairs]


def accuracy_by_distance(scores: RelationScores, direction: str, layer: int, head: int) -> list[dict]:
    """One head's accuracy split by the distance between the two words (1, 2, 3, 4 or more)."""
    rows = []
    for label, keep in (("1", lambda d: d == 1), ("2", lambda d: d == 2), ("3", lambda d: d == 3),
                        ("4+", lambda d: d >= 4)):
        group = [p for p in scores.pairs if keep(p.distance)]
        if group:
            queries, targets = _queries_targets(group, scores.relation, direction)
            acc = head_accuracy(scores.word_maps, queries, targets)[layer, head]
            rows.append({"distance": label, "pairs": len(group), "head_accuracy": float(acc)})
    return rows


def _subset(pairs: Sequence[Pair], subset: str) -> list[Pair]:
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    return [p for p in pairs if subset == "all" or p.adjacent == (subset == "adjacent")]


def held_out_accuracy(scores: RelationScores, direction: str, subset: str = "non-adjacent", *,
                      max_offset: int = 6) -> dict:
    """The best head and the best offset chosen on half of the sentences, scored on the other half.

    Picking the best of 72 heads on the same pairs flatters the winner (one of many gets lucky);
    the fixed offset is one of only a dozen rules. Here sentences with an even index choose the
    head and the offset scored on the odd ones, and the other way round; the hits of both halves
    are added up.

    Returns:
        ``{"pairs", "head_accuracy", "offset_accuracy", "choices": [(layer, head, k)] per half,
        "head_only", "offset_only"`` (pairs only one of the two gets right) ``, "p_value"}``
        (:func:`sign_test` of those two counts).
    """
    group = _subset(scores.pairs, subset)
    head_hits, offset_hits, choices = [], [], []
    for held in (0, 1):
        choose = [p for p in group if p.sentence % 2 != held]
        test = [p for p in group if p.sentence % 2 == held]
        if not choose or not test:
            raise ValueError(f"subset {subset!r} has pairs in only one half of the sentences")
        heads, offsets, choice = _choose_then_score(scores, direction, choose, test, max_offset)
        head_hits += heads
        offset_hits += offsets
        choices.append(choice)
    return {**_comparison(head_hits, offset_hits), "choices": choices}


def _choose_then_score(scores: RelationScores, direction: str, choose: Sequence[Pair], test: Sequence[Pair],
                       max_offset: int) -> tuple[list[bool], list[bool], tuple[int, int, int]]:
    """Pick the best head and the best offset on ``choose``; their hits on ``test``, and the choice."""
    offsets = [k for k in range(-max_offset, max_offset + 1) if k]
    q, t = _queries_targets(choose, scores.relation, direction)
    acc = head_accuracy(scores.word_maps, q, t)
    layer, head = divmod(int(acc.argmax()), acc.shape[1])
    table = offset_accuracy([w for _, w in q], t, offsets)
    k = max(table, key=lambda o: (table[o], -abs(o)))
    q, t = _queries_targets(test, scores.relation, direction)
    head_hits = pair_hits(scores.word_maps, q, t)[:, layer, head].tolist()
    offset_hits = [target == query + k for (_, query), target in zip(q, t)]
    return head_hits, offset_hits, (layer, head, k)


def _comparison(head_hits: Sequence[bool], offset_hits: Sequence[bool]) -> dict:
    """Accuracies of the head and the offset on the same pairs, and the sign test of where they differ."""
    wins = sum(h and not o for h, o in zip(head_hits, offset_hits))
    losses = sum(o and not h for h, o in zip(head_hits, offset_hits))
    return {"pairs": len(head_hits), "head_accuracy": sum(head_hits) / len(head_hits),
            "offset_accuracy": sum(offset_hits) / len(head_hits),
            "head_only": wins, "offset_only": losses, "p_value": sign_test(wins, losses)}


#: How many of ``LABELLED``'s sentences existed at the first look at the results; the rest were
#: written afterwards, before being scored (see :func:`confirm_on_later_sentences`).
FIRST_LOOK_SENTENCES = 56


def confirm_on_later_sentences(scores: RelationScores, direction: str, subset: str = "non-adjacent", *,
                               first: int = FIRST_LOOK_SENTENCES, max_offset: int = 6) -> dict:
    """The best head and offset chosen on sentences ``0 … first-1``, scored on the later ones only.

    The labelled set grew after a first look at the results; sentences written afterwards are
    fresh data for a head chosen before they existed.

    Returns:
        ``{"pairs", "head_accuracy", "offset_accuracy", "choice": (layer, head, k), "head_only",
        "offset_only", "p_value"}`` on the later sentences' pairs.
    """
    if isinstance(first, bool) or not isinstance(first, int) or first < 1:
        raise ValueError(f"first must be a positive int, got {first!r}")
    group = _subset(scores.pairs, subset)
    choose = [p for p in group if p.sentence < first]
    test = [p for p in group if p.sentence >= first]
    if not choose or not test:
        raise ValueError(f"first={first} leaves no {subset} pairs on one side")
    head_hits, offset_hits, choice = _choose_then_score(scores, direction, choose, test, max_offset)
    return {**_comparison(head_hits, offset_hits), "choice": choice}


def summary_rows(scores: RelationScores) -> list[dict]:
    """One row per (direction, subset): pairs, best head and its accuracy, best offset and its accuracy."""
    rows = []
    for direction in DIRECTIONS[scores.relation]:
        for subset in SUBSETS:
            if (direction, subset) not in scores.heads:
                continue
            layer, head, acc = scores.best_head(direction, subset)
            k, base = scores.best_offset(direction, subset)
            rows.append({"direction": direction, "subset": subset, "pairs": scores.counts[direction, subset],
                         "layer": layer, "head": head, "head_accuracy": acc, "offset": k,
                         "offset_accuracy": base})
    return rows


def format_summary(rows: Sequence[dict]) -> str:
    """The rows of :func:`summary_rows` as a plain-text table."""
    lines = [f"{'direction':20s} {'pairs':>13s} {'n':>4s}  {'best head':>9s} {'accuracy':>8s}  "
             f"{'best offset':>11s} {'accuracy':>8s}"]
    for r in rows:
        lines.append(f"{r['direction']:20s} {r['subset']:>13s} {r['pairs']:4d}  "
                     f"{'L%d H%d' % (r['layer'], r['head']):>9s} {r['head_accuracy']:8.2f}  "
                     f"{r['offset']:>+11d} {r['offset_accuracy']:8.2f}")
    return "\n".join(lines)
