"""The training functions a retrieval model retrieves from at inference, saved beside its checkpoints.

``notebooks/02_train.ipynb`` writes ``<checkpoint_dir>/retrieval_db.json`` (JSON, never pickle)
when it trains a "+retrieval" model: every training docstring and function, the corpus hash and a
fingerprint of the source vocabulary. Inference rebuilds the same TF-IDF retriever from it
(``utils.data.retrieval``), so a new docstring gets the neighbour 01 would have found for it.

    python -m utils.data.retrieval_database --data-dir data/processed --checkpoint-dir runs/full/checkpoints
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from utils.data.processed import load_manifest, load_split, load_vocabs
from utils.data.retrieval import TfidfRetriever
from utils.data.vocabulary import Vocabulary
from utils.files import read_format, write_text
from utils.paths import check_not_shipped, project_path

DATABASE_FILE = "retrieval_db.json"
_FORMAT = "seq2seq-retrieval-db-v1"


def rebuild_hint(checkpoint_dir: str | Path) -> str:
    return (f"rebuild it with `python -m utils.data.retrieval_database --data-dir <the model's data_dir> "
            f"--checkpoint-dir {checkpoint_dir}` (or run notebooks/02_train.ipynb again)")


def vocabulary_fingerprint(vocab: Vocabulary) -> str:
    """sha256 of a vocabulary's symbols and BPE model: whether a database fits a checkpoint."""
    return hashlib.sha256(json.dumps([vocab.itos, vocab.subwords]).encode("utf-8")).hexdigest()


@dataclass
class Retrieved:
    """A docstring's neighbour: training row (None: no docstring shares a word), cosine, code tokens."""

    index: int | None
    cosine: float
    code_tokens: list[str] = field(default_factory=list)
    docstring_tokens: list[str] = field(default_factory=list)


class RetrievalDatabase:
    """Training docstrings and functions with their retriever (built on first use)."""

    def __init__(self, docstrings: Sequence[Sequence[str]], codes: Sequence[Sequence[str]], corpus_sha256: str,
                 vocabulary_sha256: str) -> None:
        if len(docstrings) != len(codes) or not docstrings:
            raise ValueError("A retrieval database needs one function per docstring, and at least one.")
        self.docstrings, self.codes = [list(d) for d in docstrings], [list(c) for c in codes]
        self.corpus_sha256, self.vocabulary_sha256 = corpus_sha256, vocabulary_sha256
        self._retriever: TfidfRetriever | None = None

    @classmethod
    def from_data(cls, data_dir: str | Path, src_vocab: Vocabulary) -> "RetrievalDatabase":
        train = load_split(data_dir, "train", with_retrieved=False)
        return cls([r["docstring_tokens"] for r in train], [r["code_tokens"] for r in train],
                   load_manifest(data_dir)["corpus_sha256"], vocabulary_fingerprint(src_vocab))

    def save(self, path: str | Path) -> Path:
        payload = {"format": _FORMAT, "corpus_sha256": self.corpus_sha256,
                   "vocabulary_sha256": self.vocabulary_sha256, "retriever": "tfidf-docstring-words",
                   "docstrings": self.docstrings, "codes": self.codes}
        path = project_path(path)
        write_text(path, json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
        return path

    @classmethod
    def load(cls, path: str | Path, src_vocab: Vocabulary | None = None) -> "RetrievalDatabase":
        """Read a saved database; one ValueError names the file when it is missing, damaged or (given
        ``src_vocab``, the checkpoint's) made with another source vocabulary."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No retrieval database at {path}: a '+retrieval' model needs the training "
                                    f"functions it retrieves from; {rebuild_hint(path.parent)}.")
        p = read_format(path, _FORMAT)
        if p is None:
            raise ValueError(f"{path} is not a retrieval database of this project; {rebuild_hint(path.parent)}.")
        db = cls(p["docstrings"], p["codes"], p["corpus_sha256"], p["vocabulary_sha256"])
        if src_vocab is not None:
            db.check(src_vocab, path)
        return db

    def check(self, src_vocab: Vocabulary, path: str | Path) -> None:
        """A ValueError when the database was made with another source vocabulary than ``src_vocab``."""
        if self.vocabulary_sha256 != vocabulary_fingerprint(src_vocab):
            raise ValueError(f"{path} was made from another corpus or vocabulary (corpus sha256 "
                             f"{self.corpus_sha256[:12]}…) than the checkpoint's; {rebuild_hint(Path(path).parent)}.")

    def nearest(self, docstring_tokens: Sequence[str]) -> Retrieved:
        """The training function whose docstring is most similar to ``docstring_tokens``."""
        if self._retriever is None:
            self._retriever = TfidfRetriever(self.docstrings)
        (index, cosine), = self._retriever.best([list(docstring_tokens)])
        if cosine <= 0:
            return Retrieved(None, 0.0)
        return Retrieved(index, round(cosine, 6), list(self.codes[index]), list(self.docstrings[index]))


def save_retrieval_database(data_dir: str | Path, checkpoint_dir: str | Path, src_vocab: Vocabulary) -> Path:
    """Write ``<checkpoint_dir>/retrieval_db.json`` from the training split of ``data_dir`` (never into
    the shipped weights' folder)."""
    check_not_shipped(checkpoint_dir)
    return RetrievalDatabase.from_data(data_dir, src_vocab).save(project_path(checkpoint_dir) / DATABASE_FILE)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write <checkpoint-dir>/retrieval_db.json from a processed corpus.")
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--checkpoint-dir", required=True, help="the run's checkpoint folder, e.g. runs/full/checkpoints")
    args = p.parse_args(argv)
    print(f"wrote {save_retrieval_database(args.data_dir, args.checkpoint_dir, load_vocabs(args.data_dir)[0])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
