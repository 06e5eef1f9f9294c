"""ELMo's idea with the chapter's char LSTMs: contextual word vectors, and a controlled test of
whether they carry a word's sense.

ELMo (Peters et al. 2018) reads a sentence with a forward LSTM language model and a backward
one and uses their hidden states as word vectors: the forward state has read everything to the
left of the word, the backward state everything to the right.  Here the two models are
:class:`~genai_lab.rnn.CharLSTM` s (the backward one trained on reversed text), and the vector of
a word is ``[forward state at its last character ; backward state at its first character]``.

"The same word gets different vectors" is true by construction; whether the differences carry
*meaning* needs a test with controls.  :func:`sense_probe` runs one:

- :data:`SENSE_SENTENCES`: six ambiguous words (*bear, saw, rose, watch, lead, tear*), two senses
  each, 12 sentences per sense.  The word never touches punctuation (a space on each side), is
  never the first or last word, and the ``i``-th sentence of one sense puts it at the same word
  index as the ``i``-th of the other, so position cannot tell the senses apart.
- a linear probe (ridge regression on ±1 sense labels, scored leave-one-out, which ridge gives
  in closed form) predicts each held-out sentence's sense from (a) the biLSTM vector, (b) its
  forward and backward halves alone, (c) a static vector (one per word, so chance by
  construction), (d) the word's position only (character offsets, word index, length), and
  (e) the same two networks untrained: any recurrent state remembers the last few characters, so
  (e) measures what the neighbouring characters alone give, and the gap to (a) what training added;
- the null: the same probe on shuffled sense labels, many times; its 95th percentile is what
  chance reaches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn


def _check_tensor(name: str, value, ndim: int | None = None):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(value.shape)}")


# ====================================================================== contextual vectors
@torch.no_grad()
def contextual_char_states(forward_lm, backward_lm, ids):
    """Both directions' top-layer states at every position of ``ids`` (int64 ``(T,)``).

    Row ``t`` is ``[forward state after reading ids[0..t] ; backward state after reading
    ids[T-1..t] right to left]`` → float tensor ``(T, H_forward + H_backward)``.
    """
    _check_tensor("ids", ids, 1)
    if len(ids) == 0:
        raise ValueError("ids must not be empty")
    forward_lm.eval()
    backward_lm.eval()
    dev_f = next(forward_lm.parameters()).device
    dev_b = next(backward_lm.parameters()).device
    out_f, _ = forward_lm.lstm(forward_lm.embed(ids.to(dev_f)[None]))
    out_b, _ = backward_lm.lstm(backward_lm.embed(ids.flip(0).to(dev_b)[None]))
    return torch.cat([out_f[0].cpu(), out_b[0].flip(0).cpu()], dim=1)


def find_word(sentence: str, word: str, occurrence: int = 0) -> tuple[int, int]:
    """``(start, end)`` character span of the ``occurrence``-th whole-word ``word`` in ``sentence``.

    Whole word: no letter (or apostrophe) right before or after, so ``bear`` is not found inside
    ``beard`` or ``forbear``.
    """
    if not isinstance(sentence, str) or not isinstance(word, str) or not word:
        raise TypeError("sentence and word must be str (word non-empty)")
    if isinstance(occurrence, bool) or not isinstance(occurrence, int) or occurrence < 0:
        raise ValueError(f"occurrence must be an int ≥ 0, got {occurrence!r}")
    spans = [m.span() for m in re.finditer(rf"(?<![A-Za-z']){re.escape(word)}(?![A-Za-z'])", sentence)]
    if len(spans) <= occurrence:
        raise ValueError(f"word {word!r} occurs {len(spans)} times in sentence, wanted occurrence {occurrence}")
    return spans[occurrence]


def _word_vector(states, start: int, end: int, forward_size: int):
    return torch.cat([states[end - 1, :forward_size], states[start, forward_size:]])


def contextual_word_vector(forward_lm, backward_lm, tokenizer, sentence: str, word: str,
                           occurrence: int = 0):
    """ELMo-style vector of ``word`` inside ``sentence`` from a forward and a backward char LSTM.

    The forward model reads the sentence left to right up to the word's last character; the
    backward model reads it right to left down to the word's first character.  Their hidden
    states are concatenated → float tensor ``(H_forward + H_backward,)``: left *and* right context.
    """
    start, end = find_word(sentence, word, occurrence)
    states = contextual_char_states(forward_lm, backward_lm, torch.tensor(tokenizer.encode(sentence)))
    return _word_vector(states, start, end, forward_lm.lstm.hidden_size)


def static_word_vector(lm, tokenizer, word: str):
    """A context-free word vector: the mean of the word's character embeddings ``(E,)``.

    It is the same in every sentence, like a word2vec/GloVe lookup table.
    """
    if not isinstance(word, str) or not word:
        raise ValueError("word must be a non-empty str")
    with torch.no_grad():
        return lm.embed(torch.tensor(tokenizer.encode(word), device=lm.embed.weight.device)).mean(0).cpu()


def cosine_matrix(vectors, center=None):
    """Pairwise cosine similarities of ``vectors (N, D)`` → ``(N, N)`` in [-1, 1].

    ``center`` (``(D,)``, optional) is subtracted first.  Hidden states of a language model share
    a large common direction, which pushes every raw cosine towards 1; subtracting an average
    vector leaves the part that the context changed (but centring a handful of vectors pulls
    their cosines below zero by itself: with N vectors, toward ``-1/(N-1)``).
    """
    _check_tensor("vectors", vectors, 2)
    if center is not None:
        _check_tensor("center", center, 1)
        if center.shape[0] != vectors.shape[1]:
            raise ValueError(f"center must have {vectors.shape[1]} entries, got {center.shape[0]}")
        vectors = vectors - center
    unit = nn.functional.normalize(vectors.double(), dim=1)
    return (unit @ unit.T).float()


# ====================================================================== the sentences
#: Ambiguous words → {sense: sentences}.  Sentence ``i`` of the first sense and sentence ``i`` of
#: the second put the word at the same word index; the word always has a space on both sides.
SENSE_SENTENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "bear": {
        "verb (endure, carry)": (
            "We bear our sorrows with patience.",
            "I cannot bear this grief any longer.",
            "She will not bear the shame of it.",
            "Good friends, I must bear this letter to the king.",
            "Let him bear the crown upon his head.",
            "How shall I bear so great a loss?",
            "My lord, these arms can bear no more weight.",
            "They bear the body to the church.",
            "I know that you would gladly bear my burden.",
            "Pray you, bear with me a little.",
            "Our soldiers cannot bear the cold much longer.",
            "Thou art too weak to bear arms against them.",
        ),
        "noun (the animal)": (
            "The bear sleeps in the dark wood.",
            "A brown bear came down from the hills.",
            "They chased the bear out of the village.",
            "The hunters killed a bear near the river.",
            "The old bear growled at the dogs.",
            "He fought the bear with a spear.",
            "At dawn we found a bear asleep by the gate.",
            "That bear hath torn the sheep.",
            "The children ran away when the bear appeared at the door.",
            "A savage bear came out of the wood.",
            "Tie the hungry bear to the stake.",
            "The shepherd ran from the bear in fear.",
        ),
    },
    "saw": {
        "verb (past of see)": (
            "I saw him at the gate this morning.",
            "Yesterday we saw the king ride by.",
            "When they first saw the sea they wept.",
            "I swear that I saw her kiss him.",
            "Who else saw the duke that night?",
            "My mother never saw her son again.",
            "Upon the hill the soldiers saw the enemy.",
            "She saw the danger too late.",
            "Go and tell the king what you saw in the field.",
            "Then he saw his own death coming.",
            "Truly, I never saw so fair a face.",
            "And then at last we saw the town.",
        ),
        "noun (the tool)": (
            "The saw lay rusting in the barn.",
            "With a saw the carpenter cut the beam.",
            "He sharpened the saw before his work.",
            "The carpenter took his saw and cut the board.",
            "Bring the saw from the shed.",
            "Give me the saw and the hammer.",
            "He cut it with a saw and an axe.",
            "A saw is no weapon for a knight.",
            "The boy cut his hand on the saw in the yard.",
            "This sharp saw hath cut many trees.",
            "Fetch me a saw and some nails.",
            "The old man mended his saw by the fire.",
        ),
    },
    "rose": {
        "noun (the flower)": (
            "The rose is sweet in June.",
            "A red rose grew by the wall.",
            "She picked a rose from the garden.",
            "She wore a white rose in her hair.",
            "Every sweet rose must fade.",
            "Smell this lovely rose from my garden.",
            "Her lover laid a single rose upon her grave.",
            "This rose hath many thorns.",
            "In the queen's garden there grew a rose of gold.",
            "The wild rose climbs the tower.",
            "Pluck me a rose for my lady.",
            "Her lips are like a rose in May.",
        ),
        "verb (past of rise)": (
            "She rose from her bed at dawn.",
            "The sun rose over the hills.",
            "Then the people rose against the king.",
            "At midnight the dead rose from their graves.",
            "The waters rose above the bridge.",
            "When the king rose the lords stood too.",
            "Before the battle the army rose and cheered.",
            "He rose and left the room.",
            "When the bell rang the good people rose to pray.",
            "The river rose after the rain.",
            "That morning she rose early and dressed.",
            "Through the night the wind rose and fell.",
        ),
    },
    "watch": {
        "verb (look, guard)": (
            "We watch the road from the tower.",
            "You must watch the gate tonight.",
            "I will not watch him die.",
            "All night the guards watch the walls.",
            "Let us watch the sky for a sign.",
            "Why do you watch me so closely?",
            "My lord, the servants will watch your door.",
            "I watch the stars each night.",
            "She sat up all the night to watch the sick man.",
            "Good shepherds watch their flocks by night.",
            "Stay here and watch the prisoner.",
            "The mother would sit and watch the cradle.",
        ),
        "noun (the night guard)": (
            "The watch found him in the street.",
            "The night watch came with lanterns.",
            "Go call the watch and seize him.",
            "Last night the drunken watch slept.",
            "The whole watch slept at the gate.",
            "They told the watch of the murder.",
            "He was seized by the watch near the bridge.",
            "Our watch keeps the city safe.",
            "Through the dark streets of town the watch walked slowly.",
            "The town watch carried bills and lanterns.",
            "Set a double watch upon the gates.",
            "He walked out with the watch at night.",
        ),
    },
    "lead": {
        "verb (guide)": (
            "They lead the horses to the river.",
            "You must lead the army into battle.",
            "I will gladly lead you home.",
            "Choose a captain to lead the charge.",
            "Let me lead you to your chamber.",
            "Who will now lead the people?",
            "I pray you, my lord, lead us out of here.",
            "Shepherds lead their sheep to the fold.",
            "When the trumpet sounds the captain shall lead his men.",
            "Will you lead the dance tonight?",
            "Go now and lead the prisoners away.",
            "At dawn our general will lead the attack.",
        ),
        "noun (the metal)": (
            "The lead was melted in the fire.",
            "This heavy lead will sink the net.",
            "The roof was lead and the walls were stone.",
            "His limbs were like lead after the march.",
            "Hot melted lead was poured down.",
            "A bullet of lead killed him.",
            "Her coffin was made of lead and oak.",
            "Cold lead lay in the bottom of the chest.",
            "The third casket of the three was lead and plain.",
            "The grey lead covered the church roof.",
            "The smith melted lead for bullets.",
            "The church roof was of lead and slate.",
        ),
    },
    "tear": {
        "noun (from the eye)": (
            "A tear fell from her eye.",
            "Not one tear did she shed.",
            "She wiped a tear from her cheek.",
            "Her eye dropped a tear of grief.",
            "Each bitter tear was for him.",
            "He shed a tear for his dead father.",
            "At his death not a tear was shed.",
            "One tear is enough for me.",
            "She read his letter and one bright tear fell.",
            "A bitter tear ran down his face.",
            "Wipe away that tear from your eye.",
            "For the dead king no tear was shed.",
        ),
        "verb (rip)": (
            "I tear the paper in two.",
            "Wild dogs tear the deer apart.",
            "I will not tear the letter.",
            "The angry mob will tear down the gates.",
            "Do not tear your hair so.",
            "Let the lions tear the traitor.",
            "My good lord, I could tear my heart out.",
            "They tear the flags from the walls.",
            "If you betray us the people will tear you to pieces.",
            "The winds tear the sails to rags.",
            "Go now and tear the curtains down.",
            "The hounds are loose to tear the fox.",
        ),
    },
}


def word_index(sentence: str, word: str) -> int:
    """Index of the (first, whole) ``word`` among the sentence's space-separated words."""
    start, _ = find_word(sentence, word)
    return len(sentence[:start].split())


def position_features(sentence: str, word: str) -> torch.Tensor:
    """Where ``word`` sits, and nothing else → float ``(5,)``: characters before it, characters
    after it, its word index, the number of words, and its relative position (start / length)."""
    start, end = find_word(sentence, word)
    return torch.tensor([start, len(sentence) - end, word_index(sentence, word), len(sentence.split()),
                         start / len(sentence)], dtype=torch.float32)


def check_sense_sentences(sentences: Mapping[str, Mapping[str, Sequence[str]]], tokenizer=None,
                          *, min_per_sense: int = 2) -> None:
    """Raise ``ValueError`` unless ``sentences`` is a controlled sense set (see the module doc).

    Each word has exactly two senses with the same number (≥ ``min_per_sense``) of sentences;
    each sentence holds the word once, as a whole word with a space on each side (so not first or
    last); the ``i``-th sentences of the two senses put it at the same word index; with a
    ``tokenizer``, every character is in its vocabulary.
    """
    if not isinstance(sentences, Mapping) or not sentences:
        raise TypeError("sentences must be a non-empty dict word -> {sense: [sentence, ...]}")
    for word, senses in sentences.items():
        if not isinstance(senses, Mapping) or len(senses) != 2:
            raise ValueError(f"sentences[{word!r}] must map exactly two senses to sentence lists")
        groups = [list(s) for s in senses.values()]
        if len(groups[0]) != len(groups[1]) or len(groups[0]) < min_per_sense:
            raise ValueError(f"sentences[{word!r}] must hold ≥ {min_per_sense} sentences per sense, "
                             f"the same number for both; got {[len(g) for g in groups]}")
        for group in groups:
            for s in group:
                n = len(re.findall(rf"(?<![A-Za-z']){re.escape(word)}(?![A-Za-z'])", s))
                if n != 1:
                    raise ValueError(f"sentences[{word!r}]: {s!r} must hold {word!r} exactly once, holds it {n} times")
                start, end = find_word(s, word)
                if start == 0 or end >= len(s) or s[start - 1] != " " or s[end] != " ":
                    raise ValueError(f"sentences[{word!r}]: {s!r} must have a space on each side of {word!r}")
                if tokenizer is not None:
                    missing = sorted(set(s) - set(tokenizer.stoi))
                    if missing:
                        raise ValueError(f"sentences[{word!r}]: {s!r} has characters outside the vocabulary: {missing}")
        for a, b in zip(*groups):
            if word_index(a, word) != word_index(b, word):
                raise ValueError(f"sentences[{word!r}]: paired sentences {a!r} and {b!r} must put {word!r} "
                                 "at the same word index")


# ====================================================================== the probe
def ridge_loo_scores(features, targets, *, alpha: float = 1.0):
    """Leave-one-out predictions of a ridge regression without intercept, in closed form.

    Args:
        features: float ``(N, D)``, already centred (label-free).
        targets: float ``(N,)`` or ``(N, P)`` (``P`` label vectors at once, e.g. permutations).
        alpha: ridge strength relative to the mean squared row norm (``λ = alpha · tr(XXᵀ)/N``).
    Returns:
        float64 ``(N,)`` or ``(N, P)``: row ``i`` predicted by the ridge fitted on every row but
        ``i`` — ``(ŷ_i − H_ii y_i) / (1 − H_ii)`` with the hat matrix ``H = K (K + λI)⁻¹``.
    """
    _check_tensor("features", features, 2)
    _check_tensor("targets", targets)
    if targets.ndim not in (1, 2) or targets.shape[0] != features.shape[0]:
        raise ValueError(f"targets must have shape (N,) or (N, P) with N = {features.shape[0]}, "
                         f"got {tuple(targets.shape)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    x = features.double()
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"features must have at least 3 rows, got {n}")
    kernel = x @ x.T
    lam = alpha * max(float(kernel.diagonal().mean()), 1e-12)
    hat = torch.linalg.solve(kernel + lam * torch.eye(n, dtype=x.dtype), kernel).T  # K (K + λI)⁻¹
    y = targets.double()
    fitted = hat @ y
    diag = hat.diagonal()
    if y.ndim == 2:
        diag = diag[:, None]
    return (fitted - diag * y) / (1 - diag)


def _loo_accuracy_many(features, labels_pm, alpha):
    """Accuracy of LOO ridge scores for ``labels_pm`` (±1, ``(N,)`` or ``(N, P)``); ties count ½."""
    scores = ridge_loo_scores(features, labels_pm, alpha=alpha)
    tie = scores.abs() < 1e-9
    right = (torch.sign(scores) == labels_pm.double()).double()
    return torch.where(tie, torch.full_like(right, 0.5), right).mean(0)


def _prepare(features, standardize: bool):
    x = features.double() - features.double().mean(0)
    if standardize:
        x = x / x.std(0).clamp_min(1e-12)
    return x


def loo_accuracy(features, labels, *, alpha: float = 1.0, standardize: bool = False) -> float:
    """Leave-one-out accuracy of a ridge probe predicting binary ``labels`` from ``features``.

    Args:
        features: float ``(N, D)``; centred here (each column minus its mean over all N rows:
            label-free), and scaled to unit variance when ``standardize``.
        labels: int ``(N,)`` of 0/1.
    Returns:
        The share of rows whose sense the probe fitted on the other ``N − 1`` rows gets right
        (a score of exactly 0 — features that are the same for every row — counts ½).
    """
    _check_tensor("features", features, 2)
    labels_pm = _labels_pm(labels, features.shape[0])
    return float(_loo_accuracy_many(_prepare(features, standardize), labels_pm, alpha))


def _labels_pm(labels, n):
    _check_tensor("labels", labels, 1)
    if labels.shape[0] != n:
        raise ValueError(f"labels must have {n} entries (one per row of features), got {labels.shape[0]}")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must hold only 0 and 1")
    return labels.double() * 2 - 1


def permutation_null(features, labels, *, n_perm: int = 1000, seed: int = 0, alpha: float = 1.0,
                     standardize: bool = False):
    """The probe's leave-one-out accuracy on ``n_perm`` seeded shufflings of ``labels``.

    Returns float64 ``(n_perm,)``: what the same probe reaches when the labels carry no sense.
    """
    _check_tensor("features", features, 2)
    if isinstance(n_perm, bool) or not isinstance(n_perm, int) or n_perm < 1:
        raise ValueError(f"n_perm must be a positive int, got {n_perm!r}")
    labels_pm = _labels_pm(labels, features.shape[0])
    gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([labels_pm[torch.randperm(len(labels_pm), generator=gen)] for _ in range(n_perm)], 1)
    return _loo_accuracy_many(_prepare(features, standardize), perms, alpha)


#: the probe's inputs, in the order the page shows them
FEATURE_SETS = ("position only", "static vector", "untrained biLSTM", "forward half", "backward half",
                "biLSTM vector")


def untrained_like(lm, seed: int = 0):
    """A freshly initialised (seeded) copy of a :class:`~genai_lab.rnn.CharLSTM`'s architecture:
    the same network before any training, the control for "any recurrent state remembers the
    last few characters"."""
    if not all(hasattr(lm, a) for a in ("embed", "lstm", "vocab_size")):
        raise TypeError(f"lm must be a CharLSTM, got {type(lm).__name__}")
    torch.manual_seed(seed)
    fresh = type(lm)(lm.vocab_size, lm.lstm.hidden_size, lm.lstm.num_layers, lm.embed.embedding_dim)
    return fresh.to(next(lm.parameters()).device).eval()


@dataclass
class SenseProbeResult:
    """What :func:`sense_probe` measured.

    ``accuracy[feature_set][word]`` and ``accuracy[feature_set]["all"]`` (mean over words);
    ``null95[feature_set][word]`` and ``null95[feature_set]["all"]``: the 95th percentile of the
    shuffled-label accuracies (for ``"all"``: of their mean over words, one shuffle per word);
    ``n_sentences``, ``words``, ``senses[word]``, ``vector_size`` (biLSTM), ``forward_size``.
    """

    accuracy: dict = field(default_factory=dict)
    null95: dict = field(default_factory=dict)
    words: list = field(default_factory=list)
    senses: dict = field(default_factory=dict)
    n_sentences: int = 0
    vector_size: int = 0
    forward_size: int = 0
    n_perm: int = 0


def sense_vectors(forward_lm, backward_lm, tokenizer, sentences: Mapping[str, Mapping[str, Sequence[str]]]):
    """Every sentence's vectors for its word → ``{word: {"bilstm": (N, H_f + H_b), "static": (N, E),
    "position": (N, 5), "labels": int (N,)}}`` (label 0: the first sense, 1: the second)."""
    check_sense_sentences(sentences)
    out = {}
    for word, senses in sentences.items():
        rows, labels, positions = [], [], []
        for label, group in enumerate(senses.values()):
            for s in group:
                rows.append(contextual_word_vector(forward_lm, backward_lm, tokenizer, s, word))
                positions.append(position_features(s, word))
                labels.append(label)
        static = static_word_vector(forward_lm, tokenizer, word)
        out[word] = {"bilstm": torch.stack(rows), "static": static.expand(len(rows), -1).clone(),
                     "position": torch.stack(positions), "labels": torch.tensor(labels)}
    return out


def sense_probe(forward_lm, backward_lm, tokenizer, sentences=None, *, n_perm: int = 1000,
                seed: int = 0, alpha: float = 1.0) -> SenseProbeResult:
    """Does the biLSTM vector of a word tell its sense?  Leave-one-out ridge probes per word,
    against a static vector, each direction alone, position alone, the same networks untrained,
    and shuffled labels.

    Args:
        forward_lm, backward_lm: :class:`~genai_lab.rnn.CharLSTM` s reading left→right and
            right→left (``train_char_lm(cfg, char_lm_config(cfg, reverse=True))``).
        tokenizer: their :class:`~genai_lab.text.CharTokenizer`.
        sentences: a controlled sense set (default :data:`SENSE_SENTENCES`).
        n_perm: shuffles per word for the null; seed: their seed.
        alpha: the ridge strength (see :func:`ridge_loo_scores`); fixed, not tuned.
    Returns:
        :class:`SenseProbeResult`.  The position-only features are standardised (their scales
        differ); the vectors are only centred.
    """
    sentences = SENSE_SENTENCES if sentences is None else sentences
    check_sense_sentences(sentences, tokenizer)
    vecs = sense_vectors(forward_lm, backward_lm, tokenizer, sentences)
    fresh = sense_vectors(untrained_like(forward_lm, seed), untrained_like(backward_lm, seed + 1), tokenizer,
                          sentences)
    hf = forward_lm.lstm.hidden_size
    words = list(sentences)
    res = SenseProbeResult(words=words, senses={w: list(s) for w, s in sentences.items()},
                           n_sentences=sum(len(v["labels"]) for v in vecs.values()),
                           vector_size=vecs[words[0]]["bilstm"].shape[1], forward_size=hf, n_perm=n_perm)
    nulls = {}
    for name in FEATURE_SETS:
        res.accuracy[name], res.null95[name], nulls[name] = {}, {}, []
        for i, word in enumerate(res.words):
            v = vecs[word]
            x = {"position only": v["position"], "static vector": v["static"],
                 "untrained biLSTM": fresh[word]["bilstm"], "forward half": v["bilstm"][:, :hf], "backward half": v["bilstm"][:, hf:],
                 "biLSTM vector": v["bilstm"]}[name]
            standardize = name == "position only"
            res.accuracy[name][word] = loo_accuracy(x, v["labels"], alpha=alpha, standardize=standardize)
            null = permutation_null(x, v["labels"], n_perm=n_perm, seed=seed + i, alpha=alpha,
                                    standardize=standardize)
            res.null95[name][word] = float(torch.quantile(null, 0.95))
            nulls[name].append(null)
        res.accuracy[name]["all"] = sum(res.accuracy[name][w] for w in res.words) / len(res.words)
        res.null95[name]["all"] = float(torch.quantile(torch.stack(nulls[name]).mean(0), 0.95))
    return res


def plot_sense_probe(result: SenseProbeResult, ax=None):
    """Grouped bars: each word's (and all words') leave-one-out sense accuracy per feature set,
    with the biLSTM probe's shuffled-label 95th percentile as a black tick."""
    import matplotlib.pyplot as plt

    if not isinstance(result, SenseProbeResult):
        raise TypeError(f"result must be a SenseProbeResult, got {type(result).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.5))
    groups = result.words + ["all"]
    width = 0.8 / len(FEATURE_SETS)
    for k, name in enumerate(FEATURE_SETS):
        xs = [g + (k - (len(FEATURE_SETS) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [result.accuracy[name][w] for w in groups], width, label=name, color=f"C{k}")
    k_bi = FEATURE_SETS.index("biLSTM vector")
    for g, w in enumerate(groups):
        x = g + (k_bi - (len(FEATURE_SETS) - 1) / 2) * width
        ax.plot([x - width / 2, x + width / 2], [result.null95["biLSTM vector"][w]] * 2, color="black",
                linewidth=2, label="shuffled labels, 95th percentile" if g == 0 else None)
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set_xticks(range(len(groups)), labels=groups)
    ax.set(title="Telling a word's sense from its vector (leave-one-out linear probe)",
           xlabel="ambiguous word (all: mean over the words)", ylabel="held-out sense accuracy",
           ylim=(0, 1.32))
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.legend(fontsize=8, ncol=4, loc="upper center")
    return ax
