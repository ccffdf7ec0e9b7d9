"""The README's tables come from the run's files: results, word vs BPE, epoch times, stage times."""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from utils import report
from utils.training.trainer import train_model


def _results(bleu: float, unk: float) -> pd.DataFrame:
    rows = []
    for model in ("rnn", "attention"):
        for decoding in ("greedy", "beam5", "greedy+syntax"):
            rows.append({"model": model, "decoding": decoding, "length_penalty": 2.0 if "beam" in decoding else None,
                         "bleu": bleu, "codebleu": bleu + 1, "crystal_bleu": 0.5, "token_accuracy": 10.0,
                         "exact_match": 0.0, "syntax_valid": 50.0, "unk_rate": unk, "copied_identifiers": 3.0,
                         "distinct_outputs": 12.5, "output_length": 80.0, "test_ppl": 9.5,
                         "decode_seconds": 1.25, "parameters": 1234567, "train_seconds": 99.6})
    rows.append({"model": "retrieval (TF-IDF)", "decoding": "nearest training docstring", "bleu": 15.0,
                 "codebleu": 16.0, "unk_rate": 0.0, "syntax_valid": 100.0, "copied_identifiers": 4.0,
                 "distinct_outputs": 90.0})
    return pd.DataFrame(rows)


def test_markdown_table_escapes_pipes():
    text = report.markdown_table([["a|b", "1"]], ["x", "y"])
    assert text.splitlines() == ["| x | y |", "| --- | --- |", "| a\\|b | 1 |"]


def test_results_markdown_formats_every_row_from_the_csv():
    lines = report.results_markdown(_results(7.125, 3.0)).splitlines()
    assert len(lines) == 2 + 7
    assert lines[2].startswith("| rnn | greedy |  | 7.12 |  | 0.50 | 8.12 | 10.00 |")
    assert "| 1,234,567 | 100 |" in lines[2]
    assert "| 2 |" in lines[3]                       # the beam row's length penalty
    assert lines[-1].startswith("| retrieval (TF-IDF) | nearest training docstring |  | 15.00 |  |  | 16.00 |")


def test_vocabulary_comparison_pairs_rows_by_model_and_decoding():
    table = report.vocabulary_comparison(_results(9.0, 0.0), _results(6.0, 20.0))
    assert list(zip(table["model"], table["decoding"])) == [
        ("rnn", "greedy"), ("rnn", "greedy+syntax"), ("attention", "greedy"), ("attention", "greedy+syntax"),
        ("retrieval (TF-IDF)", "nearest training docstring")]
    assert table.loc[0, "bleu_word"] == 6.0 and table.loc[0, "bleu_bpe"] == 9.0
    assert table.loc[0, "unk_rate_word"] == 20.0 and table.loc[0, "unk_rate_bpe"] == 0.0
    text = report.comparison_markdown(table)
    assert "| rnn | greedy | 6.0 → 9.0 | 7.0 → 10.0 | 20.0 → 0.0 |" in text


def test_epoch_history_reads_every_epoch_from_the_last_checkpoint(tmp_path, tiny_config, toy_examples, toy_vocab):
    train, valid = toy_examples(32, seed=1), toy_examples(8, seed=2)
    train_model(tiny_config("rnn", epochs=2, batch_size=16, patience=5, max_trg_len=8), train, valid,
                toy_vocab, toy_vocab, checkpoint_dir=tmp_path, device="cpu", progress=False, log=lambda _: None)
    history = report.epoch_history(tmp_path, ["rnn", "lstm"], "bpe")    # no lstm checkpoint: skipped
    assert list(history["epoch"]) == [1, 2] and set(history["model"]) == {"rnn"}
    assert (history["epoch_seconds"] >= history["train_seconds"]).all()
    times = report.epoch_times(history)
    assert times.loc[0, "epochs"] == 2
    assert times.loc[0, "seconds_per_epoch"] == pytest.approx(history["epoch_seconds"].min())
    assert times.loc[0, "best_val_loss"] == pytest.approx(history["val_loss"].min())
    assert times.loc[0, "best_epoch"] == history.loc[history["val_loss"].idxmin(), "epoch"]
    assert (history["epoch_cap"] == 2).all() and times.loc[0, "epoch_cap"] == 2


def test_epoch_times_markdown_leaves_a_missing_vocabulary_blank():
    times = pd.DataFrame([{"model": "rnn", "vocabulary": "word", "epochs": 5, "seconds_per_epoch": 25.4,
                           "best_val_loss": 2.1834},
                          {"model": "rnn", "vocabulary": "bpe", "epochs": 4, "seconds_per_epoch": 44.6,
                           "best_val_loss": 2.5},
                          {"model": "copy", "vocabulary": "bpe", "epochs": 5, "seconds_per_epoch": 350.0,
                           "best_val_loss": 2.0}])
    lines = report.epoch_times_markdown(times).splitlines()
    assert lines[0].startswith("| model | word s / epoch (fastest) | word epochs |")
    assert lines[2] == "| rnn | 25 | 5 | 45 | 4 |"
    assert lines[3] == "| copy |  |  | 350 | 5 |"


def test_main_prints_every_table_and_writes_the_epoch_csv(tmp_path, capsys):
    (tmp_path / "plots").mkdir()
    _results(9.0, 0.0).to_csv(tmp_path / "plots" / "results.csv", index=False)
    word = tmp_path / "word"
    (word / "plots").mkdir(parents=True)
    _results(6.0, 20.0).to_csv(word / "plots" / "results.csv", index=False)
    (word / "timings.json").write_text(json.dumps({"01_preprocess.ipynb": 60.2, "total": 100.0}))
    (tmp_path / "timings.json").write_text(json.dumps({"01_preprocess.ipynb": 70.0, "total": 130.4}))
    report.main(["--plots", str(tmp_path / "plots"), "--checkpoints", str(tmp_path / "none"),
                 "--timings", str(tmp_path / "timings.json"), "--word-run", str(word)])
    out = capsys.readouterr().out
    assert "## Results" in out and "## Word vs BPE" in out
    assert "| stage | word (s) | bpe (s) |" in out and "| 01_preprocess | 60 | 70 |" in out
    assert "## Seconds per epoch" not in out                 # no checkpoints: no epoch table, no CSV
    assert not (tmp_path / "plots" / "training_epochs.csv").exists()
    assert (tmp_path / "plots" / "vocabulary_comparison.csv").exists()


def _epochs(vocabulary: str, model: str, losses: list[float]) -> list[dict]:
    return [{"vocabulary": vocabulary, "model": model, "epoch": i + 1, "epoch_cap": 25, "train_seconds": 10.0,
             "epoch_seconds": 12.0 + i,
             "train_tokens_per_s": 100.0, "train_loss": v + 0.5, "val_loss": v, "val_token_acc_greedy": 5.0}
            for i, v in enumerate(losses)]


def test_a_fresh_clone_prints_the_tables_from_the_saved_files(tmp_path, capsys):
    """Without the runs' folders (git-ignored) the word-vs-BPE table, the epochs of both vocabularies and
    the study-settings tables come back from what an earlier report saved into plots/."""
    plots = tmp_path / "plots"
    plots.mkdir()
    _results(9.0, 0.0).to_csv(plots / "results.csv", index=False)
    pd.DataFrame(_epochs("word", "rnn", [3.0, 2.5]) + _epochs("bpe", "rnn", [3.5, 3.0, 3.1])).to_csv(
        plots / "training_epochs.csv", index=False)
    study = tmp_path / "study"
    (study / "plots").mkdir(parents=True)
    _results(5.0, 10.0).to_csv(study / "plots" / "results.csv", index=False)
    word = tmp_path / "word"
    (word / "plots").mkdir(parents=True)
    _results(6.0, 20.0).to_csv(word / "plots" / "results.csv", index=False)
    args = ["--plots", str(plots), "--checkpoints", str(tmp_path / "none"), "--timings", str(tmp_path / "none.json")]
    report.main([*args, "--word-run", str(word), "--study-run", str(study)])
    first = capsys.readouterr().out
    assert (plots / "study_settings.csv").exists() and (plots / "vocabulary_comparison.csv").exists()
    pd.DataFrame(_epochs("word", "rnn", [4.0, 3.0, 3.2, 3.3])).to_csv(plots / "study_settings_epochs.csv", index=False)
    report.main([*args, "--word-run", str(tmp_path / "gone"), "--study-run", str(tmp_path / "gone")])
    second = capsys.readouterr().out
    assert "## Study settings (test split)" in first and "## Word vs BPE" in first
    assert second.split("## Study settings: when")[0] == first.split("## Study settings: when")[0]
    assert "| rnn | 12 | 2 | 12 | 3 |" in second                  # both vocabularies' epochs kept
    assert "| rnn | 4 | 2 | 3.000 | early stopping | 12 |" in second
    saved = pd.read_csv(plots / "training_epochs.csv")
    assert sorted(saved["vocabulary"].unique()) == ["bpe", "word"] and len(saved) == 5


def test_run_timings_adds_the_stages_scored_apart(tmp_path):
    (tmp_path / "scored").mkdir()
    (tmp_path / "timings.json").write_text(json.dumps({"01_preprocess.ipynb": 60.0, "02_train.ipynb": 100.0,
                                                        "total": 160.0}))
    assert report.run_timings(tmp_path)["total"] == 160.0
    (tmp_path / "scored" / "timings.json").write_text(json.dumps({"03_bleu.ipynb": 40.0, "total": 40.5}))
    assert report.run_timings(tmp_path) == {"01_preprocess.ipynb": 60.0, "02_train.ipynb": 100.0,
                                            "03_bleu.ipynb": 40.0, "total": 200.5}


def test_stopping_markdown_says_what_ended_training():
    times = pd.DataFrame([{"model": "rnn", "vocabulary": "word", "epochs": 25, "best_epoch": 25,
                           "best_val_loss": 2.0, "seconds_per_epoch": 30.0, "epoch_cap": 25},
                          {"model": "lstm", "vocabulary": "word", "epochs": 9, "best_epoch": 6,
                           "best_val_loss": 1.9, "seconds_per_epoch": 50.0, "epoch_cap": 25}])
    lines = report.stopping_markdown(times).splitlines()
    assert lines[2] == "| rnn | 25 | 25 | 2.000 | epoch cap | 30 |"
    assert lines[3] == "| lstm | 9 | 6 | 1.900 | early stopping | 50 |"


def test_recipe_markdown_names_what_each_recipe_changes() -> None:
    from utils.report.tables import recipe_markdown
    from utils.studies.recipe import STUDY

    base = {**STUDY, "train_size": 10000.0, "model": "attention", "val_loss": 4.5, "val_bleu": 8.0,
            "val_codebleu": 9.0, "val_distinct_outputs": 1.0, "val_syntax_valid": 0.0, "val_exact_match": 0.0,
            "best_epoch": 4, "epochs_run": 4, "epoch_seconds": 150.0}
    table = pd.DataFrame([{**base, "recipe": "study"},
                          {**base, "recipe": "tf-1.0", "teacher_forcing": 1.0, "val_source_gap": 0.25},
                          {**base, "recipe": "combined", "teacher_forcing": 1.0, "train_size": "all"}])
    table = pd.concat([table, pd.DataFrame([{"recipe": "retrieval (TF-IDF)", "model": "baseline", "train_pairs": 24906,
                                             "train_size": "all", "val_bleu": 12.0, "val_codebleu": 13.0,
                                             "val_distinct_outputs": 70.0, "val_syntax_valid": 100.0,
                                             "val_exact_match": 0.0}])], ignore_index=True)
    lines = recipe_markdown(table).splitlines()
    assert recipe_markdown(pd.read_csv(io.StringIO(table.to_csv(index=False)))).splitlines() == lines  # as read back
    assert len(lines) == 6 and "(the study's recipe)" in lines[2]
    assert "| baseline | retrieval (TF-IDF) | nearest of 24,906 training docstrings |  |  | 12.00 |" in lines[5]
    assert "| tf-1.0 | teacher_forcing 1.0 | 4.500 | 0.250 |" in lines[3]
    assert "| 4.500 |  | 8.00 |" in lines[2]  # rows screened before the docstring gap was measured
    tiny = recipe_markdown(pd.DataFrame([{**base, "recipe": "study", "val_source_gap": -2e-6}]))
    assert "| 4.500 | 0.000 |" in tiny  # not "-0.000"
    assert "| combined | teacher_forcing 1.0, train_size all |" in lines[4] and "| 4 / 4 |" in lines[4]


def test_headline_markdown_keeps_greedy_and_beam_syntax_rows_and_the_baselines() -> None:
    from utils.report.tables import headline_markdown

    results = pd.DataFrame([
        {"model": "attention", "decoding": d, "bleu": b, "codebleu": 1.0, "syntax_valid": 90.0,
         "distinct_outputs": 80.0, "source_gap": 0.3, "epochs": 3, "ended_by": "schedule", "bleu_low": b - 1,
         "bleu_high": b + 1.04, "brevity_penalty": 0.5}
        for d, b in (("greedy", 13.02), ("beam5", 11.8), ("beam5+syntax", 11.81))
    ] + [{"model": "retrieval (TF-IDF)", "decoding": "nearest training docstring", "bleu": 18.93, "codebleu": 18.9,
          "syntax_valid": 100.0, "distinct_outputs": 83.5, "source_gap": None}])
    lines = headline_markdown(results).splitlines()
    assert lines[0].startswith("| model | decoding | BLEU (95% CI) | BP | CrystalBLEU (95% CI) | CodeBLEU")
    assert lines[2].startswith("| attention | greedy | 13.0 (12.0-14.1) | 0.50 |")
    assert "| 18.9 |" in lines[-1]  # no interval in the row: the figure alone
    assert [line.split(" | ")[1] for line in lines[2:]] == ["greedy", "beam5+syntax", "nearest training docstring"]
    assert lines[2].endswith("| 0.30 | 3 | schedule |")  # how training ended
    assert lines[-1].endswith("| 83.5 |  |  |  |")  # one decimal; no gap or training for a baseline


def test_budget_markdown_gives_one_row_per_arm() -> None:
    from utils.report.tables import budget_markdown

    row = {"arm": "e64-all-3ep", "seed": 42, "budget": "main", "embed_dim": 64, "hidden_dim": 128,
           "train_pairs": 24906, "epochs": 3, "lr": 0.006, "val_loss": 3.0364, "val_bleu": 13.2619,
           "val_crystal_bleu": 0.4912, "val_codebleu": 11.6, "val_distinct_outputs": 71.8, "val_source_gap": 0.3018,
           "val_syntax_valid": 95.7, "train_seconds": 1243.7, "ended_by": "schedule"}
    lines = budget_markdown(pd.DataFrame([row])).splitlines()
    assert lines[0].startswith("| model | arm | seed | budget | embed / hidden | pairs | epochs | peak lr |")
    assert lines[2] == ("| attention | e64-all-3ep | 42 | main | 64 / 128 | 24,906 | 3 | 0.006 | 3.036 | 13.26 | 0.49 "
                        "| 11.60 | 71.8 | 0.30 | 1,244 | schedule |")


def test_reviewer_batching_markdown_joins_the_epochs_it_ran_and_leaves_missing_scores_blank() -> None:
    from utils.report.tables import reviewer_batching_markdown

    base = {"batches_sorted_by": "target length", "timed": "alone, two threads", "commit": "abc1234",
            "epoch3_seconds": float("nan"), "epoch3_val_loss": float("nan")}
    rows = [{**base, "epochs": 2, "epoch1_seconds": 203.4, "epoch2_seconds": 232.0, "epoch1_val_loss": 4.5731,
             "epoch2_val_loss": 4.04, "cv_5_none": float("nan"), "cv_5_both": float("nan")},
            {**base, "epochs": 3, "epoch1_seconds": 122, "epoch2_seconds": 116, "epoch3_seconds": 113,
             "epoch1_val_loss": 4.678, "epoch2_val_loss": 4.046, "epoch3_val_loss": 3.799,
             "cv_5_none": 22.3, "cv_5_both": 23.34}]
    lines = reviewer_batching_markdown(pd.DataFrame(rows)).splitlines()
    assert lines[2] == "| target length | 2 | alone, two threads | 203 / 232 | 4.573 / 4.040 |  |  | abc1234 |"
    assert lines[3].endswith("| 122 / 116 / 113 | 4.678 / 4.046 / 3.799 | 22.30 | 23.34 | abc1234 |")
