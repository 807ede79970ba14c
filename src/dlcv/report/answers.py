"""The student's own words in the report: each year's questions, their template, and the answers read back.

The answers file (``--answers``, filled in from ``--answers-template``) is Markdown: ``name:`` and ``student_id:``
lines, then per question a ``## KEY`` heading (``## P1.3``) with the answer below it, in English or Chinese.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dlcv.errors import DlcvError
from dlcv.report.document import Heading, Markdown, Section, Text


@dataclass(frozen=True)
class Question:
    """One question of a year's report."""

    key: str  # P1.3: the problem as the year numbers it, and the question's number
    section: str  # the report's section it belongs to (dlcv.report.sections.SECTIONS)
    text: str
    shows: str  # what dlcv places in that section for it
    topics: tuple[str, ...] = ()  # the blocks it gathers: those whose topic is one of these, or starts "TOPIC:"


CLASSIFY = [
    ("Draw the network architecture of model A or model B.", "each run's layer table and block diagram",
     ("architecture",)),
    ("Report the accuracy of model A and model B on the validation set.", "the accuracy table beside the reports'",
     ("accuracy",)),
    ("Report the implementation details of model A.", "each run's recipe table and curves", ("recipe:model_a",)),
    ("Report the alternative model or method in B, and describe its difference from model A.",
     "model B's recipe and architecture beside model A's", ("recipe:model_b",)),
    ("Visualise the learned visual representations of model A on the validation set by PCA, and briefly explain "
     "the result.", "the PCA panels with their 10-NN accuracy and silhouette", ("pca",)),
    ("Visualise the learned visual representations of model A on the validation set by t-SNE at three epochs "
     "(first, middle, last), and briefly explain the result.", "the t-SNE panels at the first, middle and last epoch",
     ("tsne",)),
]
SEGMENT = [
    ("Draw the network architecture of the VGG16-FCN32s model (model A).", "FCN32s's layer table and diagram",
     ("recipe:fcn32s", "architecture:fcn32s")),
    ("Draw the network architecture of the improved model (model B) and explain how it differs from model A.",
     "the improved model's layer table and diagram", ("recipe:improved", "architecture:improved")),
    ("Report the mIoUs of the two models on the validation set.", "the mIoU table beside the reports'",
     ("accuracy",)),
    ("Show the predicted segmentation masks of three validation images at an early, a middle and the final stage "
     "of the improved model's training.", "the masks through training", ("masks",)),
]
SSL = [
    ("Describe the implementation details of the self-supervised learning method (method, augmentation, learning "
     "rate schedule, optimiser, batch size).", "the BYOL recipe and its loss and kNN curves", ("recipe:byol",)),
    ("Complete the table of settings A-E on Office-Home and discuss it.", "the A-E table with the reports'",
     ("table",)),
]
SAM = [("Run Segment Anything on three validation images; show the resulting images and describe the method used.",
        "the SAM overlays and, where measured, the refinement's mIoU", ("sam",))]
TSNE_C = [("Visualise setting C's second-last layer on the training set by t-SNE at the first and last epochs, and "
           "explain the result.", "setting C's t-SNE at its first and last snapshot", ("tsne",))]


def _problem(number: int, section: str, items, start: int = 1) -> list[Question]:
    """Number ``(text, shows, topics)`` items as questions ``P{number}.{start}`` onwards of ``section``."""
    return [Question(f"P{number}.{i}", section, text, shows, topics)
            for i, (text, shows, topics) in enumerate(items, start=start)]


QUESTIONS = {
    2021: [*_problem(1, "classification", [CLASSIFY[0], CLASSIFY[1], CLASSIFY[5]]),
           *_problem(2, "segmentation", SEGMENT)],
    2022: [*_problem(1, "classification", CLASSIFY), *_problem(2, "segmentation", SEGMENT)],
    2023: [*_problem(1, "classification", CLASSIFY), *_problem(2, "ssl", SSL), *_problem(3, "segmentation", SEGMENT)],
    2024: [*_problem(1, "ssl", [*SSL, *TSNE_C]), *_problem(2, "segmentation", SEGMENT),
           *_problem(2, "sam", SAM, start=5)],  # 2024's P2 asks for SAM as its fifth question
}


def questions(year: int) -> list[Question]:
    """Return the questions of ``year``'s report, in order.

    Raises:
        DlcvError: if the year is not one of ``QUESTIONS``.
    """
    if year not in QUESTIONS:
        raise DlcvError(f"--year {year}: choose among {', '.join(map(str, QUESTIONS))}")
    return QUESTIONS[year]


def template(year: int) -> str:
    """Return the answers file of ``year`` to fill in: the front block, then each question with what dlcv places."""
    lines = [f"<!-- DLCV {year} HW1 report: write each answer under its question (Markdown, English or Chinese), "
             f"then: dlcv report --year {year} --answers THIS_FILE -->", "", "name: ", "student_id: ", ""]
    for q in questions(year):
        lines += [f"## {q.key} {q.text}", "", f"<!-- dlcv places here: {q.shows} -->", "", ""]
    return "\n".join(lines)


@dataclass
class Answers:
    """An answers file read back: the student's name and id, and each question's answer."""

    name: str
    student_id: str
    by_key: dict[str, str]  # key -> the answer's Markdown (empty: not answered)

    def empty(self, year: int) -> list[str]:
        """Return the keys of ``year``'s questions left without an answer."""
        return [q.key for q in questions(year) if not self.by_key.get(q.key, "").strip()]


HEADING = re.compile(r"^##\s+(P\d+\.\d+)\b.*$")
ANY_LEVEL = re.compile(r"^\s*#+\s*(P\d+\.\d+)\b")  # a question's heading at another level than ##
FIELD = re.compile(r"^\s*(name|student_id)\s*:\s*(.*?)\s*$")


def read_answers(path: str | Path, year: int) -> Answers:
    """Read an answers file back for ``year``'s report.

    HTML comments are dropped; the lines before the first question heading give ``name:`` and ``student_id:``.

    Args:
        path: the answers file, UTF-8 Markdown.
        year: the report's year, whose questions the file answers.

    Returns:
        the name, the student id and each answered question's Markdown by key.

    Raises:
        DlcvError: if the file cannot be read, a question's heading is not at level 2, names a question the year
            does not have or comes twice, or, with no question heading at all, the file holds no name or holds
            other words.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DlcvError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    known = {q.key for q in questions(year)}
    front, by_key, current = [], {}, None
    for number, line in enumerate(text.splitlines(), start=1):
        found = HEADING.match(line)
        if not found and (other := ANY_LEVEL.match(line)):
            raise DlcvError(f"{path}: line {number} heads {other.group(1)} at another level; write "
                            f"'## {other.group(1)}' (two #) so that its answer is found")
        if found:
            current = found.group(1)
            if current not in known:
                raise DlcvError(f"{path}: {current} is not a question of the {year} report (it has "
                                f"{', '.join(sorted(known))})")
            if current in by_key:  # the later heading's words would silently replace the earlier's
                raise DlcvError(f"{path}: {current} has two headings; keep one answer under one '## {current}'")
            by_key[current] = ""
        elif current is None:
            front.append(line)
        else:
            by_key[current] += line + "\n"
    fields = dict(found.groups() for found in map(FIELD.match, front) if found)
    first = questions(year)[0].key
    if not by_key and not fields:
        raise DlcvError(f"{path}: holds no '## {first}' question heading and no name; fill in the file that "
                        f"'dlcv report --year {year} --answers-template FILE' writes")
    if not by_key and any(line.strip() and not FIELD.match(line) for line in front):
        raise DlcvError(f"{path}: its words are under no question heading; write each answer under its "
                        f"'## {first}'-style heading, as the --answers-template file has them")
    return Answers(fields.get("name", ""), fields.get("student_id", ""), {k: v.strip() for k, v in by_key.items()})


def shows(question: Question, block) -> bool:
    """Whether ``block`` shows what ``question`` asks about (its topic is one of the question's, or below one)."""
    topic = getattr(block, "topic", "")
    return any(topic == t or topic.startswith(t + ":") for t in question.topics)


def place_answers(sections: list, year: int, answers: Answers) -> list:
    """Put each of ``year``'s questions, in order, over dlcv's blocks for it and then the student's answer.

    In each section the questions come first, each with the blocks that show what it asks about (``shows``) and its
    answer (Markdown); the section's other blocks follow. A question with neither blocks nor an answer is left out
    of the body, and every unanswered question is listed once, in a note at the end. The answered questions of a
    section the report lacks go to a last section, so that no answer is dropped.

    Args:
        sections: the report's sections; their blocks are regrouped.
        year: the report's year.
        answers: the answers read back (``read_answers``).

    Returns:
        ``sections``, followed by that last section when it holds any question.
    """
    by_anchor = {s.anchor: s for s in sections}
    rest = Section("Answers to the questions without runs here", "answers")
    grouped: dict[str, list] = {s.anchor: [] for s in sections}
    unanswered = []
    for q in questions(year):
        answer = answers.by_key.get(q.key, "").strip()
        unanswered += [] if answer else [q]
        section = by_anchor.get(q.section)
        mine = [] if section is None else [b for b in section.blocks if shows(q, b)]
        if section is not None:
            section.blocks = [b for b in section.blocks if not shows(q, b)]
        for block in mine:  # under the question's heading now
            if isinstance(block, Heading) and block.level == 3:
                block.level = 4
        if mine or answer:
            blocks = [Heading(f"{q.key} {q.text}", 3), *mine, *([Markdown(answer)] if answer else [])]
            (grouped[section.anchor] if section is not None else rest.blocks).extend(blocks)
    for section in sections:
        section.blocks = grouped[section.anchor] + section.blocks
    placed = sections + ([rest] if rest.blocks else [])
    if unanswered and placed:
        placed[-1].blocks.append(Text("Not answered yet: " + "; ".join(f"{q.key} {q.text}" for q in unanswered),
                                      note=True))
    return placed
