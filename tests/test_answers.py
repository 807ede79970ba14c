"""The report with the student's own words: each year's questions as a template, the answers put under their
questions with the name and student id at the top, the empty ones listed; a foreign question, a heading at another
level, or words under no heading refused."""

from __future__ import annotations

import re

import pytest
from conftest import copy_run, expect_error, run_cli

from dlcv.report.answers import questions


@pytest.mark.parametrize("year", [2021, 2022, 2023, 2024])
def test_the_template_holds_each_of_the_years_questions_in_order(capsys, tmp_path, year):
    code, out, err = run_cli(capsys, "report", "--year", year, "--answers-template", tmp_path / "a.md")
    assert code == 0, err
    keys = re.findall(r"^## (P\d+\.\d+) ", (tmp_path / "a.md").read_text(), flags=re.M)
    code, _, err = run_cli(capsys, "report", "--year", year, "--answers-template", tmp_path / "a.md")
    assert code == 0, err  # dlcv's own template, unchanged: written again
    assert keys == [q.key for q in questions(year)] and len(set(keys)) == len(keys)
    assert "name: " in (tmp_path / "a.md").read_text() and "dlcv places here:" in (tmp_path / "a.md").read_text()


MARKDOWN_ANSWER = """**FCN32s** has:

- VGG16's convolutions,
- a 1x1 classifier, up-sampled 32x ([the paper](https://arxiv.org/abs/1411.4038)).

| layer | stride |
|---|---|
| pool5 | 32 |

`nn.ConvTranspose2d` is not used. <script>alert(1)</script> and [a trap](javascript:alert(1)).
"""


def test_answers_go_under_their_questions_with_the_name_on_top(capsys, tmp_path, trained_run):
    runs = tmp_path / "runs"
    copy_run(trained_run, runs)
    code, _, err = run_cli(capsys, "report", "--year", 2022, "--answers-template", tmp_path / "a.md")
    assert code == 0, err
    text = (tmp_path / "a.md").read_text().replace("name: \n", "name: 王小明\n").replace(
        "student_id: \n", "student_id: r12345678\n")
    text = text.replace("## P1.2 Report the accuracy of model A and model B on the validation set.\n",
                        "## P1.2 Report the accuracy of model A and model B on the validation set.\n\n"
                        "Model A reaches its accuracy early.\n\n模型 B 較好。\n")
    heading = next(line for line in text.splitlines() if line.startswith("## P2.1 "))
    text = text.replace(heading + "\n", heading + "\n\n" + MARKDOWN_ANSWER)
    (tmp_path / "a.md").write_text(text)
    expect_error(capsys, r"a\.md: exists and dlcv did not write it; pass --overwrite", "report", "--year", 2022,
                 "--answers-template", tmp_path / "a.md")  # filled in: the student's now
    assert (tmp_path / "a.md").read_text() == text
    code, out, err = run_cli(capsys, "report", "--runs", runs, "--output", tmp_path / "report", "--year", 2022,
                             "--answers", tmp_path / "a.md", "--no-pdf")
    assert code == 0, err
    assert "answers: 2 of the 2022 report's 10 questions answered; left empty: P1.1, P1.3" in out
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "王小明 (r12345678). Built by dlcv report" in markdown
    question = markdown.index("### P1.2 Report the accuracy")
    assert markdown.index("Model A reaches its accuracy early.") > question
    assert markdown.index("模型 B 較好。") > question
    # Each question over dlcv's blocks for it, then the answer: P1.3's heading over the run's recipe and curves.
    p11, p12, p13 = (markdown.index(f"### P1.{i} ") for i in (1, 2, 3))
    assert p11 < markdown.index("#### Architecture of tiny") < p12 < markdown.index("**Accuracy of each run") < p13
    assert p13 < markdown.index("#### tiny (model A") < markdown.index("| recipe key | value |")
    assert "(no answer yet)" not in markdown and markdown.count("Not answered yet: ") == 1
    assert markdown.rindex("Not answered yet: P1.1 ") > markdown.index("模型 B 較好。")  # listed once, at the end
    assert markdown.index("### P1.2") > markdown.index("## Problem 1: image classification")
    assert "### P2.1" in markdown.split("## Answers to the questions without runs here")[1]  # no segmentation run
    assert MARKDOWN_ANSWER.strip() in markdown  # report.md keeps the answer's Markdown as written
    page = (tmp_path / "report" / "index.html").read_text()
    assert "王小明 (r12345678)" in page and "模型 B 較好。" in page
    answer = page.split('<div class="answer">')[2].split("</div>")[0]
    assert "<strong>FCN32s</strong>" in answer and "<li>VGG16's" in answer and "<table>" in answer
    assert "<code>" in answer and "&lt;script&gt;" in answer and "<script>" not in page
    assert "javascript:" not in page and "<a href=\"https://arxiv.org/abs/1411.4038\">" in answer


def test_a_question_the_year_does_not_have_is_refused_and_nothing_is_written(capsys, tmp_path, trained_run):
    (tmp_path / "a.md").write_text("name: x\n\n## P3.1 segmentation?\n\nmine\n")
    expect_error(capsys, r"a\.md: P3\.1 is not a question of the 2022 report \(it has P1\.1, ", "report", "--runs",
                 trained_run.parent, "--output", tmp_path / "report", "--year", 2022, "--answers", tmp_path / "a.md")
    expect_error(capsys, r"--answers and --answers-template go with --year YEAR", "report", "--runs",
                 trained_run.parent, "--output", tmp_path / "report", "--answers", tmp_path / "a.md")
    (tmp_path / "b.md").write_text("## P1.2 accuracy\n\nfirst draft\n\n## P1.2 accuracy\n\nsecond\n")
    expect_error(capsys, r"b\.md: P1\.2 has two headings; keep one answer under one '## P1\.2'", "report", "--runs",
                 trained_run.parent, "--output", tmp_path / "report", "--year", 2022, "--answers", tmp_path / "b.md")
    for name, text, pattern in [
            ("empty.md", "", r"empty\.md: holds no '## P1\.1' question heading and no name; fill in the file"),
            ("prose.md", "name: x\n\nP1.2: model B is better.\n", r"prose\.md: its words are under no question"),
            ("level.md", "### P1.2 accuracy\n\nmine\n", r"level\.md: line 1 heads P1\.2 at another level; write "
                                                      r"'## P1\.2' \(two #\)")]:
        (tmp_path / name).write_text(text)
        expect_error(capsys, pattern, "report", "--runs", trained_run.parent, "--output", tmp_path / "report",
                     "--year", 2022, "--answers", tmp_path / name)
    assert not (tmp_path / "report").exists()
