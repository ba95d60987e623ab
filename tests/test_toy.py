"""stc.toy: the synthetic video QA is deterministic and says what it asks; both training stages
still train (and reproduce their weights from a seed); the committed checkpoint gives its
recorded answers."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import stc
from stc.eval import build_prompt, load_manifest, parse_answer
from stc.toy.data import (COLOURS, DEMO_SEEDS, DIRECTIONS, FRAMES, LETTERS, MIN_FRAMES, OPTIONS, SHAPES, TEST_SEEDS,
                          TRAIN_SEEDS, TYPES, VALIDATION_SEEDS, make_sample, question, write_manifest)
from stc.toy.model import Prompts
from stc.toy.stages import POOLS, _batch, describe, pool_rng, stuttered_clip, visual_tokens
from stc.toy.train import (CHECK_ITEMS, Phase, build_toy, encode_pool, evaluate, patch_labels, pixel_values,
                           pretrain_vision, shorter_clip, train, train_llm)
from stc.video import load_video

RED = 2 + list(COLOURS).index("red")


# -- the generator -------------------------------------------------------------------------------
def test_same_seed_same_sample_other_seed_other_sample():
    a, b, c = make_sample(12345), make_sample(12345), make_sample(12350)
    assert (a.kind, a.question, a.options, a.answer, a.events) == (b.kind, b.question, b.options, b.answer, b.events)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    assert a.frames.shape == (FRAMES, 384, 384, 3) and a.frames.dtype == np.uint8
    assert a.labels.shape == (FRAMES, 384, 384, 2)
    assert a.kind == c.kind and not np.array_equal(a.frames, c.frames)


# sha256 (first 16 hex digits) of make_sample(seed).frames / .labels for the first held-out
# question of every type, as the generator drew them when the committed checkpoint's tables were
# measured (2026-12-07): a change to the generator that moves one pixel moves these.
HELD_OUT_DIGESTS = {
    1_000_000: ("a106c8e59a228408", "3e81a389ca9de9c9"),
    1_000_001: ("775908a2f3deabc6", "c505cb0fe614b2ff"),
    1_000_002: ("eab7815bf4816e0a", "dc49f64c9436b4a3"),
    1_000_003: ("4a56c89c69232555", "d827735a3c60aedb"),
    1_000_004: ("8904170075069ba0", "113c6f7caed91ff2"),
}


def test_held_out_clips_are_the_pixels_the_tables_were_measured_on():
    import hashlib

    def digest(array: np.ndarray) -> str:
        return hashlib.sha256(array.tobytes()).hexdigest()[:16]

    drawn = {seed: (digest(s.frames), digest(s.labels)) for seed in HELD_OUT_DIGESTS for s in [make_sample(seed)]}
    assert drawn == HELD_OUT_DIGESTS


def test_train_test_validation_and_demo_seeds_never_meet():
    ranges = [set(TRAIN_SEEDS), set(TEST_SEEDS), set(VALIDATION_SEEDS), set(DEMO_SEEDS.values())]
    assert sum(map(len, ranges)) == len(set().union(*ranges))
    assert len(VALIDATION_SEEDS) % len(TYPES) == 0  # as many questions of every type


def test_question_is_the_sample_s_question_without_its_clip():
    for seed, frames, scale in [(TEST_SEEDS.start + k, FRAMES, 1.0) for k in range(5)] + [(7, 4, 2.5), (12, 5, 1.0)]:
        s = make_sample(seed, frames, scale)
        assert question(seed) == (s.kind, s.answer)
        assert s.options == OPTIONS[s.kind] and s.answer_text in s.options


def test_types_are_balanced_and_answers_cover_every_letter():
    asked = [question(s) for s in range(TEST_SEEDS.start, TEST_SEEDS.start + 50)]
    assert [kind for kind, _ in asked] == [TYPES[i % 5] for i in range(50)]
    assert len(TEST_SEEDS) >= 100 * len(TYPES)
    for kind in TYPES:
        assert {answer for k, answer in asked if k == kind} == set(LETTERS), kind


def _objects(sample, f: int, colour_class: int | None = None) -> np.ndarray:
    """Boolean [H, W]: pixels of frame f drawn in a saturated colour (or in ``colour_class``)."""
    colour = sample.labels[f, ..., 1]
    return colour >= 2 if colour_class is None else colour == colour_class


@pytest.mark.parametrize("frames", [FRAMES, 5])
def test_the_evidence_is_where_the_question_says(frames):
    """What each question asks is what was drawn, read back from the labels: the flash is the
    only coloured thing and only in its frame; every red square is one count event; the first
    ordered shape is the answer and comes first; the ball moves the answer's way; the small
    shape has the answer's colour in every frame."""
    for seed in range(100, 125):
        kind = TYPES[seed % 5]
        if frames < MIN_FRAMES[kind]:
            continue
        s = make_sample(seed, frames)
        assert len(s.frames) == frames and all(0 <= f < frames for f in s.evidence)
        coloured = [int(_objects(s, f).sum()) for f in range(frames)]
        if kind == "colour":
            colour = s.labels[..., 1][s.labels[..., 1] >= 2]
            assert set(np.unique(colour)) == {2 + list(COLOURS).index(s.answer_text)}
            assert all(c == coloured[0] for c in coloured) and coloured[0] < 0.02 * 384 * 384
        elif kind == "flash":
            (when,) = s.evidence
            assert 0 < when < frames - 1 and [f for f in range(frames) if coloured[f]] == [when]
            shapes = np.unique(s.labels[when, ..., 0][_objects(s, when)])
            assert list(shapes) == [1 + SHAPES.index(s.answer_text)]
        elif kind == "count":
            red = [f for f in range(frames) if _objects(s, f, RED).any()]
            assert red == list(s.evidence) and len(s.events) == LETTERS.index(s.answer) + 1
        elif kind == "order":
            first, second = s.events
            assert max(first) < min(second)
            assert [f for f in range(frames) if coloured[f]] == sorted(first + second)
            assert list(np.unique(s.labels[first[0], ..., 0][_objects(s, first[0])])) == [1 + SHAPES.index(s.answer_text)]
            assert list(np.unique(s.labels[second[0], ..., 0][_objects(s, second[0])])) != [1 + SHAPES.index(s.answer_text)]
        else:  # motion: the ball's centre moves the answer's way, one step every frame
            centres = []
            for f in range(frames):
                ys, xs = np.nonzero(_objects(s, f) & (s.labels[f, ..., 0] == 1 + SHAPES.index("circle")))
                centres.append((xs.mean(), ys.mean()))
            dx, dy = np.subtract(centres[-1], centres[0])
            way = {"left": -dx, "right": dx, "up": -dy, "down": dy}
            assert max(way, key=way.get) == s.answer_text and max(way.values()) > 150
            assert s.answer_text in DIRECTIONS


def test_a_clip_is_never_shorter_than_its_type_needs():
    for seed, kind in enumerate(TYPES):
        with pytest.raises(ValueError, match="frames"):
            make_sample(seed, MIN_FRAMES[kind] - 1)
        assert len(make_sample(seed, MIN_FRAMES[kind]).frames) == MIN_FRAMES[kind]


def test_manifest_and_clips_are_deterministic_and_read_like_uploads(tmp_path):
    seeds = range(TEST_SEEDS.start, TEST_SEEDS.start + 5)
    first = write_manifest(tmp_path / "a", seeds)
    second = write_manifest(tmp_path / "b", seeds)
    assert first.read_text() == second.read_text()
    items = load_manifest(first)  # stc.eval's own validation
    assert [i.id for i in items] == [f"toy-{s}" for s in seeds]
    assert [i.kind for i in items] == list(TYPES)
    for item in items:
        assert item.video.read_bytes() == (tmp_path / "b" / "clips" / item.video.name).read_bytes()
        video = load_video(item.video, num_frames=32)  # as stc.eval reads it: all 16 frames
        assert video.frames.shape == (FRAMES, 384, 384, 3)
        rendered = make_sample(int(item.id.split("-")[1])).frames
        assert np.abs(video.frames.astype(np.int16) - rendered).mean() < 4  # CRF 18 H.264


# -- what the trainer reads ----------------------------------------------------------------------
def test_training_pixels_are_the_processor_s():
    _, processor = build_toy(0)
    frames = make_sample(7).frames[:3]
    ours = pixel_values(frames)
    theirs = processor.video_processor(videos=[frames], return_tensors="pt")["pixel_values_videos"][0]
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-6)


def test_patch_labels_name_what_covers_each_patch():
    s = make_sample(1, 4)  # a flash clip
    (when,) = s.evidence
    shape, colour = patch_labels(s.labels)
    assert shape.shape == colour.shape == (4, 27 * 27)
    flash = 1 + SHAPES.index(s.answer_text)
    assert (shape[when] == flash).sum() >= 9 and (colour[when] >= 2).sum() >= 9  # a 64-100 px shape
    assert all((colour[f] >= 2).sum() == 0 for f in range(4) if f != when)
    assert ((shape > 0) == (colour > 0)).all()  # an object has a kind and a colour


def test_a_shorter_clip_keeps_its_answer_true():
    rng = np.random.default_rng(0)
    seen = {kind: set() for kind in TYPES}
    for seed in range(200, 230):
        s = make_sample(seed)
        for _ in range(4):
            frames, answer = shorter_clip(s, rng)
            assert frames == sorted(set(frames)) and MIN_FRAMES[s.kind] <= len(frames) < FRAMES
            seen[s.kind].add(len(frames))
            kept = set(frames)
            if s.kind == "count":
                assert LETTERS.index(answer) + 1 == sum(bool(kept & set(e)) for e in s.events)
            else:
                assert answer == s.answer and all(kept & set(e) for e in s.events)
    assert 1 in seen["colour"]  # a single image
    assert all(len(v) >= 5 for v in seen.values())  # lengths vary


def test_a_stuttered_count_clip_is_a_whole_clip_with_fewer_flashes():
    rng = np.random.default_rng(0)
    square = 1 + SHAPES.index("square")
    kept_counts = set()
    for seed in range(203, 243, 5):  # count clips
        s = make_sample(seed)
        assert s.kind == "count"
        flashes = {f for e in s.events for f in e}
        for _ in range(8):
            frames, answer = stuttered_clip(s, rng)
            assert len(frames) == FRAMES
            for i, f in enumerate(frames):  # a frame is itself, or a copy of one without a flash
                assert f == i or (i in flashes and f not in flashes)
            # what the stuttered clip shows: the red square in exactly `answer` frames
            red = ((s.labels[frames][..., 0] == square) & (s.labels[frames][..., 1] == RED)).any(axis=(1, 2))
            assert LETTERS.index(answer) + 1 == int(red.sum()) <= len(s.events)
            kept_counts.add((len(s.events), LETTERS.index(answer) + 1))
    for n in {n for n, _ in kept_counts}:  # 1 to n of n flashes kept
        assert {k for m, k in kept_counts if m == n} == set(range(1, n + 1)), n
    every = make_sample(243, frames=4)  # four flashes in four frames: no frame to copy
    assert len(every.events) == 4 and stuttered_clip(every, rng) is None


# -- training ------------------------------------------------------------------------------------
def test_a_short_stage_a_lowers_its_loss():
    """(with the place term: its error in patches falls too)"""
    torch.set_num_threads(2)
    model, _ = build_toy(0)
    before = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
    curve = pretrain_vision(model, seed=0, steps=24, warmup=4, place=1.0, quiet=True)
    losses, place = [c["loss"] for c in curve], [c["place_err"] for c in curve]
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.3, losses
    assert np.mean(place[-6:]) < np.mean(place[:6]) - 0.1, place
    after = model.model.language_model.state_dict()  # stage A trains the tower only
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_stage_b_answers_with_the_option_s_text_that_stc_eval_reads_as_its_letter():
    """The question's target is the right option's text and <|im_end|> after the exact prompt
    stc.eval builds, and stc.eval's parser reads that text as the right letter."""
    model, processor = build_toy(0)
    prompts = Prompts(model, processor)
    for seed in range(TEST_SEEDS.start, TEST_SEEDS.start + len(TYPES)):
        sample = make_sample(seed)
        ids, targets, start = prompts.answer(sample.kind, sample.answer_text, 5)
        said = processor.tokenizer.decode(targets[:-1])
        assert said == sample.answer_text and parse_answer(said, sample.options) == sample.answer
        assert targets[-1] == prompts.end_id
        assert (ids[0, start:start + 5] == model.config.video_token_id).all()
        assert build_prompt(sample.question, sample.options, "videomme") in processor.tokenizer.decode(ids[0])


def test_a_batch_of_mixed_lengths_costs_what_its_examples_cost_one_by_one():
    """Stage B runs the rows of one length together (no padding, no mask): the batch's loss is
    the mean of each example's loss computed alone, and so is its gradient."""
    torch.set_num_threads(2)
    model, processor = build_toy(0)
    prompts = Prompts(model, processor)
    rng = np.random.default_rng(0)
    pool = encode_pool(model, 3, 6, 1.0, rng)
    examples = [(s, f, frames, answer, grid, task)
                for (s, f), grid, task in zip(pool * 2, (7, 14, 7, 7, 14, 7), ("answer",) * 3 + ("describe",) * 3)
                for frames, answer in [shorter_clip(s, rng)]]
    # two more rows of the first's length (the same clip and text, other features), so that one
    # group runs several rows in one batch while the others run alone
    sample, feats, frames, answer, grid, task = examples[0]
    examples += [(sample, feats.flip(0), frames, answer, grid, task), (sample, feats * 0.5, frames, answer, grid, task)]
    def row(example):
        """(ids [1, L], targets, start, visual tokens) of one example, as stage B builds it."""
        sample, feats, frames, answer, grid, task = example
        visual = visual_tokens(model, feats[frames].float(), grid)
        if task == "describe":
            return (*prompts.description(describe(sample, frames), len(visual)), visual)
        return (*prompts.answer(sample.kind, sample.options[LETTERS.index(answer)], len(visual)), visual)

    lengths = [row(e)[0].shape[1] for e in examples]
    assert len(set(lengths)) > 1 and lengths.count(lengths[0]) >= 3
    loss, records = _batch(model, prompts, examples)
    alone = [_batch(model, prompts, [e])[0] for e in examples]
    # each one against the plain next-token loss of the whole row (its answer's last token too)
    for example, got in zip(examples, alone):
        ids, targets, start, visual = row(example)
        full = torch.cat([ids[0], targets[-1:]])
        emb = model.model.get_input_embeddings()(full)
        emb = torch.cat([emb[:start], visual, emb[start + len(visual):]])
        hidden = model.model.language_model(inputs_embeds=emb[None]).last_hidden_state[0]
        logits = model.lm_head(hidden[:-1])
        n = targets.numel()
        assert torch.equal(full[-n:], targets)
        assert torch.allclose(got, F.cross_entropy(logits[-n:], full[1:][-n:]), atol=1e-5)
    assert torch.allclose(loss, torch.stack(alone).mean(), atol=1e-5)
    assert [r["loss"] for r in records] == pytest.approx([a.item() for a in alone], abs=1e-5)
    head = model.lm_head.weight
    grad = torch.autograd.grad(loss, head)[0]
    grad_alone = torch.autograd.grad(torch.stack(alone).mean(), head)[0]
    assert torch.allclose(grad, grad_alone, atol=1e-6)


def test_two_pools_of_one_length_draw_other_clips_and_the_first_keeps_its_own():
    """The "native" pool has the "long" pool's frame count: it must draw other training clips,
    and adding it must not change what the earlier pools draw (the committed recipe's first
    phases repeat the earlier weights' run)."""
    assert POOLS["native"][1] == POOLS["long"][1]
    draws = {name: pool_rng(0, name, POOLS).integers(TRAIN_SEEDS.stop, size=8).tolist() for name in POOLS}
    assert draws["long"] == np.random.default_rng([0, 1414, POOLS["long"][1]]).integers(TRAIN_SEEDS.stop, size=8).tolist()
    assert draws["short"] == np.random.default_rng([0, 1414, POOLS["short"][1]]).integers(TRAIN_SEEDS.stop, size=8).tolist()
    assert draws["native"] != draws["long"]
    assert pool_rng(0, "native", POOLS).integers(10**9) == pool_rng(0, "native", POOLS).integers(10**9)
    assert pool_rng(1, "native", POOLS).integers(10**9) != pool_rng(0, "native", POOLS).integers(10**9)


QUICK_POOLS = {"short": (6, 4, 3.0), "long": (3, FRAMES, 2.0)}
QUICK_PHASES = (Phase("short", "short", steps=24, batch=8, lr=2e-3, warmup=4),
                Phase("native", "long", steps=2, batch=2, lr=5e-4, warmup=1, native=1.0))


def test_a_short_stage_b_lowers_its_loss_and_leaves_the_tower_alone():
    torch.set_num_threads(2)
    model, processor = build_toy(0)
    tower = {k: v.clone() for k, v in model.model.vision_tower.state_dict().items()}
    curve = train_llm(model, processor, seed=0, phases=QUICK_PHASES, pools=QUICK_POOLS, quiet=True)
    short = [c for c in curve if c["phase"] == "short"]
    first = [c["loss"] for c in short if c["step"] <= 3]
    last = [c["loss"] for c in short if c["step"] > 21]
    assert np.mean(last) < np.mean(first) - 1.0, (first, last)  # from ~ln(vocab) towards the answers
    assert len(curve) == 24 * 8 + 2 * 2
    assert {c["grid"] for c in short} == {7} and {c["grid"] for c in curve if c["phase"] == "native"} == {14}
    assert {c["frames"] for c in short} != {4}  # shorter clips too
    assert {"describe"} < {c["type"] for c in curve}  # captions and questions
    assert all(torch.equal(tower[k], v) for k, v in model.model.vision_tower.state_dict().items())


def test_a_run_saves_a_loadable_checkpoint_and_the_same_seed_trains_the_same_weights(tmp_path):
    torch.set_num_threads(2)
    phases = (Phase("short", "short", steps=2, batch=2, lr=1e-3, warmup=1),
              Phase("long", "long", steps=2, batch=2, lr=1e-3, warmup=1, native=0.5, native_frames=6))
    pools = {"short": (2, 4, 3.0), "long": (2, FRAMES, 2.0)}
    a = train(tmp_path / "a", seed=3, vision_steps=2, phases=phases, pools=pools,
              eval_seeds=range(TEST_SEEDS.start, TEST_SEEDS.start + 2), quiet=True)
    b = train(tmp_path / "b", seed=3, vision_steps=2, phases=phases, pools=pools, eval_seeds=[], quiet=True)
    assert [c["loss"] for c in a] == [c["loss"] for c in b]
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    meta = json.loads((tmp_path / "a" / "train.json").read_text())
    assert [p["steps"] for p in meta["phases"]] == [2, 2] and meta["vision_steps"] == 2
    assert meta["accuracy"]["items"] == 2
    assert (tmp_path / "a" / "loss.csv").read_text().count("\n") == 1 + 2 + 2 * 2 * 2
    llm = stc.load(str(tmp_path / "a"))
    assert llm.model.config.vision_config.image_size == 384 and llm.model.config.vision_config.patch_size == 14


# -- the committed checkpoint --------------------------------------------------------------------
TOY = Path(__file__).resolve().parents[1] / "toy" / "llava-onevision"


def test_the_committed_toy_answers_its_check_questions_as_recorded(tmp_path):
    """toy/llava-onevision, loaded with stc.load and asked as stc.eval asks (uncompressed), gives
    the answers recorded at training time on the first ASKED of its CHECK_ITEMS recorded held-out
    questions (half of them: each question costs ~0.8 s of the suite's budget at 3,136 tokens).

    Tolerance: 2 answers may differ. On the machine that trained it the answers repeat exactly
    (fp32, greedy); another CPU's kernels (SIMD width, thread count) round differently, and a
    greedy letter flips only where two letters' logits are within that rounding. A broken
    checkpoint, processor or prompt moves many answers to one letter, or to chance (~15 of 20
    differ)."""
    record = json.loads((TOY / "accuracy.json").read_text())
    check = record["check"]
    assert len(check["answers"]) == CHECK_ITEMS
    first = check["seeds"][0]
    asked = range(first, first + CHECK_ITEMS // 2)
    result = evaluate(TOY, asked, workdir=tmp_path)
    recorded = {f"toy-{s}": check["answers"][f"toy-{s}"] for s in asked}
    differ = [k for k, v in recorded.items() if result["answers"][k] != v]
    assert len(differ) <= 2, differ
    truth = {f"toy-{s}": question(s)[1] for s in asked}
    correct = sum(result["answers"][k] == truth[k] for k in truth)
    recorded_correct = sum(recorded[k] == truth[k] for k in truth)
    assert abs(correct - recorded_correct) <= 2
    assert recorded_correct >= 0.5 * len(asked)  # far from chance (25%); it records 33 of all 40


def test_the_synthetic_examples_are_the_generator_s_clips_and_the_demo_s_toy_answers_one():
    """examples/toy_*.mp4 are what examples/make_examples.py writes, one per question type; through
    the demo's own runner the offline model (the toy) shows what the README says of them: on the
    flash example at 5% stc answers right, as the baseline (at 2% it no longer does); on the
    motion example at 10% it answers wrong where the baseline is right."""
    from stc import demo as logic
    from stc.eval import build_prompt, parse_answer

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_examples", root / "examples" / "make_examples.py")
    make_examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_examples)
    clips = make_examples.toy_examples()
    assert sorted(name[4:-4] for name in clips) == sorted(TYPES)
    for name, seed in clips.items():
        assert (root / "examples" / name).is_file()
        assert name == f"toy_{make_sample(seed).kind}.mp4"
        video = load_video(root / "examples" / name, num_frames=32)
        assert np.abs(video.frames.astype(np.int16) - make_sample(seed).frames).mean() < 4

    assert logic.FALLBACK_MODEL == logic.TOY_LLAVA
    llm = logic.load_model(logic.TOY_LLAVA)
    # {retention: stc answers right} per example: one comparison each (one baseline, one encoding)
    for kind, cases in (("flash", {0.05: True, 0.02: False}), ("motion", {0.1: False})):
        sample = make_sample(clips[f"toy_{kind}.mp4"])
        result = logic.run_comparison(llm, root / "examples" / f"toy_{kind}.mp4",
                                      build_prompt(sample.question, sample.options, "videomme"),
                                      [stc.STCConfig(retention=r) for r in cases], num_frames=FRAMES)
        assert parse_answer(result.baseline.text, sample.options) == sample.answer, kind
        for run, (retention, stc_right) in zip(result.runs, cases.items()):
            assert run.stats.visual_tokens_stage1 == round(retention * FRAMES * 196)
            got = parse_answer(run.text, sample.options)
            assert (got == sample.answer) is stc_right, (kind, retention, run.text)

