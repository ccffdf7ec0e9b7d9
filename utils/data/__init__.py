"""The data: from Python source files to padded batches of token ids.

A corpus is built from installed Python sources (``corpus_sources``: which packages, and whether a
corpus is the reference one; ``python_corpus``: functions as docstring -> code rows) or from
CodeSearchNet (``codesearchnet``); ``tokenizer`` splits docstrings into words and code into Python's
own tokens, ``subwords`` splits those tokens into BPE pieces, and ``vocabulary`` maps symbols to ids.
``processed`` turns the rows into the processed corpus on disk (filtered, split by file, the
vocabularies, the manifest written by ``manifest``) and loads it back (``load_split``,
``load_vocabs``, ``model_lengths``). ``batch`` turns id pairs into padded batches. For the
retrieval models, ``retrieval`` is the TF-IDF retriever, ``neighbours`` stores every row's nearest
training function with the splits, and ``retrieval_database`` saves the training functions a model
retrieves from at inference. Nothing here imports training, decoding or evaluation.
"""
from __future__ import annotations

from utils.data.batch import SEPARATOR, Example, encode_pairs, encode_source, make_batch
from utils.data.corpus_sources import compare_with_reference, load_reference_manifest
from utils.data.processed import SPLITS, load_manifest, load_split, load_vocabs, model_lengths, preprocess
from utils.data.retrieval_database import DATABASE_FILE, RetrievalDatabase, Retrieved, save_retrieval_database
from utils.data.subwords import join_pieces, merge_attention
from utils.data.tokenizer import detokenize, docstring_summary, tokenize_docstring
from utils.data.vocabulary import SPECIALS, UNK, Vocabulary

__all__ = ["DATABASE_FILE", "SEPARATOR", "SPECIALS", "SPLITS", "UNK", "Example", "RetrievalDatabase", "Retrieved",
           "Vocabulary", "compare_with_reference", "detokenize", "docstring_summary", "encode_pairs", "encode_source",
           "join_pieces", "load_manifest", "load_reference_manifest", "load_split", "load_vocabs", "make_batch",
           "merge_attention", "model_lengths", "preprocess", "save_retrieval_database", "tokenize_docstring"]
