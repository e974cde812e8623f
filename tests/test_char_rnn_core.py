"""Core of the char-rnn study: text loading, tokenisers, splits, leak metric, model, generation.

Small and CPU-only (the whole file runs in well under a minute on two cores). The one test on the
real text needs ``RAYSWEEP_DATA_DIR`` (the folder holding ``tiny_shakespeare/``) and is skipped
without it.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raysweep.data import DataError
from raysweep.data.shakespeare import HUB_ID, load_text, synthetic_text
from raysweep.data.tokenizers import UNK_CHAR, CharTokenizer, WordTokenizer, build_tokenizer, tokenizer_from_dict
from raysweep.data.windows import Windows, batches, make_splits, ngram_leak
from raysweep.metrics import bits_per_char, bits_per_dim, perplexity
from raysweep.models import build_model, count_parameters
from raysweep.models.char_lstm import evaluate, generate, lm_metrics


def _complete_words(text: str) -> int:
    return len(re.findall(r"\w+(?=\W)", text))


# ---------------------------------------------------------------------------------- tokenisers


def test_char_tokenizer_round_trip_unknown_and_json() -> None:
    tok = build_tokenizer("char", "hello, world!\n")
    assert isinstance(tok, CharTokenizer)
    assert tok.vocab_size == len(set("hello, world!\n")) + 1
    text = "world, hello!\nold"
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.decode(torch.as_tensor(ids)) == text
    unk = tok.encode("hXe")
    assert unk[1] == tok.unk_id == tok.vocab_size - 1
    assert tok.decode(unk) == f"h{UNK_CHAR}e"
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert isinstance(again, CharTokenizer) and again.chars == tok.chars
    with pytest.raises(ValueError):
        tok.decode([tok.vocab_size])


def test_word_tokenizer_round_trip_cap_and_json() -> None:
    train = "To be, or not to be:  that is the question.\n\nTo sleep;   perchance to dream!\n"
    tok = build_tokenizer("word", train)
    assert isinstance(tok, WordTokenizer)
    assert tok.decode(tok.encode(train)) == train  # words, punctuation and whitespace runs
    other = "To be is to dream, perchance.\n"
    assert tok.decode(tok.encode(other)) == other
    ids = tok.encode("To be Hamlet")
    assert ids[-1] == tok.unk_id and tok.decode(ids) == "To be <unk>"
    small = WordTokenizer.from_text(train, max_vocab=5)
    assert small.vocab_size == 5
    assert small.tokens[0] == " "  # most frequent first
    again = tokenizer_from_dict(json.loads(json.dumps(small.to_dict())))
    assert isinstance(again, WordTokenizer) and again.tokens == small.tokens


# ------------------------------------------------------------------------------------- loading


@pytest.mark.skipif(
    not os.environ.get("RAYSWEEP_DATA_DIR"),
    reason="RAYSWEEP_DATA_DIR not set (the folder holding tiny_shakespeare/); CI sets it",
)
def test_real_text_local_copy_has_65_chars_and_hub_cut() -> None:
    folder = Path(os.environ["RAYSWEEP_DATA_DIR"]) / "tiny_shakespeare"
    texts = load_text(None)  # resolves $RAYSWEEP_DATA_DIR/tiny_shakespeare
    assert "local folder" in texts.source
    assert (len(texts.train), len(texts.validation), len(texts.test)) == (1_003_854, 55_770, 55_770)
    tok = build_tokenizer("char", texts.train)
    assert len(tok.chars) == 65 and tok.vocab_size == 66
    assert not (tok.encode(texts.validation + texts.test) == tok.unk_id).any()
    from_txt = load_text(folder / "input.txt")  # the plain file, cut 90/5/5, is the hub's cut
    assert (from_txt.train, from_txt.validation, from_txt.test) == (
        texts.train,
        texts.validation,
        texts.test,
    )


def test_txt_file_source_cut_90_5_5(tmp_path: Path) -> None:
    text = synthetic_text(2000, seed=3)
    path = tmp_path / "play.txt"
    path.write_text(text, encoding="utf-8")
    texts = load_text(str(path))
    assert (len(texts.train), len(texts.validation), len(texts.test)) == (1800, 100, 100)
    assert texts.train + texts.validation + texts.test == text
    assert str(path) in texts.source


def test_synthetic_source_is_deterministic() -> None:
    a, b = load_text("synthetic"), load_text("synthetic")
    assert a == b and len(a.train) > 10_000 and "synthetic" in a.source


def _assert_helpful(err: pytest.ExceptionInfo[DataError], *needles: str) -> None:
    msg = str(err.value)
    for needle in ("--data", "RAYSWEEP_DATA_DIR", *needles):
        assert needle in msg, f"{needle!r} not in {msg!r}"
    # no chained traceback from inside datasets: nothing attached, or attached but suppressed
    assert err.value.__cause__ is None
    assert err.value.__context__ is None or err.value.__suppress_context__
    assert "\n" not in msg  # one message, one line


def test_missing_path_raises_data_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "tiny_shakespeare"
    with pytest.raises(DataError) as err:
        load_text(str(missing))
    _assert_helpful(err, str(missing))


def test_wrong_layout_folders_raise_data_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "weights.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DataError) as err:
        load_text(junk)
    _assert_helpful(err, str(junk), "hub layout")

    only_txt = tmp_path / "only_txt"  # datasets reads it as a text set with a train split only
    only_txt.mkdir()
    (only_txt / "input.txt").write_text(synthetic_text(500), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_text(only_txt)
    _assert_helpful(err, "validation", str(only_txt / "input.txt"))

    import pyarrow as pa
    import pyarrow.parquet as pq

    wrong_column = tmp_path / "wrong_column"
    (wrong_column / "plain_text").mkdir(parents=True)
    for split in ("train", "validation", "test"):
        table = pa.table({"body": ["some text"]})
        pq.write_table(table, wrong_column / "plain_text" / f"{split}-00000-of-00001.parquet")
    with pytest.raises(DataError) as err:
        load_text(wrong_column)
    _assert_helpful(err, "'text' column")


def test_non_utf8_and_empty_files_raise_data_error(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Café au lait, Ophélie\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_text(latin1)
    _assert_helpful(err, "not UTF-8", str(latin1))

    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_text(empty)
    _assert_helpful(err, "no text")


def test_unreachable_hub_without_local_copy_raises_data_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError(f"Couldn't reach '{HUB_ID}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.delenv("RAYSWEEP_DATA_DIR", raising=False)
    with pytest.raises(DataError) as err:
        load_text(None)
    _assert_helpful(err, HUB_ID, "is not set", "Couldn't reach")


# -------------------------------------------------------------------------- splits and leakage


@pytest.fixture(scope="module")
def synthetic_ids() -> tuple[CharTokenizer, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    texts = load_text("synthetic")
    tok = CharTokenizer.from_text(texts.train)
    return tok, texts.encode(tok)


def _global_spans(w: Windows) -> tuple[np.ndarray, np.ndarray]:
    starts = w.starts.numpy() + w.offset
    return starts, starts + w.seq_len + 1


def test_temporal_split_keeps_order_and_never_overlaps(synthetic_ids) -> None:
    _, ids = synthetic_ids
    full = np.concatenate(ids)
    data = make_splits(*ids, split="temporal", seq_len=64, seed=0)
    (tr_s, tr_e), (va_s, va_e), (te_s, te_e) = map(
        _global_spans, (data.train, data.validation, data.test)
    )
    assert tr_e.max() <= va_s.min() and va_e.max() <= te_s.min()  # train < validation < test
    assert va_s.min() >= len(ids[0]) and te_s.min() >= len(ids[0]) + len(ids[1])
    for w in (data.train, data.validation, data.test):  # windows are the text at those positions
        s = int(w.starts[-1])
        assert np.array_equal(w.tokens[s : s + 65].numpy(), full[w.offset + s : w.offset + s + 65])
    assert np.all(np.diff(data.test.starts.numpy()) == 64)  # test: non-overlapping windows


def test_random_split_is_seeded_partition(synthetic_ids) -> None:
    _, ids = synthetic_ids
    a = make_splits(*ids, split="random", seq_len=64, seed=0)
    b = make_splits(*ids, split="random", seq_len=64, seed=0)
    c = make_splits(*ids, split="random", seq_len=64, seed=1)
    assert torch.equal(a.validation.starts, b.validation.starts)
    assert not torch.equal(a.validation.starts, c.validation.starts)
    tr, va = set(a.train.starts.tolist()), set(a.validation.starts.tolist())
    assert not tr & va
    assert sorted(tr | va) == list(range(0, len(ids[0]) + len(ids[1]) - 64, 32))
    share = len(ids[1]) / (len(ids[0]) + len(ids[1]))
    assert len(va) == round(len(tr | va) * share)
    assert a.test.offset == len(ids[0]) + len(ids[1])  # test is the hub's test part


def test_leak_metric_definition_on_a_tiny_example() -> None:
    assert ngram_leak("abcdefgh", ["xxabcxx", "yyyyyyy"], n=3) == 0.5
    assert ngram_leak("abcdefgh", ["xxabxcx"], n=3) == 0.0
    tokens = torch.tensor([1, 2, 3, 4, 9, 9, 9, 9, 1, 2, 3, 8])
    train = Windows(tokens, torch.tensor([0]), seq_len=3)  # covers 1 2 3 4
    val = Windows(tokens, torch.tensor([4, 8]), seq_len=3)  # 9 9 9 9 | 1 2 3 8
    assert ngram_leak(train, val, n=3) == 0.5
    assert ngram_leak(train, val, n=4) == 0.0


def test_leak_is_zero_for_temporal_and_high_for_random(synthetic_ids) -> None:
    _, ids = synthetic_ids
    temporal = make_splits(*ids, split="temporal", seq_len=128)
    random_ = make_splits(*ids, split="random", seq_len=128)
    assert ngram_leak(temporal.train, temporal.validation, n=32) <= 0.02
    assert ngram_leak(random_.train, random_.validation, n=32) >= 0.5
    # test is the same held-out part in both set-ups (one chance repeat in 19 windows here)
    test_leak = ngram_leak(temporal.train, temporal.test, n=32)
    assert test_leak == ngram_leak(random_.train, random_.test, n=32) <= 0.1


def test_batches_shapes_shift_and_seed() -> None:
    tokens = torch.arange(1000) % 97
    w = Windows(tokens, torch.arange(0, 1000 - 16, 8), seq_len=16)
    got = list(batches(w, 32, seed=5))
    assert [x.shape for x, _ in got[:-1]] == [torch.Size([32, 16])] * (len(got) - 1)
    assert sum(x.shape[0] for x, _ in got) == len(w)
    for x, y in got:
        assert x.dtype == torch.int64 and y.shape == x.shape
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        assert torch.equal(y[:, -1], (x[:, -1] + 1) % 97)  # ... continued by the next token
    again = list(batches(w, 32, seed=5))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got, again, strict=True))
    other = next(iter(batches(w, 32, seed=6)))[0]
    assert not torch.equal(got[0][0], other)
    ordered = next(iter(batches(w, 4, shuffle=False)))[0]
    assert torch.equal(ordered[:, 0], torch.tensor([0, 8, 16, 24]))
    assert all(x.shape[0] == 32 for x, _ in batches(w, 32, drop_last=True))


# ------------------------------------------------------------------------------ model, metrics


def test_model_defaults_shapes_and_state_carry() -> None:
    model = build_model("char_lstm")
    assert count_parameters(model) == 876_929 and model.vocab_size == 65
    model = build_model("char_lstm", vocab_size=20, embed_dim=8, hidden_size=16, num_layers=3)
    model.eval()
    x = torch.randint(0, 20, (3, 12))
    logits, (h, c) = model(x)
    assert logits.shape == (3, 12, 20) and h.shape == c.shape == (3, 3, 16)
    first, state = model(x[:, :5])  # carrying the state (as the sampler does) = one long pass
    second, _ = model(x[:, 5:], state)
    assert torch.allclose(torch.cat([first, second], dim=1), logits, atol=1e-5)
    with pytest.raises(ValueError):
        build_model("char_lstm", num_layers=4)


def test_metrics_helpers() -> None:
    m = lm_metrics(math.log(2))
    assert m["perplexity"] == pytest.approx(2.0) and m["bpc"] == pytest.approx(1.0)
    assert "bpc" not in lm_metrics(1.0, char_level=False)
    assert lm_metrics(1e4)["perplexity"] == math.inf
    assert perplexity(math.log(3)) == pytest.approx(3.0) and perplexity(1e4) == math.inf
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert bits_per_char(4 * math.log(2), chars_per_token=4.0) == pytest.approx(1.0)  # a 4-character word token
    assert bits_per_dim(8 * math.log(2)) == pytest.approx(8.0)


@pytest.fixture(scope="module")
def overfit() -> tuple[torch.nn.Module, CharTokenizer, Windows, float]:
    """A small LSTM trained 300 steps on 1,000 characters (a few seconds on two cores)."""
    torch.manual_seed(0)
    text = synthetic_text(1000, seed=1)
    tok = CharTokenizer.from_text(text)
    w = Windows(torch.from_numpy(tok.encode(text)), torch.arange(0, len(text) - 64), seq_len=64)
    model = build_model(
        "char_lstm",
        vocab_size=tok.vocab_size,
        embed_dim=32,
        hidden_size=128,
        num_layers=1,
        dropout=0.0,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    step = 0
    while step < 300:
        for x, y in batches(w, 32, seed=step):
            logits, _ = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == 300:
                break
    return model, tok, w, evaluate(model, batches(w, 256, shuffle=False))["loss"]


def test_model_overfits_a_tiny_text(overfit) -> None:
    model, tok, w, loss = overfit
    assert loss < 0.3 * math.log(tok.vocab_size), loss
    metrics = evaluate(model, batches(w, 256, shuffle=False))
    assert metrics["accuracy"] > 0.8 and metrics["bpc"] == pytest.approx(loss / math.log(2))
    assert model.training  # evaluate restores the mode


def test_generate_is_deterministic_with_ten_words(overfit) -> None:
    model, tok, _, _ = overfit
    seed_text = "Thou art"
    out = generate(model, tok, seed_text, length=20, temperature=0.8, top_k=10, seed=0)
    assert out.startswith(seed_text)
    assert _complete_words(out[len(seed_text) :]) >= 10
    assert out == generate(model, tok, seed_text, length=20, temperature=0.8, top_k=10, seed=0)
    untrained = build_model("char_lstm", vocab_size=tok.vocab_size, embed_dim=8, hidden_size=16)
    samples = {generate(untrained, tok, seed_text, length=20, seed=s) for s in range(3)}
    assert len(samples) == 3  # the seed matters (the trained model is too sure to show it)
    greedy = generate(model, tok, seed_text, length=20, temperature=0)
    assert greedy == generate(model, tok, seed_text, length=20, temperature=0, seed=7)
    assert UNK_CHAR not in generate(model, tok, "Zounds", length=50, temperature=2.0)


def test_generate_with_word_tokenizer() -> None:
    torch.manual_seed(0)
    tok = WordTokenizer.from_text(synthetic_text(3000))
    model = build_model("char_lstm", vocab_size=tok.vocab_size, embed_dim=8, hidden_size=16)
    out = generate(model, tok, "To be or not to", length=5, seed=3)
    assert out.startswith("To be or not to")
    assert _complete_words(out[len("To be or not to") :]) >= 10
    assert out == generate(model, tok, "To be or not to", length=5, seed=3)
    assert "<unk>" not in out
