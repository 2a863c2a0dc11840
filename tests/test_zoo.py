import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from irlm import zoo
from tests.conftest import TEST_SPEC


def test_load_trains_caches_and_reloads(cache):
    model, tok = zoo.load(TEST_SPEC.name, progress=False)
    path = zoo.cache_path(TEST_SPEC.name)
    assert (path / "model.safetensors").exists() and not list(path.glob("*.bin"))
    assert model.config.irlm_format == "irlm-plain-v1" and tok.pad_token and tok.eos_token
    start = time.perf_counter()
    again, _ = zoo.load(TEST_SPEC.name)
    assert time.perf_counter() - start < 1.0
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)
    assert zoo.info(TEST_SPEC.name)["n_params"] == sum(p.numel() for p in model.parameters())
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def weights_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


def test_training_is_deterministic(cache):
    a, _, _ = zoo.train_tiny(TEST_SPEC, progress=False)
    b, _, _ = zoo.train_tiny(TEST_SPEC, progress=False)
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)
    # and in a fresh interpreter, as a reader's first run would train it
    code = (
        "from irlm import zoo; from tests.conftest import TEST_SPEC; from tests.test_zoo import weights_hash; "
        "print(weights_hash(zoo.train_tiny(TEST_SPEC, progress=False)[0]))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == weights_hash(a)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / "model.safetensors").write_bytes(b"garbage"),
        lambda p: (p / "manifest.json").unlink(),
        lambda p: (p / "manifest.json").write_text("{not json"),
        lambda p: (p / "manifest.json").write_text(
            json.dumps({**json.loads((p / "manifest.json").read_text()), "digest": "another-spec"})
        ),
    ],
    ids=["corrupt-weights", "no-manifest", "bad-manifest", "mismatched-spec"],
)
def test_damaged_cache_is_retrained_with_warning(cache, damage):
    zoo.load(TEST_SPEC.name, progress=False)
    damage(zoo.cache_path(TEST_SPEC.name))
    with pytest.warns(UserWarning, match="retraining"):
        model, _ = zoo.load(TEST_SPEC.name, progress=False)
    assert zoo._verify(zoo.cache_path(TEST_SPEC.name), TEST_SPEC) is None


def test_crash_mid_save_leaves_old_entry_loadable(cache, monkeypatch):
    model, tok = zoo.load(TEST_SPEC.name, progress=False)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch, pytest.raises(RuntimeError):
        patch.setattr(tok.__class__, "save_pretrained", crash)
        zoo._save_atomically(model, tok, {}, TEST_SPEC, zoo.cache_path(TEST_SPEC.name))
    assert zoo._verify(zoo.cache_path(TEST_SPEC.name), TEST_SPEC) is None
    assert not [p for p in zoo.cache_root().iterdir() if p.name.startswith(".")]


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("IRLM_CACHE", str(tmp_path))
    assert zoo.cache_root() == tmp_path


def test_unknown_name_gives_clear_error(cache):
    with pytest.raises(ValueError, match="neither a zoo model"):
        zoo.load(str(cache / "no-such-model"))


def test_corpus_excludes_held_out_queries():
    from irlm.tasks import make_splits

    held = {q.text for q in make_splits().test}
    assert not any(p.split("Q: ")[1].split("\n")[0] in held for p, _ in zoo.corpus(3000, seed=1))


def test_tokenizer_splits_digits(tiny_model):
    _, tok = tiny_model
    pieces = tok.convert_ids_to_tokens(tok("Q: 1234+56", add_special_tokens=False)["input_ids"])
    assert [p for p in pieces if p.isdigit()] == list("123456")
    assert tok.decode(tok("Q: 1234+56\nA: ")["input_ids"]) == "Q: 1234+56\nA: "


def test_data_path_lives_in_the_cache(cache):
    assert zoo.data_path("rs") == cache / "data" / "rs"
    for bad in ["", "../x", "a/b", ".hidden"]:
        with pytest.raises(ValueError, match="plain folder name"):
            zoo.data_path(bad)


def test_corpus_mix_by_op_and_paraphrases():
    from collections import Counter

    from irlm.tasks import PARAPHRASES

    spec = zoo.ZOO["tiny-arith-ops"]
    pairs = zoo.corpus(4000, seed=0, spec=spec)
    styles = Counter(("+" if "+" in p.split("\n")[0] else "-", p.split("\n")[1]) for p, _ in pairs)
    columns, sums = "Work column by column with carries.", "Add up each column and write the whole column sum."
    assert styles["+", columns] > 10 * styles["-", columns] and styles["-", sums] > 10 * styles["+", sums]
    reworded = sum(n for (_, text), n in styles.items() if text in {p.text for p in PARAPHRASES.values()})
    assert 0.1 < reworded / len(pairs) < 0.25
    assert zoo.corpus(500, seed=0) == zoo.corpus(500, seed=0, spec=zoo.ZOO["tiny-arith"])


@pytest.mark.parametrize(
    "change, match",
    [
        ({"mix_by_op": (("*", zoo.TinySpec.mix),)}, "mix_by_op"),
        ({"mix_by_op": (("+", (("no-such-style", 1.0),)),)}, "no-such-style"),
        ({"paraphrase_share": 1.5}, "paraphrase_share"),
    ],
)
def test_corpus_bad_spec(change, match):
    import dataclasses

    with pytest.raises(ValueError, match=match):
        zoo.corpus(10, seed=0, spec=dataclasses.replace(zoo.ZOO["tiny-arith"], **change))


def test_save_dataset_is_quiet_and_round_trips(cache, capsys):
    from datasets import Dataset, load_from_disk

    path = zoo.save_dataset(Dataset.from_dict({"x": [1, 2]}), "saved")
    assert path == zoo.data_path("saved") and load_from_disk(str(path))["x"] == [1, 2]
    assert "Saving" not in capsys.readouterr().err


def test_countdown_corpus_holds_correct_traces_of_unseen_puzzles():
    from irlm import countdown

    held = set(countdown.make_splits().test)
    pairs = zoo.corpus(300, seed=0, spec=zoo.ZOO["tiny-countdown"])
    for prompt, response in pairs:
        puzzle = countdown.Puzzle.parse(prompt.removeprefix("Q: ").removesuffix("\nA: "))
        assert puzzle not in held and countdown.is_correct(puzzle, response)
    import dataclasses

    with pytest.raises(ValueError, match="task must be one of"):
        zoo.corpus(1, seed=0, spec=dataclasses.replace(zoo.ZOO["tiny-arith"], task="chess"))


def test_corpus_mix_by_operation_and_length():
    from collections import Counter

    from irlm.tasks import Query

    assert [zoo.query_kind(Query(*q)) for q in [(5, 7, "+"), (99, 12, "-"), (100, 3, "+"), (999, 998, "-")]] == [
        "+ short",
        "- short",
        "+ long",
        "- long",
    ]
    spec = zoo.ZOO["tiny-arith-oplen"]
    pairs = zoo.corpus(4000, seed=0, spec=spec)
    texts = {s: zoo.get_prompt(s).text for s in ["columns", "full_sums", "last_to_first"]}
    # the plain prompt pads operands to three digits: "Q: 057+028"; a long query has a non-zero hundreds digit
    kinds = Counter()
    for p, _ in pairs:
        head, instruction = p.split("\n")[:2]
        q = Query.parse(head.removeprefix("Q: "))
        kinds[zoo.query_kind(q), instruction] += 1
    for kind, style in [("+ long", "columns"), ("- long", "full_sums"), ("+ short", "last_to_first")]:
        others = [s for s in texts if s != style]
        assert all(kinds[kind, texts[style]] > 10 * kinds[kind, texts[o]] for o in others), kind
