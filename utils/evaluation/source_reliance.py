"""Does a model read the docstring? Its teacher-forced loss on the real pairs against the same code
paired with other functions' docstrings.

A model that ignores its source (a language model of code in seq2seq clothing) scores the same
either way: a gap of zero. The more the docstring tells the decoder, the larger the gap (in nats per
target symbol). Free-running metrics show the symptom (the same program for every docstring, few
distinct outputs); this number measures the cause, and it needs no decoding. A retrieval model's
whole source moves with the docstring (its retrieved code too): the gap says whether it reads its input.

    python -m utils.evaluation.source_reliance --data-dir data/processed --checkpoint-dir checkpoints \
        --csv plots/source_reliance.csv      # every trained model, on the validation split
"""
from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from utils.checkpoint import LoadedModel, load_checkpoint
from utils.config import MODEL_NAMES
from utils.data.batch import encode_pairs
from utils.data.processed import load_split
from utils.data.vocabulary import Vocabulary
from utils.files import save_csv
from utils.models import Seq2SeqModel
from utils.paths import project_path
from utils.training.trainer import evaluate_loss


@dataclass
class SourceReliance:
    """Teacher-forced mean loss per target symbol with the real docstrings and with swapped ones."""

    loss: float
    swapped_loss: float

    @property
    def gap(self) -> float:
        """``swapped_loss - loss``: 0 when the model ignores the docstring."""
        return self.swapped_loss - self.loss


def swap_docstrings(rows: Sequence[dict], seed: int = 0) -> list[dict]:
    """The rows with every docstring moved to another row (a random cycle, so none keeps its own)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    swapped = [dict(r) for r in rows]
    for k, i in enumerate(order):  # row order[k] gets the docstring of row order[k + 1]
        donor = rows[order[(k + 1) % len(order)]]
        swapped[i]["docstring_tokens"] = donor["docstring_tokens"]
        if "retrieved" in donor:  # a retrieval model's whole source moves: docstring and retrieved code
            swapped[i]["retrieved"] = donor["retrieved"]
    return swapped


def source_reliance(model: Seq2SeqModel, rows: Sequence[dict], src_vocab: Vocabulary, trg_vocab: Vocabulary,
                    device: torch.device | str = "cpu", batch_size: int = 64, precision: str = "fp32",
                    seed: int = 0) -> SourceReliance:
    """The loss of ``rows`` as they are and with their docstrings swapped (``swap_docstrings``).

    The pairs are encoded after the swap, so the copy model's extended ids follow the new docstring.
    """
    if len(rows) < 2:
        raise ValueError("Swapping docstrings needs at least two rows.")
    device = torch.device(device)

    def loss(pairs: Sequence[dict]) -> float:
        examples = encode_pairs(pairs, src_vocab, trg_vocab, with_copy=model.uses_copy,
                                retrieval_input=model.config.retrieval_input)
        return evaluate_loss(model, examples, batch_size, device, precision)

    return SourceReliance(loss(rows), loss(swap_docstrings(rows, seed)))


def reliance_table(checkpoint_dir: str, rows: Sequence[dict], models: Sequence[str] = MODEL_NAMES,
                   seed: int = 0) -> pd.DataFrame:
    """One row per model with a ``<model>_best.pt`` in ``checkpoint_dir``: loss, swapped loss, gap."""
    records = []
    for name in models:
        path = project_path(checkpoint_dir) / f"{name}_best.pt"
        if not path.is_file():
            continue
        lm = LoadedModel.from_checkpoint(load_checkpoint(path), path, expected_model=name)
        r = source_reliance(lm.model, rows, lm.src_vocab, lm.trg_vocab, seed=seed)
        records.append({"model": name, "rows": len(rows), "loss": r.loss, "swapped_loss": r.swapped_loss,
                        "gap": r.gap, "best_epoch": lm.best_epoch})
    if not records:
        raise FileNotFoundError(f"No <model>_best.pt for any of {', '.join(models)} in {checkpoint_dir}.")
    return pd.DataFrame(records)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--checkpoint-dir", default="checkpoints")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    p.add_argument("--rows", type=int, default=1000, help="the split's first N rows")
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    p.add_argument("--csv", default=None, help="also write the table here")
    args = p.parse_args(argv)
    try:
        rows = load_split(args.data_dir, args.split, required=True)[: args.rows]
        table = reliance_table(args.checkpoint_dir, rows, args.models)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    if args.csv:
        save_csv(table, args.csv)
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
