"""Every study from one command: ``python -m utils.studies <name> [args...]``.

    python -m utils.studies --list                                  # the studies, one line each
    python -m utils.studies seeds --seeds 1 --threads 1             # one seed of the main table's models
    python -m utils.studies small --set epochs=1                    # a notebook chain

A study module's name runs its ``main`` with the remaining arguments (``--help`` shows them). With no
arguments, ``recipe`` makes its two passes: attention on every lever and "combined", then lstm and
rnn on the study's recipe and "combined". A notebook chain runs ``utils.run_notebooks`` over the
numbered notebooks with its parameter file, passing the remaining arguments on; a word-vocabulary
chain trains with 01 and 02 into its folder, then scores with the other notebooks into
``<folder>/scored`` on the BPE run's test functions (``--set data_dir=data/processed``, from
``make main`` or ``python -m utils.studies small`` first), so both vocabularies read the same ones.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

TRAINED = ("01_", "02_")  # the notebooks a word chain trains with; the others score its checkpoints
SCORED_ON = "data_dir=data/processed"  # the BPE run's corpus, whose test functions a word chain is scored on


@dataclass(frozen=True)
class Study:
    summary: str
    module: str = ""  # a study module: utils.studies.<module>.main(argv)
    params: str = ""  # or a notebook chain: this parameter file ...
    out: str = ""  # ... into this folder
    word: bool = False  # trained with 01 and 02 into out, scored with the rest into out/scored
    defaults: tuple[tuple[str, ...], ...] = ((),)  # the argument lists run when none are given


STUDIES: dict[str, Study] = {
    "recipe": Study("which training recipe: one lever at a time, then the winners together (validation)",
                    module="recipe", defaults=(("--models", "attention"),
                                               ("--models", "lstm", "rnn", "--recipes", "study", "combined"))),
    "seeds": Study("does the comparison hold across seeds? models retrained, scored on the test split",
                   module="seeds"),
    "vocabulary": Study("words against BPE of several sizes (validation)", module="vocabulary"),
    "precision": Study("does bf16 keep fp32's quality? the same models trained both ways", module="precision"),
    "retrieval": Study("what the retrieval models read: retrieve and edit against the docstring alone",
                       module="retrieval"),
    "convergence": Study("batching, schedule and precision by the loss reached and the time to early stopping",
                         module="convergence"),
    "guided": Study("retrieval-guided beam search as candidates of the combined system (validation)",
                    module="guided"),
    "budget": Study("what the main job's hour buys best: model size, pairs against epochs, peak rate (validation)",
                    module="budget"),
    "recurrent": Study("why the RNN and the LSTM ignore the docstring: the source reversed, the state at every step "
                       "(validation)", module="recurrent"),
    "small": Study("the main job's recipe at the screening size, 3 epochs: every notebook -> runs/small",
                   params="params/studies/small.yaml", out="runs/small"),
    "small-word": Study("the screening-size run with the original study's word vocabulary -> runs/small-word",
                        params="params/studies/small_word.yaml", out="runs/small-word", word=True),
    "full-word": Study("the main job's recipe with the word vocabulary -> runs/full-word",
                       params="params/studies/full_word.yaml", out="runs/full-word", word=True),
    "original": Study("the original study's exact settings, three classic models -> runs/study",
                      params="params/studies/study.yaml", out="runs/study"),
    "original-small": Study("the original study's settings at the screening size -> runs/study-small",
                            params="params/studies/study_small.yaml", out="runs/study-small"),
}


def listing() -> str:
    lines = ["python -m utils.studies <name> [args...]", ""]
    return "\n".join(lines + [f"  {name:<15} {study.summary}" for name, study in STUDIES.items()])


def run_chain(study: Study, args: Sequence[str]) -> int:
    """The numbered notebooks with the study's parameter file; a word chain in its two parts."""
    import utils.run_notebooks as run_notebooks  # here, so the listing needs nothing beyond the standard library

    notebooks = [str(p) for p in run_notebooks.chain_notebooks()]
    chain = ["--params", study.params, "--out", study.out]
    if not study.word:
        return run_notebooks.main([*chain, *notebooks, *args])
    trained = [nb for nb in notebooks if Path(nb).name.startswith(TRAINED)]
    scored = [nb for nb in notebooks if nb not in trained]
    return (run_notebooks.main([*chain, *trained, *args])
            or run_notebooks.main(["--params", study.params, "--set", SCORED_ON, "--out", f"{study.out}/scored",
                                   *scored, *args]))


def run(name: str, args: Sequence[str]) -> int:
    study = STUDIES[name]
    if not study.module:
        return run_chain(study, args)
    study_main = importlib.import_module(f"utils.studies.{study.module}").main
    for argv in [args] if args else study.defaults:
        code = study_main(list(argv)) or 0
        if code:
            return code
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("--list", "-l", "--help", "-h"):
        print(listing())
        return 0
    if args[0] not in STUDIES:
        print(f"error: unknown study {args[0]!r}; choose one of: {', '.join(STUDIES)} (see --list)", file=sys.stderr)
        return 2
    if argv is None:  # on the command line, the study's usage line names this command
        sys.argv[0] = f"python -m utils.studies {args[0]}"
    return run(args[0], args[1:])


if __name__ == "__main__":
    sys.exit(main())
