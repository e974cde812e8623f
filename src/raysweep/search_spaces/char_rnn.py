"""Search spaces of the char-rnn study (the report's §3): hidden size, random vs temporal split.

What changes the measurement is a hyperparameter (logged as a param, part of a trial's identity,
checked here before Ray starts): the tokenizer (it sets the unit of the losses), the split, and
``epoch_tokens`` (the training budget, so ``quick`` can carry it). What only changes what gets
logged (sample length, generation temperature) is a runtime ``--option`` of the trainable.

The report's parameter counts (0.43M / 1.23M / 4.02M for hidden 256 / 512 / 1024) are exactly
those of a one-layer GRU with 256-dimensional embeddings over 65 characters; the report spaces use
the same shape with the LSTM the report describes (one layer, embeddings 256), which has 4/3 of
the GRU's recurrent weights: 0.56M / 1.63M / 5.34M.
"""

from raysweep.search_spaces import Dim, Hyper, Space
from raysweep.study import Study

# Restated from the data and model modules so that planning a sweep never imports torch;
# tests/test_layering.py checks that they agree.
SPLIT_KINDS = ("temporal", "random")  # raysweep.data: how validation text is cut from training text
MAX_LAYERS = 3  # raysweep.models.char_lstm.MAX_LAYERS

LEAK_N = 32  # the leak metric compares 32-grams: a training window must hold one

HYPERS = {
    h.name: h
    for h in (
        Hyper("hidden_size", int, "LSTM units per layer (size of h and c)", low=1, high=8192, required=True),
        Hyper("num_layers", int, "stacked LSTM layers", low=1, high=MAX_LAYERS, required=True),
        Hyper("embed_dim", int, "size of the token embedding, trained from scratch", low=1, high=4096, required=True),
        Hyper("dropout", float, "drop probability between LSTM layers and before the output layer",
              low=0.0, high=0.95, required=True),  # fmt: skip
        Hyper("seq_len", int, f"tokens per training window = truncated-BPTT length (>= {LEAK_N - 1}: the "
              f"{LEAK_N}-gram leak needs windows of {LEAK_N} tokens)", low=LEAK_N - 1, high=4096,
              required=True),  # fmt: skip
        Hyper("batch_size", int, "windows per optimizer step", low=1, high=8192, required=True),
        Hyper("lr", float, "AdamW peak learning rate (per step; linear warm-up, cosine decay to 1/10)",
              low=0.0, low_open=True, high=1.0, required=True),  # fmt: skip
        Hyper("weight_decay", float, "AdamW decoupled weight decay (per unit of lr)", low=0.0, high=1.0),
        Hyper("grad_clip", float, "max global gradient norm", low=0.0, low_open=True),
        Hyper("split", str, "train/validation cut: temporal (validation follows the training text) or "
              "random (shuffled overlapping windows: leaks)", choices=SPLIT_KINDS, required=True),  # fmt: skip
        Hyper("tokenizer", str, "char (next-character model, losses in nats/char) or word (words, "
              "spaces and punctuation; nats/token); fit on the training text only", choices=("char", "word")),
        Hyper("epoch_tokens", int, "training tokens per epoch, a fresh seeded draw of windows each epoch, at most "
              "one pass; 0: every training window once (about 2x the text: windows overlap by half)", low=0),
        Hyper("seed", int, "seed of init, window order and dropout", low=0),
    )
}

_FIXED = (
    Dim("weight_decay", (0.01,), "fixed"),
    Dim("grad_clip", (1.0,), "fixed"),
    Dim("tokenizer", ("char",), "fixed"),
    Dim("seed", (0,), "nuisance"),
)
# The report's model: one layer, 256-dim embeddings (see the module docstring), trained to early stop.
_REPORT = (
    Dim("num_layers", (1,), "fixed"),
    Dim("embed_dim", (256,), "fixed"),
    Dim("dropout", (0.2,), "fixed"),
    Dim("seq_len", (128,), "fixed"),
    Dim("batch_size", (64,), "fixed"),
    Dim("lr", (0.002,), "nuisance"),
    Dim("epoch_tokens", (0,), "fixed"),
)

SPACES = {
    s.name: s
    for s in (
        Space(
            "report_hidden",
            "the report's hidden-size ablation (Table 6, Figure 6), temporal split",
            (Dim("hidden_size", (256, 512, 1024)), Dim("split", ("temporal",), "fixed")) + _REPORT + _FIXED,
            epochs=20,
        ),
        Space(
            "report_split",
            "the report's random against temporal split (Table 5), hidden 512",
            (Dim("hidden_size", (512,), "fixed"), Dim("split", ("random", "temporal"))) + _REPORT + _FIXED,
            epochs=20,
        ),
        Space(
            "quick",
            "two small LSTMs, 2 epochs of 900k characters: about 90 s on a 2-core CPU",
            # Many small steps: 2,048 characters a step (64 windows of 128, 8,192 characters a step, reached
            # only 3.03 val_bpc in its ~100 steps of 400k characters an epoch);
            # lr 0.02 measured best of 0.01 / 0.02 / 0.03 (2.40 / 2.26 / 2.28 val_bpc at hidden 256).
            (
                Dim("hidden_size", (128, 256)),
                Dim("num_layers", (1,), "fixed"),
                Dim("embed_dim", (64,), "fixed"),
                Dim("dropout", (0.0,), "fixed"),
                Dim("seq_len", (64,), "fixed"),
                Dim("batch_size", (32,), "fixed"),
                Dim("lr", (0.02,), "nuisance"),
                Dim("split", ("temporal",), "fixed"),
                Dim("epoch_tokens", (900_000,), "fixed"),
            )
            + _FIXED,
            epochs=2,
        ),
        Space(
            "fast",
            "one LSTM sized to 10 minutes of a 2-core CPU, temporal split (benchmarks/char_rnn.py)",
            (
                Dim("hidden_size", (512,), "fixed"),
                Dim("num_layers", (1,), "fixed"),
                Dim("embed_dim", (64,), "fixed"),
                Dim("dropout", (0.1,), "fixed"),
                Dim("seq_len", (128,), "fixed"),
                Dim("batch_size", (64,), "fixed"),
                Dim("lr", (0.004,), "nuisance"),
                Dim("split", ("temporal",), "fixed"),
                Dim("epoch_tokens", (1_500_000,), "fixed"),
            )
            + _FIXED,
            epochs=10,
        ),
    )
}

STUDY = Study(
    "char_rnn",
    "character-level LSTM on tiny-shakespeare (hidden size, random vs temporal split, generation)",
    trainable_path="raysweep.trainables.char_rnn:train_char_rnn",
    spaces_module=__name__,
    data_path="raysweep.data.shakespeare:prepare",
    check_path="raysweep.data.shakespeare:check_configs",
    metric="val_bpc",  # bits per character of the text: one unit for every tokenizer (val_loss is per token)
    mode="min",
    task_path="raysweep.trainables.char_rnn:CharRnnTask",
    analysis_module="raysweep.analysis.char_rnn",
    result_options=("split_seed",),  # the other --option names only change what is logged, or how fast
    leaky={"split": ("random",)},  # validation passages sit inside training windows (leak_ngram32 ~ 1)
)
