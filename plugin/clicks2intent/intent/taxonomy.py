"""LLM-generated intent taxonomy (TnT-LLM style): summarise → generate → update per minibatch → review.

Why this shape: the default model is a 135M-parameter SmolLM2, far too small to write and revise a whole
taxonomy in one answer (TnT-LLM's prompts assume a GPT-4-class model). So the model does what it can do
reliably — name the goal of *one* session summary, as constrained JSON, seeing the goals named so far
— and the bookkeeping is deterministic code:

1. **generate**: the first minibatch of session summaries gets one proposal ``{name, description}`` each;
   proposals are grouped by name similarity (stemmed content words, typo-tolerant) into candidates;
2. **update**: every further minibatch is proposed *with the current candidate names in the prompt*
   (reuse one if it fits), then merged into the candidates the same way; then **coverage rounds**
   aim the update step where the taxonomy is weak: sessions of a larger pool none of whose pages or
   searches is a current label's name or keyword (they would fall to ``other``) propose goals, a
   minibatch per round, until coverage stops improving. Which goals survive no longer depends on
   which 64 sessions the first sample happened to hold (a demo had lost mortgage and savings);
3. **intents, not pages** (:func:`intent_review`, no LLM): how candidates co-occur over a few thousand
   sessions decides what each one is. A *part* of a bigger goal (a product's calculator, seen with it
   in at least ``merge_share`` of its sessions, ``merge_lift`` times chance or more) joins that goal;
   a *step* on many goals' paths (the application form, the contact page: above chance with ≥ 3 other
   candidates, the most connected removed first so that a goal is not rejected for the steps on its own
   path) is rejected as a label;
   frequent phrases nobody proposed that are parts of a goal (its typical searches) become its
   ``keywords``, which the labeller matches. On the demo data this turned
   ``apply_form``/``contact`` labels into ten goals (mortgage, credit card, …, account help);
4. **review**: candidates are consolidated to about ``max_labels`` — rare ones (< ``min_support``
   proposals and seen in < ``min_seen_share`` of sessions) fold into the most similar larger candidate
   or are dropped; over the bound near-duplicates merge first, then the least *seen* go, but a frequent
   goal only beyond ``hard_max_labels`` — and a catch-all ``other`` label is added so that labelling never
   has to force a wrong label. Every label has a one-sentence description.

The result is ``taxonomy.yaml`` (``version``, ``status`` draft/approved, ``labels[{id, name, description,
examples}]``, the model, the prompts' hashes, a hash of the label content, keywords included) for people to review
(``c2i taxonomy review`` renders Markdown with label frequencies and example sessions, ``--approve``
marks it approved). A file a person approved or edited is respected: later steps use it as written,
its edited content gets its own version string, and ``generate`` refuses to replace it without
``--force`` (which keeps a backup). A stronger model behind the same settings gives better names.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import hashlib
import json
import logging
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicks2intent.common.files import exclusive, write_text
from clicks2intent.errors import ArtifactError, ConfigError, ContractError, LLMError, LLMUnavailableError
from clicks2intent.intent.llm.server import LLMOptions
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ARTIFACTS

logger = logging.getLogger(__name__)

STATUS_DRAFT = "draft"
STATUS_APPROVED = "approved"
STATUSES = (STATUS_DRAFT, STATUS_APPROVED)
LABEL_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
OTHER_ID = "other"
OTHER_NAME = "Other or general browsing"
OTHER_DESCRIPTION = "General browsing with no clear banking goal, or a goal no other label describes."


# --- the taxonomy file ---------------------------------------------------------------------------
@dataclass
class Label:
    """One intent: a stable id (what features carry), a name and description (what people read)."""

    id: str
    name: str
    description: str
    examples: list[str] = field(default_factory=list)  # session ids that illustrate it
    # Pages and searches that signal the intent: what the labeller's shortlist matches. People may
    # edit them like names and descriptions; an edit is versioned (see Taxonomy.version_string).
    keywords: list[str] = field(default_factory=list)


@dataclass
class Taxonomy:
    """The reviewable taxonomy file's content."""

    version: int
    status: str
    labels: list[Label]
    model: str = ""
    prompts: dict[str, str] = field(default_factory=dict)  # prompt name -> sha256 of its template
    labels_sha256: str = ""  # hash of ids/names/descriptions when written: detects hand edits
    created_at: str = ""
    approved_at: str | None = None
    approved_by: str | None = None
    generation: dict[str, Any] = field(default_factory=dict)  # how it was made (sample, counts, ledger)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Clear errors for a hand-edited file: field, rule, offending value."""
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ConfigError(f"taxonomy.version: must be an integer >= 1, got {self.version!r}")
        if self.status not in STATUSES:
            raise ConfigError(f"taxonomy.status: must be one of {STATUSES}, got {self.status!r}")
        if not self.labels:
            raise ConfigError("taxonomy.labels: must hold at least one label")
        seen: set[str] = set()
        for i, lab in enumerate(self.labels):
            if not isinstance(lab.id, str) or not LABEL_ID_RE.match(lab.id):
                raise ConfigError(
                    f"taxonomy.labels[{i}].id: must match {LABEL_ID_RE.pattern}, got {lab.id!r}"
                )
            if lab.id in seen:
                raise ConfigError(f"taxonomy.labels[{i}].id: duplicate id {lab.id!r}")
            seen.add(lab.id)
            if not isinstance(lab.name, str) or not lab.name.strip():
                raise ConfigError(f"taxonomy.labels[{i}].name: must be a non-empty string")
            if not isinstance(lab.description, str):
                raise ConfigError(f"taxonomy.labels[{i}].description: must be a string")
            if not isinstance(lab.examples, list):
                raise ConfigError(f"taxonomy.labels[{i}].examples: must be a list of session ids")
            if not isinstance(lab.keywords, list) or not all(isinstance(k, str) for k in lab.keywords):
                raise ConfigError(f"taxonomy.labels[{i}].keywords: must be a list of strings")
        names = [" ".join(lab.name.lower().split()) for lab in self.labels]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"taxonomy.labels[{i}].name: duplicate name {self.labels[i].name!r}")

    @property
    def ids(self) -> list[str]:
        return [lab.id for lab in self.labels]

    @property
    def names(self) -> dict[str, str]:
        return {lab.id: lab.name for lab in self.labels}

    def content_sha256(self) -> str:
        """Hash of what labelling depends on (ids, names, descriptions, keywords; not examples)."""
        payload = [
            [lab.id, lab.name, lab.description] + ([lab.keywords] if lab.keywords else [])
            for lab in self.labels
        ]
        return hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()

    @property
    def edited(self) -> bool:
        """True when the labels changed since the file was written by a command (a person edited it)."""
        return bool(self.labels_sha256) and self.labels_sha256 != self.content_sha256()

    @property
    def version_string(self) -> str:
        """The version recorded on every label: ``v3``, or ``v3+edit.1a2b3c4d`` for unversioned edits,
        so labels made from an edited file can never be mistaken for labels of the original."""
        base = f"v{self.version}"
        return f"{base}+edit.{self.content_sha256()[:8]}" if self.edited else base

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        order = ["version", "status", "model", "created_at", "approved_at", "approved_by", "labels_sha256"]
        out = {k: d[k] for k in order}
        out["prompts"] = d["prompts"]
        out["labels"] = d["labels"]
        out["generation"] = d["generation"]
        return out

    def save(self, path: str | Path, stamp: bool = True, *, lock: bool = True) -> Path:
        """Write YAML. ``stamp`` records the content hash (commands do; it is what makes edits visible).
        ``lock=False``: the caller holds ``path``'s lock (:func:`~clicks2intent.common.files.exclusive`)."""
        import yaml

        if stamp:
            self.labels_sha256 = self.content_sha256()
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=110)
        return write_text(path, text, lock=lock)  # atomically: a reader never sees half a taxonomy

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"taxonomy file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:  # one line, not a parser traceback
            where = getattr(err, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            reason = getattr(err, "problem", None) or type(err).__name__
            raise ConfigError(f"{path}: not valid UTF-8 YAML{at}: {reason}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: must be a YAML mapping with version, status and labels")
        for key in ("version", "status", "labels"):
            if key not in raw:
                raise ConfigError(f"{path}: required field {key!r} is missing")
        if not isinstance(raw["labels"], list):
            raise ConfigError(f"{path}: labels must be a list of {{id, name, description, examples}}")
        labels = []
        for i, item in enumerate(raw["labels"]):
            if not isinstance(item, dict) or "id" not in item or "name" not in item:
                raise ConfigError(f"{path}: labels[{i}] must be a mapping with at least id and name")
            labels.append(
                Label(
                    id=item["id"],
                    name=item["name"],
                    description=item.get("description") or "",
                    examples=[str(x) for x in (item.get("examples") or [])],
                    keywords=[str(x) for x in (item.get("keywords") or [])],
                )
            )
        return cls(
            version=raw["version"],
            status=raw["status"],
            labels=labels,
            model=raw.get("model") or "",
            prompts=dict(raw.get("prompts") or {}),
            labels_sha256=raw.get("labels_sha256") or "",
            created_at=str(raw.get("created_at") or ""),
            approved_at=raw.get("approved_at"),
            approved_by=raw.get("approved_by"),
            generation=dict(raw.get("generation") or {}),
        )


# --- generation ----------------------------------------------------------------------------------
PROPOSAL_MODES = ("grounded", "free")
PROPOSAL_AUTO = (
    "auto"  # grounded for the embedded model, free for a configured endpoint (see generate_taxonomy_file)
)


@dataclass
class TaxonomyConfig:
    """Generation settings; defaults fit a demo's few-minute LLM budget on a small CPU."""

    n_sessions: int = 64  # sessions that propose a goal; only ambiguous ones cost a call (grounded)
    minibatch_size: int = 8  # one update round per minibatch (candidate names fed back after each)
    # Label count (excluding "other"): reviewable, learnable per class. Over ``max_labels``, review merges
    # near-duplicates and drops the least seen *infrequent* candidates; a frequent goal (seen in at
    # least ``frequent_share`` of the co-occurrence sessions) is only dropped beyond ``hard_max_labels``
    # (a cap that dropped the smallest had removed mortgage, savings and business banking in a demo).
    max_labels: int = 12
    hard_max_labels: int = 15
    frequent_share: float = 0.03
    min_support: int = 2  # a candidate proposed by fewer sessions is folded or dropped in review …
    min_seen_share: float = 0.02  # … unless this share of the co-occurrence sessions shows it
    name_similarity: float = 0.5  # weighted Jaccard of content stems at which two names merge
    show_known: int = 12  # current candidate names shown to the model in update rounds (0: none)
    # Grounded proposals are page names: two distinct pages are merged by how they co-occur (parts,
    # see intent_review), by name only when they are spellings of one (1.0: same stems or a typo).
    # Merging by shared words had put the personal loan's "loan calculator" into "auto loan calculator".
    grounded_name_similarity: float = 1.0
    # grounded: the model picks the visit's main interest among its salient pages/searches (an enum:
    # a 135M model does this sensibly, while its free-text names echo the prompt);
    # free: the model writes name + description (TnT-LLM's original form; needs a capable model);
    # auto: grounded for the embedded model, free for a configured endpoint (generate_taxonomy_file).
    proposal: str = "grounded"
    generic_share: float = 0.15  # pages in more of the sessions than this are navigation, not goals
    add_other: bool = True  # catch-all label so the labeller is never forced into a wrong label
    # Intents, not pages (see intent_review): co-occurrence of candidates over this many web sessions'
    # salient phrases (cheap, no LLM) decides which candidates are steps on many goals' paths
    # (apply form, contact) and which are parts of a bigger goal (a calculator of its product).
    cooccurrence_sessions: int = 4000
    merge_share: float = 0.3  # a part is seen with its (larger) goal in at least this share of sessions …
    merge_lift: float = 3.0  # … this many times chance or more (docs/decisions/0010-intent-labelling.md)
    keyword_min_sessions: int = 5  # a phrase becomes a goal's keyword by the same test if this often seen
    step_partners: int = 3  # a step is seen above chance with at least this many other candidates …
    step_share: float = 0.1  # … each in at least this share of its sessions …
    step_lift: float = 1.5  # … at this lift or more (generic-browsing pages co-occur at ~1) …
    # … in at least this share of the co-occurrence sessions together (and keyword_min_sessions): a
    # lift from a handful of shared sessions is noise (it had rejected investing and business banking).
    step_min_share: float = 0.005
    # … and with at least this share of the other candidates seen that often (set on the demo's SmolLM2
    # candidates: docs/decisions/0010-intent-labelling.md).
    step_partner_share: float = 0.25
    # Coverage-driven update rounds (TnT-LLM's update step aimed where the taxonomy is weak): after the
    # first sample, the co-occurrence sessions none of whose pages/searches is a label's name or keyword
    # propose goals, ``coverage_batch`` per round, until coverage gains less than ``min_coverage_gain``
    # or ``coverage_rounds`` rounds (grounded proposals only: free names never equal a page).
    coverage_rounds: int = 6
    coverage_batch: int = 16
    min_coverage_gain: float = 0.01
    random_state: int = 0

    def __post_init__(self) -> None:
        if self.hard_max_labels < self.max_labels:
            raise ConfigError(
                f"TaxonomyConfig.hard_max_labels: must be >= max_labels ({self.max_labels}), got {self.hard_max_labels}"
            )
        if self.coverage_rounds < 0:
            raise ConfigError(f"TaxonomyConfig.coverage_rounds: must be >= 0, got {self.coverage_rounds}")
        for name in ("n_sessions", "minibatch_size", "max_labels", "min_support", "coverage_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TaxonomyConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 < self.name_similarity <= 1:
            raise ConfigError(
                f"TaxonomyConfig.name_similarity: must be in (0, 1], got {self.name_similarity}"
            )
        if self.proposal not in (PROPOSAL_AUTO, *PROPOSAL_MODES):
            raise ConfigError(
                f"TaxonomyConfig.proposal: must be one of {(PROPOSAL_AUTO, *PROPOSAL_MODES)}, got {self.proposal!r}"
            )
        if not 0 < self.generic_share <= 1:
            raise ConfigError(f"TaxonomyConfig.generic_share: must be in (0, 1], got {self.generic_share}")


PROPOSE_SYSTEM = (
    "You are an analyst at a bank. You read a short summary of one visit to the bank's website "
    "and name the visitor's goal."
)
PROPOSE_USER = (
    "Visit: {summary}\n{known}"
    "What is the visitor's goal? Give a short name of 2 to 4 words and a one-sentence description."
)
PROPOSE_KNOWN = "Goals named so far: {names}. Reuse one of these names if it fits this visit.\n"
PROPOSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 40},
        "description": {"type": "string", "minLength": 3, "maxLength": 140},
    },
    "required": ["name", "description"],
    "additionalProperties": False,
}


def template_sha256(*parts: Any) -> str:
    """Hash of a prompt template (text pieces and schema), recorded as provenance."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


PROPOSE_PROMPT_SHA256 = template_sha256(PROPOSE_SYSTEM, PROPOSE_USER, PROPOSE_KNOWN, PROPOSE_SCHEMA)

GROUNDED_SYSTEM = "You are an analyst at a bank. You read a short summary of one visit to the bank's website."
GROUNDED_USER = "Visit: {summary}\nWhich of these is the visitor's main interest: {options}?"


def grounded_schema(options: list[str]) -> dict[str, Any]:
    """The answer can only be one of the options (llama.cpp turns the enum into a grammar)."""
    return {
        "type": "object",
        "properties": {"interest": {"type": "string", "enum": options}},
        "required": ["interest"],
        "additionalProperties": False,
    }


GROUNDED_PROMPT_SHA256 = template_sha256(GROUNDED_SYSTEM, GROUNDED_USER, grounded_schema(["<option>"]))

# Words that say nothing about *which* goal: dropped when comparing names (never from the names).
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "to",
        "for",
        "of",
        "and",
        "or",
        "in",
        "on",
        "at",
        "with",
        "about",
        "from",
        "by",
        "my",
        "your",
        "their",
        "his",
        "her",
        "its",
        "new",
        "existing",
        "visitor",
        "visitors",
        "user",
        "users",
        "customer",
        "customers",
        "client",
        "goal",
        "goals",
        "intent",
        "intention",
        "visit",
        "session",
        "bank",
        "banking",
        "website",
        "web",
        "site",
        "online",
        "page",
        "pages",
        "information",
        "info",
        "details",
        "looking",
        "look",
        "find",
        "finding",
        "get",
        "getting",
        "view",
        "viewing",
        "check",
        "checking",
        "learn",
        "learning",
        "explore",
        "exploring",
        "browse",
        "browsing",
        "research",
        "researching",
        "read",
        "reading",
        "see",
        "seeing",
        "more",
        "options",
        "option",
        "want",
        "wants",
        "need",
        "needs",
    ]
)
_SUFFIXES = (
    "ations",
    "ation",
    "ments",
    "ment",
    "ings",
    "ing",
    "isons",
    "ison",
    "ions",
    "ion",
    "ers",
    "er",
    "e",
)
_GENERIC_NAMES = frozenset({"", "unknown", "none", "other", "unclear", "n a", "na"})


def _stem(word: str) -> str:
    """Crude but deterministic: plural off, then one derivational suffix (compare/comparing/comparison
    -> compar). Only used to compare names, so over-stemming merely merges near-synonyms."""
    if word.endswith("s") and not word.endswith("ss") and len(word) > 4:
        word = word[:-1]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def name_tokens(name: str) -> frozenset[str]:
    """Content stems of a label name: what two names must share to mean the same goal."""
    words = re.findall(r"[a-z0-9]+", name.lower().replace("'", ""))
    return frozenset(_stem(w) for w in words if w not in _STOP and len(w) > 1)


def clean_name(name: str) -> str:
    """Tidy a model-written name: collapse spaces, strip quotes/punctuation, sentence case."""
    text = " ".join(re.sub(r"[^A-Za-z0-9&' /-]+", " ", name).split()).strip(" -/'")
    return text[:1].upper() + text[1:] if text else text


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40].strip("_")
    return slug if slug and slug[0].isalpha() else f"intent_{slug}".strip("_")


@dataclass
class Candidate:
    """A group of proposals judged to be the same goal."""

    tokens: set[str]
    names: Counter = field(default_factory=Counter)
    descriptions: dict[str, str] = field(default_factory=dict)  # first description seen per name
    sessions: list[str] = field(default_factory=list)
    seen_share: float = 0.0  # share of the co-occurrence sessions that show it (see intent_review)

    @property
    def support(self) -> int:
        return len(self.sessions)

    @property
    def name(self) -> str:
        # Most frequent surface form; ties go to the first one seen (a later one may be a typo of it).
        top = max(self.names.values())
        return next(name for name, n in self.names.items() if n == top)

    def absorb(self, other: Candidate) -> None:
        self.tokens |= other.tokens
        self.names.update(other.names)
        for k, v in other.descriptions.items():
            self.descriptions.setdefault(k, v)
        self.sessions.extend(other.sessions)


def _similarity(a: Candidate, b: Candidate, df: Counter) -> float:
    """Weighted Jaccard of content stems (a stem shared by many candidates counts less), or 1.0 for
    near-identical spellings (typos, plural forms)."""
    if difflib.SequenceMatcher(None, a.name.lower(), b.name.lower()).ratio() >= 0.9:
        return 1.0
    union = a.tokens | b.tokens
    if not union:
        return 0.0
    w = {t: 1.0 / max(df.get(t, 1), 1) for t in union}
    return sum(w[t] for t in a.tokens & b.tokens) / sum(w.values())


def merge_proposal(
    cands: list[Candidate], session_id: str, name: str, description: str, threshold: float
) -> None:
    """Add one proposal to the best-matching candidate, or start a new one."""
    name = clean_name(name)
    tokens = set(name_tokens(name))
    if not tokens or name.lower() in _GENERIC_NAMES:
        return  # "Unknown", "Visitor goal": no information; the session is left to "other"
    new = Candidate(tokens=tokens, names=Counter({name: 1}), descriptions={name: description.strip()})
    new.sessions.append(session_id)
    df = Counter(t for c in cands for t in c.tokens)
    best, best_sim = None, 0.0
    for c in cands:
        sim = _similarity(new, c, df)
        if sim > best_sim:
            best, best_sim = c, sim
    if best is not None and best_sim >= threshold:
        best.absorb(new)
    else:
        cands.append(new)


def review_candidates(
    cands: list[Candidate], config: TaxonomyConfig
) -> tuple[list[Candidate], dict[str, Any]]:
    """Consolidate the candidates: rare ones (few proposals *and* seldom seen) fold into their most
    similar larger one (any shared content stem) or are dropped; above ``max_labels`` a near-duplicate
    pair (names at ``name_similarity``) is merged first, else the least seen candidate goes — but a
    frequent goal (seen in ``frequent_share`` of the co-occurrence sessions) only beyond
    ``hard_max_labels``. How often a goal is *seen* decides, not how often the small proposal sample
    happened to name it. Returns kept candidates and what happened."""
    kept = sorted(cands, key=lambda c: (-c.support, c.name))
    folded: list[str] = []
    dropped: list[str] = []
    while kept:
        # Rare = few proposals *and* seldom seen: a goal the small sample under-proposed (account help,
        # in a demo: docs/decisions/0010-intent-labelling.md) is not folded away.
        rare = [c for c in kept if c.support < config.min_support and c.seen_share < config.min_seen_share]
        df = Counter(t for c in kept for t in c.tokens)
        if rare and len(kept) > 2:
            victim, strict = rare[-1], False
        elif len(kept) > config.max_labels:
            pair = _nearest_pair(kept, df, config.name_similarity)
            by_seen = sorted(kept, key=lambda c: (c.seen_share, c.support, c.name))
            if pair is not None:
                victim, strict = pair, True
            elif by_seen[0].seen_share < config.frequent_share or len(kept) > config.hard_max_labels:
                victim, strict = by_seen[0], True
            else:
                break  # every candidate is a frequent goal: keep them (up to hard_max_labels)
        else:
            break
        kept.remove(victim)
        df = Counter(t for c in kept for t in c.tokens)
        floor = config.name_similarity if strict else 0.0
        scored = [(_similarity(victim, c, df), c.support, c) for c in kept]
        # An overflow victim only joins a near-duplicate ("loan calculator" is not "auto loan").
        scored = [s for s in scored if (s[0] >= floor if strict else s[0] > 0)]
        if scored:
            target = max(scored, key=lambda s: (s[0], s[1]))[2]
            target.absorb(victim)
            folded.append(f"{victim.name} -> {target.name}")
        else:
            dropped.append(victim.name)
        kept.sort(key=lambda c: (-c.support, c.name))
    return kept, {"folded": folded, "dropped": dropped}


def _nearest_pair(kept: list[Candidate], df: Counter, threshold: float) -> Candidate | None:
    """The smaller of the most similar pair whose names are near-duplicates (similarity at
    ``threshold`` or more), or None: what an over-full taxonomy merges before it drops anything."""
    best, best_sim = None, threshold
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            sim = _similarity(a, b, df)
            if sim >= best_sim:
                small = min((a, b), key=lambda c: (c.seen_share, c.support))
                best, best_sim = small, sim
    return best


def candidate_cooccurrence(
    cands: list[Candidate], session_phrases: list[list[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """(sessions per candidate [k], sessions with both [k, k]) over ``session_phrases``: a session
    shows a candidate when one of its phrases is one of the candidate's names."""
    owner: dict[str, int] = {}
    for i, c in enumerate(cands):
        for name in c.names:
            owner.setdefault(name.lower(), i)
    k = len(cands)
    n = np.zeros(k, dtype=np.int64)
    both = np.zeros((k, k), dtype=np.int64)
    for phrases in session_phrases:
        hit = sorted({owner[p.lower()] for p in phrases if p.lower() in owner})
        if hit:
            n[hit] += 1
            both[np.ix_(hit, hit)] += 1
    return n, both


def _shares(
    cands: list[Candidate], session_phrases: list[list[str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sessions per candidate, share[i, j] = P(j shown | i shown), lift[i, j] = share / P(j))."""
    n, both = candidate_cooccurrence(cands, session_phrases)
    share = both / np.maximum(n, 1)[:, None]
    np.fill_diagonal(share, 0.0)
    base = n / max(len(session_phrases), 1)
    return n, share, share / np.maximum(base, 1e-12)[None, :]


def intent_review(
    cands: list[Candidate], session_phrases: list[list[str]], config: TaxonomyConfig
) -> tuple[list[Candidate], dict[str, list[str]]]:
    """Make candidates intents, not pages, from how they co-occur in sessions (lift = how much more
    often than chance). A **part** of a goal — a product's calculator or comparison page — is seen
    with one larger candidate in at least ``merge_share`` of its sessions at a lift of ``merge_lift``
    or more, and joins it (a near-duplicate that the names alone do not reveal). A **step** — an
    application form, the contact page — is then seen, above chance, with ``step_partners`` or more
    other candidates, each in at least ``step_share`` of its sessions: it says where a visitor is on
    many goals' paths, not what they want, and is rejected as a label."""
    notes: dict[str, list[str]] = {"merged_parts": [], "rejected_steps": []}
    if len(cands) < 2 or not session_phrases:
        return cands, notes
    n, share, lift = _shares(cands, session_phrases)
    parent = list(range(len(cands)))
    for i in sorted(range(len(cands)), key=lambda i: (n[i], cands[i].name)):  # smallest joins larger
        ok = [
            j
            for j in range(len(cands))
            if j != i
            and parent[j] == j
            and n[j] >= n[i]
            and share[i, j] >= config.merge_share
            and lift[i, j] >= config.merge_lift
        ]
        if ok:
            j = max(ok, key=lambda j: (lift[i, j], n[j]))
            parent[i] = j
            notes["merged_parts"].append(
                f"{cands[i].name} -> {cands[j].name} ({share[i, j]:.0%} of its sessions)"
            )
    for i in range(len(cands)):  # follow chains (a part of a part)
        while parent[parent[i]] != parent[i]:
            parent[i] = parent[parent[i]]
    groups = [i for i in range(len(cands)) if parent[i] == i]
    for i in range(len(cands)):
        if parent[i] != i:
            cands[parent[i]].absorb(cands[i])
    merged = [cands[i] for i in groups]
    n, share, lift = _shares(merged, session_phrases)
    for i, c in enumerate(merged):
        c.seen_share = float(n[i] / len(session_phrases))
    steps = _steps(n, share, lift, config, len(session_phrases))
    for i, partners in steps:
        seen = ", ".join(merged[j].name for j in partners[:4])
        notes["rejected_steps"].append(
            f"{merged[i].name} (seen with {seen}: a step on their paths, not a goal)"
        )
    step_ids = {i for i, _ in steps}
    notes["step_phrases"] = sorted({p.lower() for i in step_ids for p in merged[i].names})
    kept = [c for i, c in enumerate(merged) if i not in step_ids]
    notes["keywords_added"] = _add_part_keywords(kept, session_phrases, config)
    return kept, notes


def _steps(
    n: np.ndarray, share: np.ndarray, lift: np.ndarray, config: TaxonomyConfig, n_sessions: int
) -> list[tuple[int, list[int]]]:
    """Candidates that are steps, with the partners they were seen with, most connected first. Two
    candidates are partners when either is seen in ``step_share`` of the other's sessions at
    ``step_lift``: the application form is in half of the mortgage visits, though mortgage is in only
    an eighth of the form's. The hub with the most partners (ties: the more frequent) is a step and
    is removed before partners are counted again, so a goal is not rejected for being seen with the
    steps on its own path (which had removed mortgage and savings in a demo)."""
    either = np.maximum(share, share.T)  # P(j | i) or P(i | j)
    both = share * n[:, None]  # sessions showing both: a lift from a handful of them is noise
    enough = both >= max(config.keyword_min_sessions, config.step_min_share * n_sessions)
    partner = (either >= config.step_share) & (lift >= config.step_lift) & enough
    np.fill_diagonal(partner, False)
    alive = np.ones(len(n), dtype=bool)
    out: list[tuple[int, list[int]]] = []
    sizable = n >= max(config.keyword_min_sessions, config.step_min_share * n_sessions)
    while alive.any():
        counts = np.where(alive, (partner & alive[None, :]).sum(axis=1), -1)
        i = max(np.flatnonzero(alive), key=lambda i: (counts[i], n[i]))
        # A step is on the path of a good part of all goals; goals themselves are seen with a few
        # others at lifts of 1.5-2 (sessions mix a need with other pages), which is no step.
        others = int((alive & sizable).sum()) - 1
        if counts[i] < max(config.step_partners, int(np.ceil(config.step_partner_share * others))):
            break
        mates = np.flatnonzero(partner[i] & alive)
        out.append((int(i), [int(j) for j in mates[np.argsort(-either[i, mates])]]))
        alive[i] = False
    return out


def _add_part_keywords(
    kept: list[Candidate], session_phrases: list[list[str]], config: TaxonomyConfig
) -> list[str]:
    """Phrases no session's proposal named but that are parts of a kept goal by the same test (a
    product's calculator, its typical searches) become that goal's keywords, so the labeller's
    shortlist recognises them. Only phrases in ``keyword_min_sessions`` sessions or more count."""
    known = {name.lower() for c in kept for name in c.names}
    counts = Counter(p.lower() for ps in session_phrases for p in set(ps))
    floor = config.keyword_min_sessions
    extra = [p for p, k in counts.most_common() if k >= floor and p not in known]
    if not extra or not kept:
        return []
    probes = [Candidate(tokens=set(), names=Counter({p: 1})) for p in extra]
    n, share, lift = _shares(probes + kept, session_phrases)
    added = []
    for i, phrase in enumerate(extra):
        cols = np.arange(len(probes), len(probes) + len(kept))
        ok = [j for j in cols if share[i, j] >= config.merge_share and lift[i, j] >= config.merge_lift]
        if ok:
            j = max(ok, key=lambda j: lift[i, j])
            goal = kept[j - len(probes)]
            goal.names[phrase] += 0  # a keyword, never the display name (that is the most proposed)
            added.append(f"{phrase} -> {goal.name}")
            continue
        # The general form of one goal's proposed name ("mortgage" of "mortgage calculator", the
        # product page of the calculator the model chose) is that goal's, when no other goal claims it.
        toks = name_tokens(phrase)
        owners = [
            c for c in kept if toks and any(toks <= name_tokens(m) for m, k in c.names.items() if k > 0)
        ]
        if len(owners) == 1:
            owners[0].names[phrase] += 0
            added.append(f"{phrase} -> {owners[0].name} (general form)")
    return added


def propose_messages(summary: str, known: list[str]) -> list[dict[str, str]]:
    known_text = PROPOSE_KNOWN.format(names="; ".join(known)) if known else ""
    return [
        {"role": "system", "content": PROPOSE_SYSTEM},
        {"role": "user", "content": PROPOSE_USER.format(summary=summary, known=known_text)},
    ]


def grounded_messages(summary: str, options: list[str]) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": GROUNDED_SYSTEM},
        {"role": "user", "content": GROUNDED_USER.format(summary=summary, options=", ".join(options))},
    ]


def grounded_options(phrases: list[str], cands: list[Candidate], show_known: int) -> list[str]:
    """The session's salient phrases, plus current candidate names that share a content stem with
    them (the update step: an existing goal can be reused instead of a near-duplicate)."""
    options = list(dict.fromkeys(p.lower() for p in phrases))
    stems = set().union(*(name_tokens(p) for p in options)) if options else set()
    ranked = sorted(cands, key=lambda c: (-c.support, c.name))[:show_known]
    for c in ranked:
        if c.tokens & stems and c.name.lower() not in options:
            options.append(c.name.lower())
    return options


def sample_ids(ids: list[str], n: int, random_state: int) -> list[str]:
    """A reproducible sample (order matters: it defines the minibatches)."""
    ids = sorted(ids)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(ids))
    return [ids[i] for i in order[: min(n, len(ids))]]


def _display_names(
    kept: list[Candidate], all_cands: list[Candidate], seen: Counter | None = None
) -> dict[int, str]:
    """Grounded names are page names. Of a goal's proposed names the one most sessions show is its
    name ("Mortgage", not its part "Mortgage calculator" that a few more proposals happened to pick;
    ``seen``: sessions per lower-cased phrase), and a leading word that starts 3+ candidate names of a
    site-map family ("product …") is dropped, when something is left and names stay unique."""
    seen = seen or Counter()

    def base(c: Candidate) -> str:
        proposed = [name for name, k in c.names.items() if k > 0] or [c.name]
        stems = [name_tokens(name) for name in proposed]
        proposed += [  # a general form of a proposed name ("Mortgage" of "Mortgage calculator")
            name
            for name, k in c.names.items()
            if k == 0 and name_tokens(name) and any(name_tokens(name) <= t for t in stems)
        ]
        return max(proposed, key=lambda name: (seen[name.lower()], c.names[name], name == c.name))

    rests: dict[str, list[frozenset[str]]] = {}
    for c in all_cands:
        first, _, rest = c.name.lower().partition(" ")
        if rest:
            rests.setdefault(first, []).append(name_tokens(rest))

    def family(first: str) -> bool:
        # "product mortgage / product savings / product credit card": the rests share nothing. "auto
        # loan / auto loan calculator / auto loan rates" is one topic, not a family: keep "Auto loan".
        got = rests.get(first, [])
        return len(got) >= 3 and not frozenset.intersection(*got)

    out: dict[int, str] = {}
    for i, c in enumerate(kept):
        name = base(c)
        first, _, rest = name.partition(" ")
        out[i] = clean_name(rest) if rest and family(first.lower()) else clean_name(name)
    if len(set(out.values())) < len(out):
        return {i: c.name for i, c in enumerate(kept)}
    return out


# More than this share of failed LLM calls fails a taxonomy or labelling run (exit code 5, nothing
# written): labels from the few calls that worked would describe the endpoint's outage, not the visits.
MAX_FAILED_SHARE = 0.5


@dataclass
class _Proposer:
    """One generation run's proposal bookkeeping: the candidates so far and the call counters."""

    client: Any
    config: TaxonomyConfig
    texts: dict[str, str]  # session id -> summary
    phrases: dict[str, list[str]]  # session id -> salient phrases (grounded options)
    progress: bool = True
    cands: list[Candidate] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # ok, failed, forced (one option), no_phrase
    failures: Counter = field(default_factory=Counter)

    def round(self, batch: list[str], label: str, exclude: frozenset[str] = frozenset()) -> None:
        """Propose a goal for each session of ``batch`` seeing the current candidates, then merge the
        answers in. ``exclude``: phrases judged steps, no longer offered as a goal (grounded)."""
        from clicks2intent.intent.llm.client import JsonRequest, failure_reason

        config, cands = self.config, self.cands
        asks: list[tuple[str, JsonRequest]] = []
        for sid in batch:
            if config.proposal == "free":
                ranked = sorted(cands, key=lambda c: (-c.support, c.name))
                known = [c.name for c in ranked[: config.show_known]]
                messages = propose_messages(self.texts[sid], known)
                asks.append((sid, JsonRequest(messages, PROPOSE_SCHEMA, name="intent_proposal")))
                continue
            own = [p for p in self.phrases[sid] if p.lower() not in exclude]
            options = grounded_options(own, cands, config.show_known)
            if not options:
                self.counts["no_phrase"] += 1  # only navigation pages: no goal to name, left to "other"
            elif len(options) == 1:
                self.counts["forced"] += 1  # the enum has one value: the answer is known without a call
                merge_proposal(cands, sid, options[0], "", config.grounded_name_similarity)
            else:
                messages = grounded_messages(self.texts[sid], options)
                asks.append((sid, JsonRequest(messages, grounded_schema(options), name="interest")))
        show = label if self.progress else None
        results = self.client.map_json([r for _, r in asks], progress=show) if asks else []
        for (sid, _), res in zip(asks, results, strict=True):
            if res.status != "ok":
                self.counts["failed"] += 1
                self.failures[failure_reason(res.error)] += 1
                continue
            self.counts["ok"] += 1
            if config.proposal == "free":
                merge_proposal(cands, sid, res.data["name"], res.data["description"], config.name_similarity)
            else:
                merge_proposal(cands, sid, res.data["interest"], "", config.grounded_name_similarity)
        if results and not self.counts["ok"]:  # every call so far failed: the endpoint, not the data
            self.check_failures(every=True)

    def check_failures(self, every: bool = False) -> None:
        """Raise :class:`~clicks2intent.errors.LLMUnavailableError` when every proposal call failed
        (``every``: checked after the first round that asked, so a dead endpoint costs one round) or
        more than :data:`MAX_FAILED_SHARE` of them did."""
        ok, failed = self.counts["ok"], self.counts["failed"]
        if failed and (failed == ok + failed if every else failed > MAX_FAILED_SHARE * (ok + failed)):
            reason, n = self.failures.most_common(1)[0]
            raise LLMUnavailableError(
                f"generate: {failed} of {ok + failed} LLM calls failed"
                f"{'' if every else f' (more than {MAX_FAILED_SHARE:.0%})'}, commonest reason: "
                f"{' '.join(str(reason).split())[:200]} (x{n}); nothing written"
            )


def _reviewed(
    cands: list[Candidate], session_phrases: list[list[str]], config: TaxonomyConfig
) -> tuple[list[Candidate], dict[str, Any]]:
    """What the taxonomy would be now (intent review, then consolidation), on copies: the candidates
    keep growing in later rounds."""
    kept, notes = intent_review(copy.deepcopy(cands), session_phrases, config)
    kept, review = review_candidates(kept, config)
    return kept, {**review, **notes}


def covered_sessions(kept: list[Candidate], session_phrases: list[list[str]]) -> np.ndarray:
    """Per session: does one of its phrases equal a kept label's name or keyword (what the labeller's
    rule matches at full weight)? A session without this is one the taxonomy describes poorly: it
    would fall to "other" or to a weak word overlap."""
    names = {n.lower() for c in kept for n in c.names}
    return np.array([any(p.lower() in names for p in ps) for ps in session_phrases], dtype=bool)


def _coverage_rounds(
    proposer: _Proposer, pool_ids: list[str], pool_phrases: list[list[str]], asked: set[str]
) -> dict[str, Any]:
    """Update rounds aimed at the sessions the current taxonomy covers worst: each round, sessions of
    the pool none of whose phrases is a label's name or keyword (and that show something besides the
    steps) propose a goal, until coverage (share of pool sessions with a phrase that are covered)
    gains less than ``min_coverage_gain``. A goal the first sample missed is in exactly those."""
    config = proposer.config
    has_phrase = np.array([bool(ps) for ps in pool_phrases], dtype=bool)
    history: list[float] = []
    asked_in_rounds = 0
    for r in range(config.coverage_rounds + 1):
        kept, notes = _reviewed(proposer.cands, pool_phrases, config)
        covered = covered_sessions(kept, pool_phrases)
        history.append(round(float(covered[has_phrase].mean()) if has_phrase.any() else 1.0, 4))
        if r == config.coverage_rounds or (
            len(history) >= 2 and history[-1] - history[-2] < config.min_coverage_gain
        ):
            break
        steps = frozenset(notes.get("step_phrases", []))
        todo = [
            sid
            for sid, ps, cov in zip(pool_ids, pool_phrases, covered, strict=True)
            if not cov and sid not in asked and any(p.lower() not in steps for p in ps)
        ]
        if not todo:
            break
        batch = sample_ids(todo, config.coverage_batch, config.random_state + 2 + r)
        asked.update(batch)
        asked_in_rounds += len(batch)
        proposer.round(batch, f"taxonomy coverage round {r + 1}", exclude=steps)
    return {"coverage": history, "coverage_rounds": len(history) - 1, "coverage_sessions": asked_in_rounds}


def generate_taxonomy(
    summaries: pd.DataFrame,
    client: Any,
    config: TaxonomyConfig | None = None,
    version: int = 1,
    progress: bool = True,
    session_phrases: list[list[str]] | None = None,
    pool: pd.DataFrame | None = None,
) -> Taxonomy:
    """Run generate → update → review over minibatches of ``summaries`` (from
    :func:`clicks2intent.intent.summaries.summarize_sessions`, with its ``phrases`` column for grounded
    proposals) using ``client`` (an :class:`~clicks2intent.intent.llm.client.LLMClient`), then
    coverage-driven update rounds (grounded) over ``pool``: summaries of many sessions whose phrases
    also decide steps and parts (``session_phrases`` is the phrases-only form of it, with no coverage
    rounds). Neither given: the rows of ``summaries`` beyond the sample are the pool."""
    from clicks2intent.intent.summaries import PHRASES, SUMMARY

    config = config or TaxonomyConfig()
    if config.proposal not in PROPOSAL_MODES:
        raise ConfigError(
            f"TaxonomyConfig.proposal: generate_taxonomy needs one of {PROPOSAL_MODES}, got {config.proposal!r} "
            "(generate_taxonomy_file resolves auto)"
        )
    if summaries.empty:
        raise ContractError("summaries: no sessions to build a taxonomy from (are there web sessions?)")
    if config.proposal == "grounded" and PHRASES not in summaries.columns:
        raise ValueError(f"summaries: grounded proposals need the {PHRASES!r} column (summarize_sessions)")
    ids = summaries[C.SESSION_ID].astype(str).tolist()
    by_id = dict(zip(ids, summaries[SUMMARY], strict=True))
    phrases = dict(zip(ids, summaries[PHRASES], strict=True)) if PHRASES in summaries.columns else {}
    # Rows beyond n_sessions are sampled; a pre-sampled frame keeps its row order, which defines the
    # minibatches (so a larger sample extends a smaller one and reuses its cached answers).
    chosen = sample_ids(ids, config.n_sessions, config.random_state) if len(ids) > config.n_sessions else ids
    if pool is None and session_phrases is None:
        pool = summaries
    if pool is not None:
        pool_ids = pool[C.SESSION_ID].astype(str).tolist()
        by_id.update(zip(pool_ids, pool[SUMMARY], strict=True))
        phrases.update(zip(pool_ids, [list(p) for p in pool[PHRASES]], strict=True))
        session_phrases = [list(phrases[s]) for s in pool_ids]
    t0 = time.perf_counter()
    proposer = _Proposer(client, config, by_id, phrases, progress)
    batches = [chosen[i : i + config.minibatch_size] for i in range(0, len(chosen), config.minibatch_size)]
    for b, batch in enumerate(batches):
        proposer.round(batch, f"taxonomy minibatch {b + 1}/{len(batches)}")
    cooc = session_phrases if session_phrases is not None else [list(phrases.get(s, [])) for s in chosen]
    coverage: dict[str, Any] = {}
    if config.proposal == "grounded" and pool is not None and config.coverage_rounds > 0:
        coverage = _coverage_rounds(proposer, pool_ids, cooc, set(chosen))
    proposer.check_failures()
    cands, counts, failures = proposer.cands, proposer.counts, proposer.failures
    n_candidates = len(cands)
    all_cands = list(cands)
    # Co-occurrence over many sessions (given) or the generation sample itself (no call either way).
    cands, intent_notes = intent_review(cands, cooc, config)
    kept, review = review_candidates(cands, config)
    review.update(intent_notes)
    if not kept and not config.add_other:
        raise LLMError(f"taxonomy: the model produced no usable label from {len(chosen)} sessions")
    names = (
        _display_names(kept, all_cands, Counter(p.lower() for ps in cooc for p in set(ps)))
        if config.proposal == "grounded"
        else {i: c.name for i, c in enumerate(kept)}
    )
    labels: list[Label] = []
    support: dict[str, int] = {}
    for i, c in enumerate(kept):
        name = names[i]
        lid = slugify(name)
        while lid in support or lid == OTHER_ID:
            lid = f"{lid}_2"
        if config.proposal == "grounded":
            typical = ", ".join(n.lower() for n, _ in c.names.most_common(4))
            description = f"Visits mainly about {name.lower()}; typical pages and searches: {typical}."
        else:
            description = c.descriptions.get(c.name, "")
        keywords = [k.lower() for k, _ in sorted(c.names.items(), key=lambda kv: -kv[1])]
        labels.append(Label(lid, name, description, sorted(c.sessions)[:3], keywords))
        support[lid] = c.support
    if config.add_other:
        covered = {s for c in kept for s in c.sessions}
        rest = sorted(s for s in chosen if s not in covered)
        labels.append(Label(OTHER_ID, OTHER_NAME, OTHER_DESCRIPTION, rest[:3]))
        support[OTHER_ID] = len(rest)
    ledger = client.ledger.to_dict() if hasattr(client, "ledger") else {}
    prompt_hash = GROUNDED_PROMPT_SHA256 if config.proposal == "grounded" else PROPOSE_PROMPT_SHA256
    return Taxonomy(
        version=version,
        status=STATUS_DRAFT,
        labels=labels,
        model=getattr(getattr(client, "settings", None), "model", ""),
        prompts={f"propose_{config.proposal}": prompt_hash},
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        generation={
            "config": asdict(config),
            "n_sessions": len(chosen),
            "n_minibatches": len(batches),
            "proposals_ok": counts["ok"],
            "proposals_failed": counts["failed"],
            "proposals_forced": counts["forced"],
            "sessions_without_salient_phrase": counts["no_phrase"],
            "failure_reasons": dict(failures),
            "n_candidates": n_candidates,
            **coverage,
            "review": review,
            "support": support,
            "seconds": round(time.perf_counter() - t0, 2),
            "ledger": ledger,
        },
    )


# --- review --------------------------------------------------------------------------------------
def render_review(
    taxonomy: Taxonomy,
    summaries: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    n_examples: int = 3,
) -> str:
    """Markdown for the people who approve the taxonomy: labels, how often each is used (from LLM
    labels when given, else the generation sample's support) and example sessions."""
    from clicks2intent.intent.summaries import SUMMARY

    freq_source = "generation sample"
    freq: dict[str, int] = dict(taxonomy.generation.get("support", {}))
    examples: dict[str, list[str]] = {lab.id: list(lab.examples) for lab in taxonomy.labels}
    failed = 0
    if labels is not None and not labels.empty:
        ok = labels[labels["status"] == "ok"]
        failed = int((labels["status"] != "ok").sum())
        freq = ok["label_id"].value_counts().to_dict()
        freq_source = f"LLM labels ({len(labels)} sessions, {failed} failed)"
        for lid, g in ok.groupby("label_id", sort=True):
            examples[str(lid)] = list(
                dict.fromkeys(examples.get(str(lid), []) + sorted(g[C.SESSION_ID].astype(str)))
            )
    total = max(sum(freq.values()), 1)
    text_by_id = (
        dict(zip(summaries[C.SESSION_ID].astype(str), summaries[SUMMARY], strict=True))
        if summaries is not None
        else {}
    )
    lines = [
        f"# Intent taxonomy {taxonomy.version_string} — {taxonomy.status}",
        "",
        f"- model: `{taxonomy.model or 'unknown'}`; created {taxonomy.created_at or 'unknown'}",
        f"- prompts: {', '.join(f'{k} `{v[:12]}`' for k, v in taxonomy.prompts.items()) or 'unknown'}",
        f"- frequencies from: {freq_source}",
    ]
    if taxonomy.edited:
        lines.append(
            "- **edited by hand since it was written**: labels carry the version " + taxonomy.version_string
        )
    if taxonomy.status == STATUS_APPROVED:
        lines.append(f"- approved {taxonomy.approved_at} by {taxonomy.approved_by or 'unknown'}")
    else:
        lines.append("- to approve: edit names/descriptions if needed, then `c2i taxonomy review --approve`")
    lines += ["", "| id | name | description | sessions | share |", "|---|---|---|---:|---:|"]
    for lab in taxonomy.labels:
        n = int(freq.get(lab.id, 0))
        desc = lab.description.replace("|", "/")
        lines.append(f"| `{lab.id}` | {lab.name} | {desc} | {n} | {n / total:.1%} |")
    lines += ["", "## Example sessions", ""]
    for lab in taxonomy.labels:
        lines.append(f"### `{lab.id}` — {lab.name}")
        shown = examples.get(lab.id, [])[:n_examples]
        if not shown:
            lines.append("- (no example)")
        for sid in shown:
            lines.append(f"- `{sid}`: {text_by_id.get(sid, '(summary not loaded: pass --events)')}")
        lines.append("")
    return "\n".join(lines)


def approve(taxonomy: Taxonomy, approver: str | None) -> Taxonomy:
    """Mark approved; hand edits become a new version so old labels are never confused with new ones."""
    if taxonomy.edited:
        taxonomy.version += 1
    taxonomy.status = STATUS_APPROVED
    taxonomy.approved_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    taxonomy.approved_by = approver
    return taxonomy


def describe_taxonomy(taxonomy: Taxonomy) -> str:
    """A few lines for a terminal: version, status, model, and each label with its support."""
    support = taxonomy.generation.get("support", {})
    lines = [f"taxonomy {taxonomy.version_string} ({taxonomy.status}), model {taxonomy.model}:"]
    lines += [f"  {lab.id:<32} {lab.name:<36} support {support.get(lab.id, '-')}" for lab in taxonomy.labels]
    return "\n".join(lines)


# --- the steps behind `c2i taxonomy generate` and `c2i taxonomy review` ----------------------------
def _next_version(out: Path, force: bool) -> int:
    """The version a new file at ``out`` gets. An approved or hand-edited file is only replaced with
    ``force``, and then kept as a backup; an untouched draft is simply replaced."""
    if not out.exists():
        return 1
    old = Taxonomy.load(out)
    version = old.version + 1
    if old.status == STATUS_APPROVED or old.edited:
        why = "approved" if old.status == STATUS_APPROVED else "edited by hand"
        if not force:
            raise ConfigError(
                f"{out} is {why} (version {old.version_string}): not replacing it. Use --force to "
                "write a new version (the old file is kept as a backup), or --out another path."
            )
        backup = out.with_name(f"{out.stem}.v{old.version}.bak{out.suffix}")
        shutil.copy2(out, backup)
        logger.info("kept the previous %s taxonomy as %s", old.status, backup)
    logger.info("replacing %s (%s, %s) with version %d", out, old.version_string, old.status, version)
    return version


def generate_taxonomy_file(
    events: str | Path,
    out: str | Path = ARTIFACTS.taxonomy,
    config: TaxonomyConfig | None = None,
    llm: LLMOptions | None = None,
    force: bool = False,
) -> Taxonomy:
    """Summarise a sample of the web sessions of ``events``, run :func:`generate_taxonomy` on the
    configured LLM (the embedded server when none is) and write a draft ``taxonomy.yaml`` to ``out``.

    ``config.proposal == "auto"`` picks ``grounded`` for the embedded 135M model (it can pick, not
    write, names) and ``free`` for a configured endpoint. Refuses (:class:`ConfigError`) to replace an
    approved or hand-edited file unless ``force``. Writes nothing and raises
    :class:`~clicks2intent.errors.LLMUnavailableError` when the LLM calls fail (see
    :meth:`_Proposer.check_failures`).
    """
    out = Path(out)
    config = config or TaxonomyConfig()
    llm = llm or LLMOptions()
    with exclusive(out):  # one generation per file, held while the LLM works
        return _generate_into(events, out, config, llm, force)


def _generate_into(
    events: str | Path, out: Path, config: TaxonomyConfig, llm: LLMOptions, force: bool
) -> Taxonomy:
    """:func:`generate_taxonomy_file` once ``out`` is held."""
    from clicks2intent.data.contract import read_events
    from clicks2intent.intent.llm.server import llm_client
    from clicks2intent.intent.summaries import (
        common_prefixes,
        generic_pages,
        summarize_sessions,
        web_session_ids,
    )

    version = _next_version(out, force)
    if config.proposal == PROPOSAL_AUTO:
        config = replace(config, proposal="grounded" if llm.uses_embedded_server else "free")
    frame = read_events(events)
    generic = generic_pages(frame, config.generic_share)
    prefixes = common_prefixes(frame[C.PAGE_TYPE].unique())
    chosen = sample_ids(web_session_ids(frame), config.n_sessions, config.random_state)
    summaries = summarize_sessions(frame, session_ids=chosen, generic=generic, prefixes=prefixes)
    summaries = summaries.set_index(C.SESSION_ID).loc[chosen].reset_index()  # sample order = minibatches
    cooc_ids = sample_ids(web_session_ids(frame), config.cooccurrence_sessions, config.random_state + 1)
    cooc = summarize_sessions(frame, session_ids=cooc_ids, generic=generic, prefixes=prefixes)
    with llm_client(llm) as client:
        taxonomy = generate_taxonomy(summaries, client, config, version=version, pool=cooc)
    taxonomy.generation["events"] = str(events)
    taxonomy.generation["generic_pages"] = sorted(generic)
    taxonomy.generation["generic_prefixes"] = sorted(prefixes)
    taxonomy.save(out, lock=False)
    return taxonomy


@dataclass
class Review:
    """What :func:`review_taxonomy` did: the (possibly just approved) taxonomy and its Markdown."""

    taxonomy: Taxonomy
    markdown: str
    approved: bool = False  # True when this call marked it approved (and rewrote the file)
    out: Path | None = None  # where the Markdown was written; None: not written


def review_taxonomy(
    path: str | Path = ARTIFACTS.taxonomy,
    events: str | Path | None = None,
    labels: str | Path | None = None,
    out: str | Path | None = None,
    approver: str | None = None,
    mark_approved: bool = False,
) -> Review:
    """Render the taxonomy at ``path`` for review (example summaries from ``events``, frequencies from
    the LLM ``labels`` parquet), write it to ``out`` when given, and, with ``mark_approved``, mark the file
    approved by ``approver`` first."""
    taxonomy = Taxonomy.load(path)
    if mark_approved:
        approve(taxonomy, approver)
        taxonomy.save(path)
    label_frame = pd.read_parquet(labels) if labels else None
    summaries = None
    if events:
        from clicks2intent.data.contract import read_events
        from clicks2intent.intent.summaries import summarize_sessions

        wanted = {s for lab in taxonomy.labels for s in lab.examples}
        if label_frame is not None:
            wanted |= set(label_frame[C.SESSION_ID].astype(str))
        summaries = summarize_sessions(read_events(events), session_ids=wanted, web_only=False)
    text = render_review(taxonomy, summaries, label_frame)
    if out:
        write_text(out, text + "\n")
    return Review(taxonomy, text, mark_approved, Path(out) if out else None)
