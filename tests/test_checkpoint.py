"""Checkpoints: save -> load round trip, atomic writes, and one clear CheckpointError per problem."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from utils.checkpoint import FORMAT, CheckpointError, LoadedModel, load_checkpoint, load_model, save_checkpoint
from utils.data.batch import make_batch
from utils.data.vocabulary import SPECIALS, Vocabulary
from utils.models import MODEL_CLASSES, build_model

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / "seq2seq_test_checkpoint_code_ran"


def _touch_marker(path: str) -> None:  # what a malicious pickle would run
    Path(path).write_text("executed")


class Payload:
    """An arbitrary object: not on torch's weights_only allow-list."""

    def __reduce__(self):
        return (_touch_marker, (str(MARKER),))


@pytest.fixture()
def saved(tmp_path, tiny_config, toy_vocab):
    """An 'rnn' checkpoint with a two-epoch history, and its model."""
    torch.manual_seed(0)
    model = build_model(tiny_config("rnn")).eval()
    path = save_checkpoint(tmp_path / "rnn_best.pt", model, toy_vocab, toy_vocab,
                           history=[{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.5}], best_epoch=2)
    return path, model


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_save_load_round_trip_gives_identical_outputs(name, tmp_path, tiny_config, toy_vocab, toy_examples) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2)).eval()
    path = save_checkpoint(tmp_path / f"{name}.pt", model, toy_vocab, toy_vocab, history=[{"epoch": 1}], epoch=1)
    assert path == tmp_path / f"{name}.pt"
    assert not list(tmp_path.glob("*.tmp"))  # atomic: the temporary file was renamed
    loaded, sv, tv, ckpt = load_model(path, expected_model=name, src_vocab=toy_vocab, trg_vocab=toy_vocab)
    assert type(loaded) is type(model)
    assert not loaded.training  # rebuilt in eval mode
    assert sv == tv == toy_vocab
    assert loaded.config == model.config
    assert ckpt["format"] == FORMAT and ckpt["history"] == [{"epoch": 1}] and ckpt["epoch"] == 1
    batch = make_batch(toy_examples(5, seed=1))
    with torch.no_grad():
        args = (batch.src, batch.src_lengths, batch.trg_in, 1.0, None, batch.src_ext, batch.n_oov)
        assert torch.equal(model(*args)[0], loaded(*args)[0])


def test_missing_file(tmp_path) -> None:
    path = tmp_path / "nothing_here.pt"
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert "train with `make main`" in str(err.value)  # says how to get one


def _assert_unreadable(path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "cannot be read" in msg and "not a checkpoint of this project" in msg


def test_truncated_file(saved) -> None:
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_unreadable(path)


def test_random_bytes(tmp_path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    _assert_unreadable(path)


def test_empty_file(tmp_path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    _assert_unreadable(path)


def test_json_renamed_pt(tmp_path, toy_vocab) -> None:
    path = tmp_path / "vocab.pt"
    path.write_text(json.dumps(toy_vocab.to_dict()))
    _assert_unreadable(path)


def test_torch_file_without_marker(tmp_path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match=f"is not a checkpoint of this project.*{FORMAT}") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_incomplete_checkpoint(tmp_path) -> None:
    path = tmp_path / "partial.pt"
    torch.save({"format": FORMAT, "config": {}}, path)
    with pytest.raises(CheckpointError, match="lacks model_state, src_vocab, trg_vocab") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_arbitrary_pickled_object_is_rejected_not_executed(tmp_path) -> None:
    MARKER.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "x": Payload()}, path)
    assert not MARKER.exists()  # saving does not run it
    try:
        with pytest.raises(CheckpointError, match="cannot be read") as err:
            load_model(path)
        assert str(path) in str(err.value)
        assert not MARKER.exists()  # weights_only refused to call _touch_marker
    finally:
        MARKER.unlink(missing_ok=True)


def test_other_model_type(saved) -> None:
    path, _ = saved
    with pytest.raises(CheckpointError, match="holds a 'rnn' model, not 'lstm'") as err:
        load_model(path, expected_model="lstm")
    assert str(path) in str(err.value)


def test_different_vocabulary(saved, toy_vocab) -> None:
    path, _ = saved
    other = Vocabulary(SPECIALS + [f"x{i}" for i in range(12)])  # same size, other words
    with pytest.raises(CheckpointError, match="different target vocabulary") as err:
        load_model(path, trg_vocab=other)
    assert str(path) in str(err.value)
    bigger = Vocabulary(toy_vocab.itos + ["extra"])
    with pytest.raises(CheckpointError, match=r"different source vocabulary \(16 tokens\).*\(17 tokens\)"):
        load_model(path, src_vocab=bigger)


def test_weights_that_do_not_fit(saved) -> None:
    path, _ = saved
    ckpt = load_checkpoint(path)
    ckpt["config"]["hidden_dim"] = 64  # the stored weights are 32 wide
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="weights do not fit a 'rnn' model") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_vocabulary_does_not_match_config(saved) -> None:
    path, _ = saved
    ckpt = load_checkpoint(path)
    ckpt["trg_vocab"] = ckpt["trg_vocab"] + ["extra"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="vocabularies do not match its configuration"):
        load_model(path)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(saved, monkeypatch, tiny_config, toy_vocab) -> None:
    path, model = saved
    before = path.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):  # half a checkpoint reaches the disk, then no space is left
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    other = build_model(tiny_config("rnn")).eval()
    with pytest.raises(CheckpointError, match=r"rnn_best.pt: the disk is full; the previous rnn_best.pt is kept "
                                              r"as it was\. Free some space and run again"):
        save_checkpoint(path, other, toy_vocab, toy_vocab, history=[{"epoch": 3}])
    with pytest.raises(CheckpointError, match="no new.pt was written"):
        save_checkpoint(path.with_name("new.pt"), other, toy_vocab, toy_vocab)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["rnn_best.pt"]
    assert load_checkpoint(path)["history"][-1] == {"epoch": 2, "val_loss": 1.5}

    def denied(obj, f, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(torch, "save", denied)  # other OS errors are not called a full disk
    with pytest.raises(PermissionError):
        save_checkpoint(path, other, toy_vocab, toy_vocab)


@pytest.mark.parametrize("name", ["attention", "transformer"])
def test_loaded_model_carries_what_the_checkpoint_recorded(name, tmp_path, tiny_config, toy_vocab) -> None:
    """One ``LoadedModel`` for evaluation and inference: the model in eval mode, its vocabularies,
    training history and best epoch, and the length limits decoding must respect."""
    model = build_model(tiny_config(name, max_positions=12))
    history = [{"epoch": 1, "epoch_seconds": 2.5}, {"epoch": 2, "epoch_seconds": 3.0}]
    path = save_checkpoint(tmp_path / f"{name}.pt", model, toy_vocab, toy_vocab, history, best_epoch=2)
    loaded = LoadedModel.from_checkpoint(load_checkpoint(path), path, "cpu", expected_model=name, precision="bf16")
    assert (loaded.name, loaded.path, loaded.best_epoch, loaded.precision) == (name, path, 2, "bf16")
    assert loaded.history == history and loaded.training_seconds == 5.5 and not loaded.model.training
    assert loaded.device == torch.device("cpu") and loaded.n_parameters == model.n_parameters()
    assert loaded.src_vocab == toy_vocab and loaded.trg_vocab == toy_vocab
    # the Transformer cannot read or write past its position table; the recurrent models only have the config's limit
    assert (loaded.max_src_len, loaded.max_trg_len) == ((10, 12) if name == "transformer" else (10, None))
    with pytest.raises(CheckpointError):
        LoadedModel.from_checkpoint(load_checkpoint(path), path, "cpu", expected_model="rnn")


@pytest.fixture()
def shipped(saved, tmp_path, monkeypatch):
    """A shipped folder holding the saved checkpoint, listed with its hash in a manifest."""
    import shutil

    import utils.checkpoint as checkpoint

    folder = tmp_path / "shipped"
    folder.mkdir()
    path = folder / "rnn_best.pt"
    shutil.copyfile(saved[0], path)
    manifest = {"files": {"rnn_best.pt": {"sha256": checkpoint.file_sha256(path)}}}
    (folder / checkpoint.MANIFEST_FILE).write_text(json.dumps(manifest))
    monkeypatch.setattr(checkpoint, "SHIPPED_DIR", str(folder))
    return path


def test_a_shipped_checkpoint_loads_when_its_hash_matches(shipped) -> None:
    assert load_checkpoint(shipped)["format"] == FORMAT


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "another model"])
def test_a_damaged_or_replaced_shipped_checkpoint_names_the_file_and_the_restore_command(
        damage, shipped, tmp_path, tiny_config, toy_vocab) -> None:
    data = shipped.read_bytes()
    if damage == "truncated":
        shipped.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        shipped.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:  # a valid checkpoint of another model under the shipped name
        save_checkpoint(shipped, build_model(tiny_config("lstm")), toy_vocab, toy_vocab)
    with pytest.raises(CheckpointError, match="rnn_best.pt is damaged or was replaced.*git checkout -- checkpoints"):
        load_checkpoint(shipped)


def test_a_file_the_manifest_does_not_list_is_refused_in_the_shipped_folder(shipped, tiny_config, toy_vocab) -> None:
    other = save_checkpoint(shipped.parent / "lstm_best.pt", build_model(tiny_config("lstm")), toy_vocab, toy_vocab)
    with pytest.raises(CheckpointError, match="lstm_best.pt is not one of the shipped weights"):
        load_checkpoint(other)


def test_a_checkpoint_outside_the_shipped_folder_loads_without_a_hash_check(shipped, saved) -> None:
    shipped.write_bytes(b"damaged")  # the shipped copy is broken; the user's own file is not checked against it
    assert load_checkpoint(saved[0])["format"] == FORMAT


def test_a_run_without_checkpoints_reads_the_whole_shipped_folder_never_a_mix(tmp_path, saved, monkeypatch) -> None:
    import shutil

    import utils.checkpoint as checkpoint
    from utils.checkpoint import run_or_shipped

    run, shipped = tmp_path / "run", tmp_path / "shipped"
    run.mkdir()
    shipped.mkdir()
    monkeypatch.setattr(checkpoint, "SHIPPED_DIR", str(shipped))
    lines: list[str] = []
    with pytest.raises(FileNotFoundError, match="`make main`.*`make evaluate`"):
        run_or_shipped(run, ["rnn", "lstm"], lines.append)
    shutil.copyfile(saved[0], shipped / "rnn_best.pt")
    shutil.copyfile(saved[0], shipped / "lstm_best.pt")
    assert run_or_shipped(run, ["rnn", "lstm"], lines.append) == shipped
    assert lines == [f"note: {run} holds no trained checkpoint of rnn, lstm: using the shipped weights ({shipped}/, "
                     "from the main job) for every model."]
    shutil.copyfile(saved[0], run / "rnn_best.pt")  # the run has one of them: only the run's, no shipped lstm
    assert run_or_shipped(run, ["rnn", "lstm"], lines.append) == run and len(lines) == 1
