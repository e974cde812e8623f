"""The char-rnn study end to end: a synthetic sweep in MLflow, the leak metric, `raysweep generate`,
the report's Table 5 from the runs, bad input, resume with zero epochs left (about 40 s on 2 cores)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from fakes import recording_layers

from raysweep import cli, sweep, tracking
from raysweep.sweep import SweepOptions, run_sweep
from raysweep.trainables.char_rnn import CharRnnTask
from raysweep.training import LocalSession, TrialContext, run_trial

SEED_TEXT = "To be or not to"
# The real spaces, shrunk: a tiny LSTM, 20k characters an epoch of the synthetic text.
TINY = {"hidden_size": "32", "embed_dim": "16", "seq_len": "64", "batch_size": "32", "epoch_tokens": "20000"}
CFG = {"hidden_size": 32, "num_layers": 2, "embed_dim": 16, "dropout": 0.1, "seq_len": 64, "batch_size": 32,
       "lr": 0.004, "weight_decay": 0.01, "grad_clip": 1.0, "split": "temporal", "tokenizer": "char",
       "epoch_tokens": 20_000, "seed": 0}  # fmt: skip


def _words(text: str) -> int:
    return len(re.findall(r"\w+(?=\W|$)", text))


@pytest.fixture(scope="module")
def split_sweep(ray_session, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The report_split space (random vs temporal) shrunk to seconds on the synthetic text."""
    root = tmp_path_factory.mktemp("char_sweep")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    opts = SweepOptions(study="char_rnn", space="report_split", data="synthetic", epochs=2, tracking_uri=uri,
                        storage_path=str(root / "ray"), experiment="chars", quiet=True, overrides=TINY)  # fmt: skip
    res = run_sweep(opts)
    c = tracking.client(uri)
    exp = c.get_experiment_by_name("chars")
    runs = [r for r in c.search_runs([exp.experiment_id]) if r.data.tags.get(tracking.KIND_TAG) == "trial"]
    return {"uri": uri, "result": res, "runs": {r.data.params["split"]: r for r in runs}}


def test_sweep_logs_perplexity_leak_samples_and_generated_text(split_sweep) -> None:
    res, runs, uri = split_sweep["result"], split_sweep["runs"], split_sweep["uri"]
    assert res.status == "FINISHED" and len(res.trials) == 2 and set(runs) == {"random", "temporal"}
    c = tracking.client(uri)
    for r in runs.values():
        assert r.info.status == "FINISHED"
        m = r.data.metrics
        for name in ("train_loss", "val_loss", "test_loss", "train_ppl", "val_ppl", "test_ppl", "val_bpc",
                     "test_bpc", "train_acc", "val_acc", "test_acc", "leak_ngram32", "num_params"):  # fmt: skip
            assert math.isfinite(m[name]), name
        assert m["val_ppl"] == pytest.approx(math.exp(m["val_loss"]))
        assert m["test_bpc"] == pytest.approx(m["test_loss"] / math.log(2))  # char tokens: bits/char
        assert len(c.get_metric_history(r.info.run_id, "val_ppl")) == 2
        top = {a.path for a in c.list_artifacts(r.info.run_id)}
        assert {"generated.txt", "samples", "model"} <= top
        assert {a.path for a in c.list_artifacts(r.info.run_id, "samples")} == {"samples/epoch_001.txt",
                                                                               "samples/epoch_002.txt"}  # fmt: skip
        assert "model/tokenizer.json" in {a.path for a in c.list_artifacts(r.info.run_id, "model")}
        text = c.download_artifacts(r.info.run_id, "generated.txt", str(Path(uri[10:]).parent))
        text = Path(text).read_text()
        assert text.startswith(SEED_TEXT) and _words(text[len(SEED_TEXT) :]) >= 10
    leak = {split: r.data.metrics["leak_ngram32"] for split, r in runs.items()}
    assert leak["random"] > 0.5 and leak["temporal"] < 0.05, leak
    assert res.best["config"]["split"] == "temporal"  # the leaky split is shown, never crowned
    assert res.best["run_id"] == runs["temporal"].info.run_id


def test_report_table5_reads_the_sweeps_metric_names(split_sweep) -> None:
    from raysweep.analysis.char_rnn import generated, table5
    from raysweep.analysis.report import study_runs

    ctx = study_runs("chars", split_sweep["uri"])["char_rnn"]
    frame = table5(ctx).frame.set_index("split")
    assert set(frame.index) == {"random", "temporal"}
    vs = "vs temporal (95% CI)"  # the reference row has no difference to itself
    assert not frame.drop(columns=["runs", vs]).isna().any().any()  # every column found its metric
    assert frame[vs].isna().to_dict() == {"random": False, "temporal": True}
    assert float(frame.loc["random", "val windows leaking 32-grams"]) > 0.5
    assert generated(ctx).body.startswith(SEED_TEXT)


def test_generate_prints_the_seed_and_ten_words_deterministically(split_sweep, capsys) -> None:
    run_id = split_sweep["runs"]["temporal"].info.run_id
    argv = ["generate", "--run", run_id, "--seed-text", SEED_TEXT, "--length", "30", "--temperature", "0.7",
            "--top-k", "10", "--seed", "3", "--tracking-uri", split_sweep["uri"]]  # fmt: skip
    assert cli.main(argv) == 0
    first = capsys.readouterr().out.strip()
    assert first.startswith(SEED_TEXT) and _words(first[len(SEED_TEXT) :]) >= 10
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == first


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--run", "0123456789abcdef"], "no run '0123456789abcdef'"),
        (["--run", "PARENT"], "not a char_rnn trial"),
        (["--run", "X", "--length", "0"], "--length must be >= 1"),
        (["--run", "X", "--temperature", "-1"], "--temperature must be >= 0"),
        (["--run", "X", "--top-k", "-2"], "--top-k must be >= 1"),
        (["--run", "X", "--seed-text", ""], "--seed-text must not be empty"),
    ],
)
def test_generate_bad_input_gets_one_line_and_exit_2(split_sweep, argv, message, capsys) -> None:
    parent = split_sweep["result"].tracking.parent_run_id
    argv = [parent if a == "PARENT" else a for a in argv]
    seed = [] if "--seed-text" in argv else ["--seed-text", SEED_TEXT]
    assert cli.main(["generate", *argv, *seed, "--tracking-uri", split_sweep["uri"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("raysweep: error:"), err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "hidden_size=0"], "hidden_size=0 must be >= 1"),
        (["--set", "num_layers=4"], "num_layers=4 must be <= 3"),
        (["--set", "split=foo"], "split='foo' is not one of ['temporal', 'random']"),
        (["--set", "tokenizer=bpe"], "tokenizer='bpe' is not one of ['char', 'word']"),
        (["--set", "seq_len=8"], "seq_len=8 must be >= 31"),
        (["--set", "dropout=1.5"], "dropout=1.5 must be <= 0.95"),
        (["--space", "report_ablation"], "study 'char_rnn' has no space 'report_ablation'"),
        (["--data", "/no/such/text.txt"], "no such file or folder: /no/such/text.txt"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2_before_ray(argv, message, capsys, monkeypatch, tracking_uri) -> None:
    monkeypatch.setattr(sweep, "init_ray", lambda *a, **k: pytest.fail("Ray started on bad input"))
    assert cli.main(["sweep", "char_rnn", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("raysweep: error:"), err


def _ctx(epochs: int) -> TrialContext:
    return TrialContext(study="char_rnn", data="synthetic", epochs=epochs, metric="val_loss", mode="min")


def test_resume_with_zero_epochs_left_reports_the_recorded_result(tmp_path) -> None:
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    run_trial(CharRnnTask, CFG, _ctx(1), s)
    again = LocalSession(workdir=str(tmp_path), cpus=1)
    run_trial(CharRnnTask, CFG, _ctx(1), again)  # the checkpoint says done: nothing trains
    assert len(again.results) == 1 and again.results[0] == s.results[0]
    assert {"test_ppl", "test_bpc", "leak_ngram32"} <= set(again.results[0])


def test_word_tokenizer_measures_bits_per_character_of_the_text(tmp_path) -> None:
    last = run_trial(CharRnnTask, {**CFG, "tokenizer": "word", "num_layers": 1}, _ctx(1),
                     LocalSession(workdir=str(tmp_path), cpus=1))  # fmt: skip
    assert math.isfinite(last["val_loss"]) and last["leak_ngram32"] < 0.05
    # a word token stands for several characters: fewer bits per character than per token
    assert 0 < last["val_bpc"] < last["val_loss"] / math.log(2)


def _bf16_lstm_runs_here() -> bool:
    """oneDNN has no bf16 LSTM on some CPUs (seen on an AVX2-only AMD EPYC): autocast raises there."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(4, 4, batch_first=True)(torch.randn(1, 2, 4))
    except RuntimeError:
        return False
    return True


@pytest.mark.skipif(not _bf16_lstm_runs_here(), reason="this CPU's oneDNN has no bf16 LSTM")
def test_bf16_autocast_path_trains_on_cpu(tmp_path, tracking_uri) -> None:
    """``amp=bf16``: the trial's LSTM and head compute in bf16 at every step, and the run records it."""
    info = tracking.start_sweep_run(tracking_uri, "t", "sweep", {}, {})
    ctx = TrialContext(study="char_rnn", data="synthetic", epochs=1, metric="val_loss", mode="min", amp="bf16",
                       tracking=info)  # fmt: skip
    seen: list[tuple[bool, str, torch.dtype]] = []
    tasks: list[CharRnnTask] = []
    last = run_trial(recording_layers(CharRnnTask, seen, tasks), CFG, ctx, LocalSession(workdir=str(tmp_path), cpus=1))
    training = [(layer, dtype) for grad, layer, dtype in seen if grad]
    assert len(training) == 2 * tasks[0].steps_per_epoch  # the LSTM and the head, every step...
    assert set(training) == {("LSTM", torch.bfloat16), ("Linear", torch.bfloat16)}, training  # ...in bf16
    assert math.isfinite(last["val_loss"]) and math.isfinite(last["test_ppl"])
    (run,) = tracking.child_runs(tracking_uri, info)
    assert run.data.params["amp"] == "bf16" and run.data.params["amp_reason"] == "--amp bf16 asked for"


def test_prepare_resolves_every_data_form_to_one_cached_text(data_dir, tmp_path, monkeypatch) -> None:
    from raysweep.data.shakespeare import HUB_ID, TINY_SHAKESPEARE, load_cached_text, load_text, prepare
    from raysweep.data.sources import resolve_source

    folder = (data_dir / "tiny_shakespeare").resolve()
    source, digest = prepare(str(data_dir))  # the data root: its tiny_shakespeare/ folder
    assert source == str(folder) and prepare(None) == (source, digest)  # $RAYSWEEP_DATA_DIR
    assert prepare(str(folder / "input.txt"))[1] == digest  # the plain file cut 90/5/5: the same text
    texts, _ = load_cached_text(source)
    assert len(texts.train) == 1_003_854 and texts.test == load_text(folder).test
    play = tmp_path / "play.txt"
    play.write_text("Enter HAMLET.\n" * 20, encoding="utf-8")
    assert prepare(str(play))[0] == str(play.resolve())
    monkeypatch.delenv("RAYSWEEP_DATA_DIR")
    assert resolve_source(None, TINY_SHAKESPEARE) == resolve_source("tiny_shakespeare", TINY_SHAKESPEARE) == HUB_ID


def test_generate_without_seed_text_continues_the_runs_own_seed(split_sweep, capsys) -> None:
    """`raysweep generate --run ID` alone: the run's `--option seed_text` if it had one, else "To be or not to".
    Kept last in this module: it adds a param to the fixture's temporal run."""
    run_id, uri = split_sweep["runs"]["temporal"].info.run_id, split_sweep["uri"]
    argv = ["generate", "--run", run_id, "--length", "20", "--tracking-uri", uri]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.startswith(SEED_TEXT)
    tracking.RunLogger(uri, run_id).log_params({"option.seed_text": "The king"})  # as `--option seed_text=...` logs it
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("The king")
