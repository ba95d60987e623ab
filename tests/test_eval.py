"""`python -m stc.eval`: manifest, prompts, answer parsing, a resumable grid run, the summary.

The run tests use the tiny random LLaVA-OneVision on gradio's real clips: its answers are noise,
so they pin the harness (records, resume, errors, the table), never accuracy.
"""

import csv
import json
import shutil

import pytest

import stc
from stc.eval import (
    Cell,
    EvalError,
    ManifestError,
    build_prompt,
    csv_table,
    grid,
    load_manifest,
    main,
    markdown_table,
    parse_answer,
    run_eval,
    summarize,
    write_summary,
)

OPTIONS = ("a red ball", "a blue car", "the sun", "a tree")
TINY = "tiny-random/llava-onevision"


# -- answer parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", "B"),
        ("b", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("**B**", "B"),
        ("  c  ", "C"),
        ("The answer is B", "B"),
        ("The best answer is: A.", "A"),
        ("the answer is d.", "D"),
        ("I think the answer is C", "C"),
        ("The correct option is (a)", "A"),
        ("Answer: (C)", "C"),
        ("answer: c", "C"),
        ("Best option: (D)", "D"),
        ("C) the sun", "C"),
        ("(b) a blue car", "B"),
        ("D. a tree", "D"),
        ("B, because the car is blue", "B"),
        ("Option D", "D"),
        ("I pick D", "D"),
        ("a blue car", "B"),  # an option's text alone
        ("It shows the sun.", "C"),  # the only option whose text it contains
        ("The answer is a tree", "D"),  # "a" is an article here, the text decides
        ("", None),
        ("   ", None),
        ("eneeneeneene", None),  # garbage
        ("x", None),
        ("E", None),  # not an option of four
        ("A man is walking", None),  # "A" is an article, not a choice
        ("A or B", None),  # two choices
        ("a red ball or a blue car", None),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text, OPTIONS) == expected


def test_parse_answer_more_options():
    five = OPTIONS + ("the moon",)
    assert parse_answer("E", five) == "E"
    assert parse_answer("(e)", five) == "E"
    assert parse_answer(None, five) is None


# -- prompts -----------------------------------------------------------------------------------
def test_prompts_are_lmms_evals():
    assert build_prompt("What is red?", OPTIONS) == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "What is red?\nA. a red ball\nB. a blue car\nC. the sun\nD. a tree\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert build_prompt("What is red?", OPTIONS[:3]).count("(A, B, or C)") == 1
    assert build_prompt("Q?", OPTIONS[:2], "mvbench") == "Question:Q?\nOption:\n(A) a red ball\n(B) a blue car\nOnly give the best option.\n"
    assert build_prompt("Q?", OPTIONS[:2], "egoschema") == (
        "Q?\nA. a red ball\nB. a blue car\nAnswer with the option's letter from the given choices directly."
    )
    assert build_prompt("Q?", OPTIONS[:2], "mlvu").endswith("(B) a blue car\nOnly give the best option.\nBest option: (")
    with pytest.raises(ValueError, match="prompt style"):
        build_prompt("Q?", OPTIONS, "nope")


# -- manifest ----------------------------------------------------------------------------------
def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_manifest_forms(tmp_path):
    rows = [
        {"id": "q1", "video": "clips/x.mp4", "question": " Q1 ", "options": ["A. one", "B. two"], "answer": "b"},
        {"video_path": "/abs/y.mp4", "question": "Q2", "candidates": ["one", "two", "three"], "answer": "three"},
        "",
        {"id": 7, "video": "z.mp4", "question": "Q3", "options": {"A": "one", "B": "two"}, "answer": 0, "prompt": "mvbench"},
        {"id": "q4", "video": "z.mp4", "question": "Q4", "options": ["(A) one", "(B) two"], "answer": "(B)"},
    ]
    items = load_manifest(_write(tmp_path / "m.jsonl", rows))
    assert [i.id for i in items] == ["q1", "line-2", "7", "q4"]
    assert items[0].video == tmp_path / "clips" / "x.mp4"  # relative to the manifest's folder
    assert str(items[1].video) == "/abs/y.mp4"
    assert items[0].options == ("one", "two") and items[0].question == "Q1"  # labels dropped
    assert [i.answer for i in items] == ["B", "C", "A", "B"]
    assert items[2].style == "mvbench" and items[0].style is None
    assert items[3].line == 5


def test_manifest_errors_name_their_lines(tmp_path):
    good = {"video": "v.mp4", "question": "Q", "options": ["x", "y"], "answer": "A"}
    rows = [
        good,
        "{not json",
        {**good, "question": ""},
        {**good, "options": ["only one"]},
        {**good, "answer": "C"},
        {**good, "answer": "neither"},
        {**good, "id": "dup"},
        {**good, "id": "dup"},
        ["a", "list"],
        {k: v for k, v in good.items() if k != "video"},
        {**good, "prompt": "unknown-style"},
    ]
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(tmp_path / "m.jsonl", rows))
    message = str(info.value)
    assert "9 bad line(s)" in message
    for line, words in [(2, "not valid JSON"), (3, "'question'"), (4, "2 to 26"), (5, "not one of the letters"),
                        (6, "neither a letter"), (8, "already used on line 7"), (9, "JSON object"),
                        (10, "'video'"), (11, "'prompt'")]:
        assert f"m.jsonl:{line}: " in message and words in message, (line, words)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "missing.jsonl")
    with pytest.raises(ManifestError, match="no questions"):
        load_manifest(_write(tmp_path / "empty.jsonl", [""]))


def test_grid_runs_the_baseline_once():
    cells = grid(["none", "stc", "stc-stage1"], [0.1, 0.02, 0.02])
    assert cells == [Cell("none", 1.0), Cell("stc", 0.1), Cell("stc", 0.02), Cell("stc-stage1", 0.1), Cell("stc-stage1", 0.02)]
    assert cells[0].config() is None and cells[2].config() == stc.STCConfig(retention=0.02, method="stc")
    assert grid(["none"], []) == [Cell("none", 1.0)]
    with pytest.raises(ValueError, match="available"):
        grid(["no-such-method"], [0.1])
    with pytest.raises(ValueError, match="retention"):
        grid(["stc"], [1.5])
    forced = grid(["none", "holitom"], [0.1], positions="original")
    assert forced[0].config() is None  # the baseline compresses nothing: no rule to force
    assert forced[1].config().positions == "original" and forced[1].config().position_rule == "original"
    assert grid(["holitom"], [0.1])[0].config().position_rule == "contiguous"  # its own rule


# -- a real run, interrupted and resumed ---------------------------------------------------------
@pytest.fixture(scope="module")
def llm():
    return stc.load(TINY)


@pytest.fixture
def manifest(tmp_path, gradio_clip):
    (tmp_path / "clips").mkdir()
    shutil.copy(gradio_clip("b.mp4"), tmp_path / "clips" / "b.mp4")
    rows = [
        {"id": "b", "video": "clips/b.mp4", "question": "What is shown?", "options": list(OPTIONS), "answer": "A"},
        {"id": "gone", "video": "clips/missing.mp4", "question": "What?", "options": list(OPTIONS), "answer": "B"},
        {"id": "world", "video": str(gradio_clip("world.mp4")), "question": "Which planet?",
         "options": ["A. Earth", "B. Mars", "C. Venus"], "answer": "Earth", "prompt": "egoschema"},
    ]
    return _write(tmp_path / "manifest.jsonl", rows)


class Killed(Exception):
    pass


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_resumes_without_duplicates(llm, manifest, tmp_path):
    items = load_manifest(manifest)
    cells = grid(["none", "stc", "stc-stage1"], [0.1, 0.02])
    out = tmp_path / "out"
    kw = dict(frames=4, max_new_tokens=2, progress=False)

    seen = []

    def kill_after_three(record):
        seen.append(record)
        if len(seen) == 3:
            raise Killed

    with pytest.raises(Killed):
        run_eval(llm, items, cells, out, on_record=kill_after_three, **kw)
    records = out / "records.jsonl"
    assert len(_lines(records)) == 3
    with open(records, "a") as f:  # killed in the middle of writing a fourth line
        f.write('{"item": "b", "method": "stc-st')

    log = run_eval(llm, items, cells, out, **kw)
    lines = _lines(records)  # every line parses: the torn one is gone
    keys = [(r["item"], r["method"], r["retention"]) for r in lines]
    assert len(keys) == len(set(keys)) == len(items) * len(cells) == 15
    assert set(keys) == {(i.id, c.method, c.retention) for i in items for c in cells}
    assert len(log.records) == 15
    assert sum(r["method"] == "none" for r in lines) == 3  # the baseline once per item

    good = [r for r in lines if r["item"] != "gone"]
    for r in good:
        assert r["error"] is None and isinstance(r["raw"], str)
        assert r["parsed"] in (None, "A", "B", "C", "D") and r["correct"] == (r["parsed"] == r["answer"])
        assert r["visual_tokens"] <= r["visual_tokens_total"] and r["flops"] <= r["flops_baseline"]
        assert r["seconds"] > 0 and r["prefill_seconds"] >= 0
    by_key = {(r["item"], r["method"], r["retention"]): r for r in good}
    base, small = by_key[("b", "none", 1.0)], by_key[("b", "stc", 0.02)]
    assert base["visual_tokens"] == base["visual_tokens_total"] and base["flops"] == base["flops_baseline"]
    assert small["visual_tokens"] == round(0.02 * small["visual_tokens_total"])
    assert small["visual_tokens_after_k"] < small["visual_tokens"]  # stc's stage 2
    assert by_key[("world", "none", 1.0)]["answer"] == "A" and by_key[("world", "none", 1.0)]["prompt"] == "egoschema"
    gone = [r for r in lines if r["item"] == "gone"]
    assert len(gone) == 5 and all("not found" in r["error"] for r in gone)

    # a third run has nothing left to do; --retry-errors redoes only the error cells
    before = records.read_text()
    run_eval(llm, items, cells, out, **kw)
    assert records.read_text() == before
    run_eval(llm, items, cells, out, retry_errors=True, **kw)
    assert len(_lines(records)) == 20 and len(_keys(records)) == 15

    rows = summarize(log.records.values())
    assert [(r["method"], r["retention"]) for r in rows] == [(c.method, c.retention) for c in cells]
    for row in rows:
        assert row["items"] == 2 and row["errors"] == 1
        cell = [r for r in good if (r["method"], r["retention"]) == (row["method"], row["retention"])]
        assert row["correct"] == sum(r["correct"] for r in cell)
        assert row["accuracy"] == pytest.approx(100 * row["correct"] / 2)
        assert row["flops_pct_of_baseline"] <= 100 + 1e-9
    assert rows[0]["flops_pct_of_baseline"] == pytest.approx(100)
    if rows[0]["correct"]:
        assert rows[0]["pct_of_baseline"] == pytest.approx(100)

    csv_path, md_path = write_summary(rows, out, "# title")
    table = list(csv.DictReader(open(csv_path)))
    assert [t["method"] for t in table] == ["none", "stc", "stc", "stc-stage1", "stc-stage1"]
    assert table[1]["retention"] == "0.1" and table[1]["items"] == "2" and table[1]["errors"] == "1"
    md = md_path.read_text()
    assert md.startswith("# title") and "| stc | 2% | 2 | 1 |" in md and markdown_table(rows) in md


def _keys(path):
    return {(r["item"], r["method"], r["retention"]) for r in _lines(path)}


def test_summary_compares_with_the_baseline_on_the_same_items():
    def rec(item, method, retention, correct, **extra):
        return {"item": item, "method": method, "retention": retention, "correct": correct, "parsed": "A",
                "visual_tokens": 10, "flops": 1e12, "flops_baseline": 4e12, "prefill_seconds": 0.1,
                "visual_tokens_after_k": 5, "seconds": 1.0, "error": None, **extra}

    records = [
        rec("1", "none", 1.0, True), rec("2", "none", 1.0, True), rec("3", "none", 1.0, False),
        rec("4", "none", 1.0, False),
        rec("1", "stc", 0.02, True), rec("2", "stc", 0.02, False), rec("3", "stc", 0.02, False, parsed=None),
        rec("4", "stc", 0.02, False, error="ValueError: bad video"),
    ]
    base, cell = summarize(records)
    assert base["accuracy"] == 50 and base["pct_of_baseline"] == 100
    assert cell["items"] == 3 and cell["errors"] == 1 and cell["unparsed"] == 1
    assert cell["accuracy"] == pytest.approx(100 / 3)
    # baseline on items 1-3 is 2/3; the cell's 1/3 is half of it
    assert cell["pct_of_baseline"] == pytest.approx(50)
    assert cell["flops_T"] == pytest.approx(1) and cell["flops_pct_of_baseline"] == pytest.approx(25)
    # 1 of 3 right: the 95% Wilson interval is 6.1-79.2%
    assert cell["accuracy_ci"] == pytest.approx((6.149, 79.234), abs=0.01)
    assert "| stc | 2% | 3 | 1 | 1 | 33.3 (6.1-79.2) | 50.0 | 10 -> 5 | 1 | 25.0 |" in markdown_table([base, cell])


def test_wilson_intervals_hold_the_accuracy_and_stay_inside_0_100():
    from stc.eval import wilson

    assert wilson(0, 0) is None
    lo, hi = wilson(0, 100)
    assert lo == 0 and 0 < hi < 4  # 0 of 100: [0, 3.7]
    lo, hi = wilson(100, 100)
    assert 96 < lo < 100 and hi == 100
    for correct, n in [(1, 3), (45, 100), (90, 100), (300, 500)]:
        lo, hi = wilson(correct, n)
        assert lo < 100 * correct / n < hi
    assert wilson(50, 100)[1] - wilson(50, 100)[0] > wilson(250, 500)[1] - wilson(250, 500)[0]  # more items, narrower



def test_summary_reports_accuracy_per_question_type():
    def rec(item, method, correct, kind):
        return {"item": item, "method": method, "retention": 1.0 if method == "none" else 0.02, "correct": correct,
                "parsed": "A", "visual_tokens": 10, "flops": 1e12, "flops_baseline": 1e12, "prefill_seconds": 0.1,
                "visual_tokens_after_k": 10, "seconds": 1.0, "error": None, "type": kind}

    records = [rec("1", "none", True, "colour"), rec("2", "none", False, "colour"), rec("3", "none", True, "count"),
               rec("1", "stc", True, "colour"), rec("2", "stc", True, "colour"), rec("3", "stc", False, "count")]
    base, cell = summarize(records)
    assert base["by_type"] == {"colour": 50.0, "count": 100.0} and cell["by_type"] == {"colour": 100.0, "count": 0.0}
    table = markdown_table([base, cell])
    assert table.splitlines()[0].endswith("| colour (%, 95% CI) | count (%, 95% CI) |")
    assert table.splitlines()[3].endswith("| 100.0 (34.2-100.0) | 0.0 (0.0-79.3) |")
    assert cell["by_type_unparsed"] == {"colour": 0, "count": 0}
    header = csv_table([base, cell]).splitlines()[0]
    assert header.endswith("accuracy_colour,accuracy_low_colour,accuracy_high_colour,unparsed_colour,"
                           "accuracy_count,accuracy_low_count,accuracy_high_count,unparsed_count")
    # without types, the table is the same as before
    assert "(%) |" not in markdown_table(summarize([{**r, "type": None} for r in records])).splitlines()[0].split("s / answer")[1]


def test_paired_difference_compares_on_the_items_both_answered(tmp_path, capsys):
    from stc.eval.paired import main as paired_main, paired_difference

    def rec(item, method, retention, correct, error=None):
        return {"item": str(item), "method": method, "retention": retention, "correct": correct, "error": error}

    # stc right on 30 of 40 items, holitom on 10 of them; item 40 is an error for holitom (left out)
    records = [rec(i, "none", 1.0, True) for i in range(41)]
    records += [rec(i, "stc", 0.02, i < 30) for i in range(41)]
    records += [rec(i, "holitom", 0.02, i < 10, error="ValueError" if i == 40 else None) for i in range(41)]
    records += [rec(i, "fastv", 0.02, i < 30) for i in range(41)]
    p = paired_difference(records, "stc", "holitom", 0.02)
    assert p["items"] == 40 and p["difference"] == pytest.approx(50.0)
    assert 30 < p["low"] < 50 < p["high"] < 70
    assert paired_difference(records, "stc", "holitom", 0.02) == p  # a bootstrap with a fixed seed
    q = paired_difference(records, "holitom", "stc", 0.02)
    assert q["difference"] == pytest.approx(-50.0) and q["low"] == pytest.approx(-p["high"], abs=5)
    same = paired_difference(records, "stc", "fastv", 0.02)  # the same answers: exactly 0, no spread
    assert same["difference"] == same["low"] == same["high"] == 0
    assert paired_difference(records, "stc", "none", 0.02)["difference"] == pytest.approx(-100 * 11 / 41)
    assert paired_difference(records, "stc", "holitom", 0.1) is None  # no shared cell

    out = tmp_path / "run"
    out.mkdir()
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert paired_main([str(out)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0] == "| stc minus | 2% |"
    assert any(line.startswith("| holitom | +50.0 (") for line in table.splitlines())
    with pytest.raises(SystemExit):
        paired_main([str(out), "--method", "visionzip"])
    assert "no record of method 'visionzip'" in capsys.readouterr().err


def test_agreement_table_marks_what_holds_on_every_checkpoint(tmp_path, capsys):
    from stc.eval.paired import agreement_table, main as paired_main

    def run(stc_right: int, holitom_right: int, fastv_right: int) -> list[dict]:
        """60 items at 2%: each method right on its first N."""
        rows = [{"item": str(i), "method": "none", "retention": 1.0, "correct": True, "error": None} for i in range(60)]
        for method, right in (("stc", stc_right), ("holitom", holitom_right), ("fastv", fastv_right)):
            rows += [{"item": str(i), "method": method, "retention": 0.02, "correct": i < right, "error": None}
                     for i in range(60)]
        return rows

    # checkpoint 1: stc 50 vs holitom 20 (+50 points), vs fastv 50 (level); checkpoint 2: stc 40
    # vs holitom 15 (+41.7), vs fastv 55 (-25): holitom's gap holds on both, fastv's does not;
    # a third run level with both everywhere
    one, two, three = run(50, 20, 50), run(40, 15, 55), run(30, 30, 30)
    lines = agreement_table([one, two], "stc").splitlines()
    assert lines[0] == "| stc minus | 2% |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1].rstrip(" |") for line in lines[2:]}
    assert rows["holitom"] == "**+50.0 / +41.7**"
    assert rows["fastv"] == "+0.0 / -25.0"  # level on one, behind on the other: plain
    both_level = agreement_table([run(30, 30, 30), three], "stc")
    assert "| holitom | +0.0 / +0.0 = |" in both_level
    # a checkpoint without that method's cell: "-"
    assert "| holitom | - |" in agreement_table([one, [r for r in two if r["method"] != "holitom"]], "stc")

    folders = []
    for name, records in (("a", one), ("b", two)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        folders.append(str(tmp_path / name))
    assert paired_main([folders[0], "--also", folders[1]]) == 0
    assert "| holitom | **+50.0 / +41.7** |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        paired_main([folders[0], "--also", str(tmp_path / "missing")])
    assert "does not exist" in capsys.readouterr().err


def test_read_runs_merges_folders_a_later_record_replacing_an_earlier(tmp_path):
    from stc.eval.paired import read_runs

    def write(name: str, records: list[dict]):
        (tmp_path / name).mkdir()
        (tmp_path / name / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return tmp_path / name

    cell = {"method": "stc", "retention": 0.02, "error": None}
    a = write("a", [{"item": "1", **cell, "correct": False}, {"item": "2", **cell, "correct": True}])
    b = write("b", [{"item": "1", **cell, "correct": True}])
    merged = sorted(read_runs(a, str(b)), key=lambda r: r["item"])
    assert [(r["item"], r["correct"]) for r in merged] == [("1", True), ("2", True)]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_runs(a, tmp_path / "missing")


# -- the command line ------------------------------------------------------------------------------
def test_cli_limit_resume_and_settings_guard(manifest, tmp_path, capsys):
    out = tmp_path / "cli"
    args = [str(manifest), "--model", TINY, "--methods", "none,stc", "--retention", "2%", "--frames", "4",
            "--max-new-tokens", "2", "--out", str(out), "--no-progress"]
    assert main(args + ["--limit", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| method | retention |" in printed and "| none | 100% | 1 | 0 |" in printed
    assert len(_lines(out / "records.jsonl")) == 2
    assert (out / "summary.csv").exists() and (out / "summary.md").exists()

    assert main(args + ["--limit", "1"]) == 0  # nothing new to do
    assert len(_lines(out / "records.jsonl")) == 2

    assert main(args[:-1] + ["--frames", "8", "--no-progress", "--limit", "1"]) == 2  # other settings: refused
    assert "other settings" in capsys.readouterr().err
    # a forced position rule is a setting of the run: recorded, and not mixed into a run without it
    assert main(args + ["--limit", "1", "--positions", "contiguous"]) == 2
    assert "positions: None there, 'contiguous' now" in capsys.readouterr().err
    forced = args[:-2] + [str(tmp_path / "forced"), "--no-progress", "--limit", "1", "--positions", "contiguous"]
    assert main(forced) == 0
    assert "positions contiguous for every method" in capsys.readouterr().out
    assert json.loads((tmp_path / "forced" / "run.json").read_text())["positions"] == "contiguous"

    bad = _write(tmp_path / "bad.jsonl", [{"video": "v.mp4", "question": "Q", "options": ["x"], "answer": "A"}])
    assert main([str(bad), "--model", TINY, "--out", str(tmp_path / "o2")]) == 2
    assert "bad.jsonl:1:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(manifest), "--methods", "no-such-method"])
    with pytest.raises(SystemExit):
        main([str(manifest), "--retention", "150%"])


def test_constrained_run_answers_an_option_every_time_and_is_a_setting_of_the_run(llm, manifest, tmp_path, capsys):
    """The tiny model's weights are random: free text is rarely an option, constrained text is
    always one (its letter or its whole text), so nothing is unparsed; a run folder holds one
    kind of answer only."""
    items = [i for i in load_manifest(manifest) if i.id != "gone"]
    cells = grid(["none", "stc"], [0.1])
    kw = dict(frames=4, max_new_tokens=12, progress=False)
    free = run_eval(llm, items, cells, tmp_path / "free", **kw)
    constrained = run_eval(llm, items, cells, tmp_path / "constrained", constrained=True, **kw)
    for key, record in constrained.records.items():
        item = next(i for i in items if i.id == key[0])
        assert record["error"] is None and record["parsed"] is not None
        assert record["raw"] in [*"ABCD"[: len(item.options)], *item.options]
    assert any(r["raw"] not in OPTIONS for r in free.records.values())  # the constraint did something
    assert json.loads((tmp_path / "constrained" / "run.json").read_text())["constrained"] is True
    assert "constrained" not in json.loads((tmp_path / "free" / "run.json").read_text())
    with pytest.raises(EvalError, match="constrained"):
        run_eval(llm, items, cells, tmp_path / "free", constrained=True, **kw)
    args = [str(manifest), "--model", TINY, "--methods", "none", "--frames", "4", "--limit", "1", "--no-progress",
            "--out", str(tmp_path / "cli"), "--constrained"]
    assert main(args) == 0
    assert "answers constrained to the options" in capsys.readouterr().out


def test_one_run_forces_one_position_rule(llm, manifest, tmp_path):
    cells = grid(["stc"], [0.1], positions="original") + grid(["holitom"], [0.1], positions="contiguous")
    with pytest.raises(EvalError, match="one position rule"):
        run_eval(llm, load_manifest(manifest), cells, tmp_path / "out", frames=4, progress=False)
