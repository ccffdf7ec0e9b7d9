"""The beam-search length penalty: chosen per model and decoding on validation rows (never the
reported split), saved by notebook 03 and read back by 04 and 05."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from utils.data.processed import load_split
from utils.decoding.search import check_length_penalty
from utils.evaluation.baselines import references
from utils.evaluation.results import LengthPenalties, LoadedModel, decode_split
from utils.files import save_csv
from utils.metrics import corpus_bleu_score, distinct_outputs, output_length
from utils.paths import project_path

TUNED = "tuned"  # the length-penalty setting that reads the values notebook 03 chose


TUNING_CSV = "length_penalty.csv"


def tune_length_penalty(loaded: Mapping[str, LoadedModel], rows: Sequence[dict], candidates: Sequence[float],
                        beam_size: int = 5, max_len: int = 0, batch_size: int = 128,
                        device: str | torch.device | None = None, syntax_aware: bool | Sequence[bool] = False,
                        log: Callable[[str], None] = print) -> pd.DataFrame:
    """Beam search over ``rows`` (validation rows: never the split that is reported) with every
    candidate length penalty, per model and syntax setting. One row per try: BLEU, output length and
    distinct outputs; ``chosen`` marks the highest BLEU of each (model, decoding), the smallest
    penalty among equals."""
    if beam_size < 2:
        raise ValueError(f"The length penalty only matters for beam search: beam_size is {beam_size}.")
    alphas = sorted({check_length_penalty(a) for a in candidates})
    if not alphas or not rows:
        raise ValueError("Choosing a length penalty needs at least one candidate and one validation row.")
    modes = [syntax_aware] if isinstance(syntax_aware, bool) else list(syntax_aware)
    refs, _ = references(rows)
    records = []
    for name, lm in loaded.items():
        for mode in modes:
            for alpha in alphas:
                d = decode_split(lm, rows, beam_size, max_len, batch_size, device, mode, alpha)
                records.append({"model": name, "decoding": d.decoding, "length_penalty": alpha, "n": len(rows),
                                "bleu": corpus_bleu_score(d.hypotheses, refs),
                                "output_length": output_length(d.hypotheses, refs),
                                "distinct_outputs": distinct_outputs(d.hypotheses)})
    table = pd.DataFrame(records)
    ranked = table.sort_values(["bleu", "length_penalty"], ascending=[False, True], kind="stable")
    table["chosen"] = table.index.isin(ranked.groupby(["model", "decoding"], sort=False).head(1).index)
    for r in table[table["chosen"]].itertuples():
        log(f"{r.model:>12} {r.decoding:>12}: length penalty {r.length_penalty:g} (validation BLEU {r.bleu:.2f})")
    return table


def chosen_length_penalties(table: pd.DataFrame) -> dict[tuple[str, str], float]:
    """{(model, decoding): length penalty} from the rows of a :func:`tune_length_penalty` table marked ``chosen``."""
    missing = {"model", "decoding", "length_penalty", "chosen"} - set(table.columns)
    if missing:
        raise ValueError(f"Not a length-penalty table: no column {', '.join(sorted(missing))}.")
    chosen = table[table["chosen"].astype(bool)]
    return {(str(r.model), str(r.decoding)): float(r.length_penalty) for r in chosen.itertuples()}


def choose_length_penalty(setting: float | str | Sequence[float], loaded: Mapping[str, LoadedModel],
                          data_dir: str | Path, plots_dir: str | Path, beam_size: int = 5,
                          syntax_aware: bool | Sequence[bool] = False, tune_examples: int = 300,
                          max_len: int = 0, batch_size: int = 128, device: str | torch.device | None = None,
                          log: Callable[[str], None] = print) -> tuple[LengthPenalties, pd.DataFrame | None]:
    """The notebooks' ``length_penalty`` parameter made concrete:

    * a number: that value for every model (no table);
    * a list of candidates: each model and decoding gets the one with the best BLEU on the first
      ``tune_examples`` validation rows; the table is saved as ``<plots_dir>/length_penalty.csv``;
    * ``"tuned"``: the values that table holds (notebook 03 writes it; 04 and 05 read it).

    With ``beam_size`` 1 (greedy only) there is nothing to choose: a list or "tuned" gives 1.0.
    """
    if beam_size < 2 and isinstance(setting, Sequence):  # a list, or "tuned"
        return 1.0, None
    if isinstance(setting, str):
        if setting != TUNED:
            raise ValueError(f'length_penalty must be a number, a list of candidates or "{TUNED}", got {setting!r}.')
        path = project_path(plots_dir) / TUNING_CSV
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: notebooks/03_bleu.ipynb writes it when its "
                                    f"length_penalty is a list of candidates. Run 03 first, or set "
                                    f"length_penalty to a number.")
        table = pd.read_csv(path)
        return chosen_length_penalties(table), table
    if isinstance(setting, Sequence):
        rows = load_split(data_dir, "valid", required=True)[: max(tune_examples, 1)]
        table = tune_length_penalty(loaded, rows, setting, beam_size, max_len, batch_size, device, syntax_aware, log)
        save_csv(table, project_path(plots_dir) / TUNING_CSV)
        return chosen_length_penalties(table), table
    return check_length_penalty(setting), None
