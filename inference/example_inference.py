#!/usr/bin/env python
"""Command line: generate Python functions from docstrings with a trained checkpoint.

Run it from the repository root or from inside ``inference/``; ``--help`` lists the options.
Errors are reported as one line on stderr with exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

# The repository root goes first on sys.path, so that `utils` and the `inference` package resolve from any
# working directory (and inference/inference.py is never mistaken for the package when run from inference/).
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import os  # noqa: E402
import warnings  # noqa: E402

from utils.paths import TRAIN_HINT, user_path  # noqa: E402  (no torch: --help and path errors answer fast)

# Same names as utils.config.MODEL_NAMES and RETRIEVAL_SUFFIX; spelled out so that --help answers
# without importing torch.
MODEL_NAMES = ("rnn", "lstm", "attention", "copy", "transformer")
RETRIEVAL_SUFFIX = "+retrieval"
MODEL_CHOICES = MODEL_NAMES + tuple(name + RETRIEVAL_SUFFIX for name in MODEL_NAMES)
# Same value as inference.inference.LENGTH_PENALTY (a test checks both pairs): the beam's length
# penalty for a checkpoint of your own; a shipped model uses the one chosen for it on validation.
LENGTH_PENALTY = 3.0
SHIPPED_DIR = REPO_ROOT / "checkpoints"  # the trained weights that come with the repository
ECHO_CHARS = 200  # of each docstring, echoed as a comment above its code

EPILOG = """\
examples (from the repository root; the trained weights ship in checkpoints/, `make main` trains your own):
  .venv/bin/python inference/example_inference.py --docstring "Return the sum of a and b."
  .venv/bin/python inference/example_inference.py --model lstm --beam-size 5 \\
      --docstring "Return the largest item of a list." --docstring "Read a JSON file and return its content."
  .venv/bin/python inference/example_inference.py --model copy+retrieval --show-retrieved \
      --docstring "Return the list of files in a directory."
  .venv/bin/python inference/example_inference.py --rerank --show-candidates 3 \
      --docstring "Return the list of files in a directory."
  .venv/bin/python inference/example_inference.py --file docstrings.txt --max-length 120
  echo "Remove duplicates from a list, keeping order." | .venv/bin/python inference/example_inference.py
  .venv/bin/python inference/example_inference.py --docstring "Return the square of x." \\
      --attention-plot attention.png
  .venv/bin/python inference/example_inference.py --checkpoint runs/full/checkpoints/attention_best.pt \\
      --vocab data/processed/trg_vocab.json --device cpu --docstring "Open a file for reading."

The default checkpoint is the shipped checkpoints/<model>_best.pt under the repository root (checked
against checkpoints/manifest.json); --checkpoint takes a run's own. Which one was used goes to stderr.
Each docstring is printed as a '# ' comment line (its first 200 characters) followed by the generated
code. Generated code is printed, never run. --rerank answers with the combined system instead (the
README's combined row): it retrieves from the training split in data/processed, which `make evaluate`
writes (about two minutes), and never writes into checkpoints/.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="example_inference.py",
        description="Generate Python functions from docstrings with a trained seq2seq checkpoint.\n"
                    "Docstrings come from --docstring (repeatable), --file (one per line), or stdin.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input")
    src.add_argument("-d", "--docstring", action="append", default=[], metavar="TEXT",
                     help="a docstring to generate code for (repeat for several)")
    src.add_argument("-f", "--file", metavar="PATH",
                     help="a text file with one docstring per line (blank lines skipped); '-' reads stdin")
    model = p.add_argument_group("model")
    model.add_argument("-m", "--model", choices=MODEL_CHOICES, default=None, metavar="MODEL",
                       help="which trained model to use: checkpoints/<model>_best.pt (default: attention); one of "
                            f"{', '.join(MODEL_NAMES)}, each also with '{RETRIEVAL_SUFFIX}' (it also reads the "
                            "training function whose docstring is most similar)")
    model.add_argument("-c", "--checkpoint", metavar="PATH",
                       help="checkpoint file to use instead of checkpoints/<model>_best.pt")
    model.add_argument("--vocab", metavar="PATH",
                       help="vocabulary JSON (src_vocab.json or trg_vocab.json) to check against the checkpoint's")
    model.add_argument("--device", default="auto", metavar="{cpu,cuda,auto}",
                       help="where to run the model (default: auto = cuda when available, else cpu)")
    model.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                       help="arithmetic: fp32 (default: the README's table was scored in it), bf16 (autocast; a "
                            "CPU with native bf16, or a GPU) or auto (see utils/precision.py); any checkpoint "
                            "decodes in any of them")
    dec = p.add_argument_group("decoding")
    dec.add_argument("-b", "--beam-size", type=_positive_int, default=1, metavar="N",
                     help="beam width; 1 is greedy decoding (default: 1)")
    dec.add_argument("--max-length", type=_positive_int, default=None, metavar="N",
                     help="maximum number of generated code symbols (default: the model's own limit, "
                          "80 tokens or 160 BPE pieces)")
    dec.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                     help="docstrings decoded together (default: 64)")
    dec.add_argument("--length-penalty", type=_non_negative_float, default=None, metavar="A",
                     help="beam search ranks finished hypotheses by log-probability / ((5 + length) / 6) ** A; "
                          "0 ranks by raw log-probability, which favours short outputs (default: the value "
                          "chosen for a shipped model on validation rows, checkpoints/manifest.json; else "
                          f"{LENGTH_PENALTY:g})")
    dec.add_argument("--syntax-aware", action="store_true",
                     help="only let the decoder pick tokens that keep the program on a path to valid Python "
                          "(every model, greedy and beam)")
    comb = p.add_argument_group("combined system")
    comb.add_argument("--rerank", action="store_true",
                      help="answer with the combined system instead of one model: the best of the nearest training "
                           "functions and the shipped models' beams, chosen by the weights fitted on validation "
                           "(checkpoints/reranker.json); needs the training split (`make evaluate` writes it)")
    comb.add_argument("--show-candidates", type=_positive_int, nargs="?", const=5, default=None, metavar="N",
                      help="with --rerank: also print the N best candidates (default 5) with their source and score")
    comb.add_argument("--data-dir", default="data/processed", metavar="PATH",
                      help="the processed corpus --rerank retrieves from (default: data/processed)")
    out = p.add_argument_group("output")
    out.add_argument("--show-retrieved", action="store_true",
                     help="print, for each docstring, the training function a '+retrieval' model started from "
                          "and its cosine")
    out.add_argument("--attention-plot", metavar="PATH",
                     help="save the attention heatmap (PNG) of the first docstring; needs a model with attention")
    return p


class UsageError(Exception):
    """A problem worth one line on stderr."""


def _read_docstrings(args: argparse.Namespace) -> list[str]:
    docstrings = []
    for text in args.docstring:
        if not text.strip():
            raise UsageError("docstring is empty: describe the function to generate")
        docstrings.append(text)
    if args.file is not None or (not args.docstring and not sys.stdin.isatty()):
        name = "stdin" if args.file in (None, "-") else args.file
        try:
            if name == "stdin":
                content = sys.stdin.read()
            else:
                content = Path(args.file).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read docstrings from {name}: {e}") from None
        lines = [line for line in content.splitlines() if line.strip()]
        if not lines:
            raise UsageError(f"no docstrings in {name} (one per line expected)")
        docstrings.extend(lines)
    if not docstrings:
        raise UsageError("no docstrings given: use --docstring TEXT, --file PATH, or pipe them on stdin")
    return docstrings


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {str(message).splitlines()[0]}", file=sys.stderr)


def _header(docstring: str) -> str:
    """The docstring as one comment line: its first ECHO_CHARS characters, and how many more there were."""
    text = " ".join(docstring.split())
    if len(text) <= ECHO_CHARS:
        return "# " + text
    return f"# {text[:ECHO_CHARS]}... ({len(text) - ECHO_CHARS:,} more characters)"


def _length_penalty(args: argparse.Namespace, shipped: tuple[dict, dict] | None) -> float:
    """--length-penalty, else the shipped model's validation choice for its beam (with or without the
    syntax constraint), else LENGTH_PENALTY."""
    if args.length_penalty is not None:
        return args.length_penalty
    chosen = shipped[1].get("length_penalty", {}) if shipped else {}
    key = "beam5" + ("+syntax" if args.syntax_aware else "")
    return float(chosen.get(key, chosen.get("beam5", LENGTH_PENALTY)))


def _retrieved_text(found) -> str:
    """The retrieved neighbour as '# ' comment lines, then a blank comment line before the generated code."""
    from utils.data import detokenize

    if found is None or found.index is None:
        return ("# retrieved: none (no training docstring shares a word with this one: the model read the "
                "docstring and the separator alone)\n# generated:\n")
    lines = [f"# retrieved: training function {found.index} (cosine {found.cosine:.3f}), docstring: "
             f"{' '.join(found.docstring_tokens)}"]
    lines += ["#   " + line for line in detokenize(found.code_tokens).splitlines()]
    return "\n".join(lines) + "\n# generated:\n"


def _candidate_text(result, n: int) -> str:
    """The ``n`` best candidates as '# ' comment lines, then a blank comment line before the chosen code."""
    lines = [f"# candidates ({len(result.candidates)}, best {min(n, len(result.candidates))} shown; score = the "
             "fitted weights times the features):"]
    for rank, c in enumerate(result.candidates[:n], 1):
        lines.append(f"# {rank}. {c.score:+.3f}  {c.source}: {c.where}" + ("  <- chosen" if c is result.chosen else ""))
        lines += ["#      " + line for line in c.code.splitlines()[:6]]
    return "\n".join(lines) + "\n# chosen:\n"


def run_combined(args: argparse.Namespace) -> int:
    """--rerank: the combined system (inference/combined.py) from the shipped weights."""
    for flag, given in (("--checkpoint", args.checkpoint), ("--model", args.model), ("--attention-plot",
                        args.attention_plot), ("--show-retrieved", args.show_retrieved or None)):
        if given is not None:
            raise UsageError(f"--rerank uses the shipped models and its own candidates; drop {flag}")
    docstrings = _read_docstrings(args)
    from inference.combined import combined_generate

    results = combined_generate(docstrings, SHIPPED_DIR, args.data_dir, args.device)
    print("using the combined system (checkpoints/reranker.json: the nearest training functions and the "
          "shipped models' beams)", file=sys.stderr)
    for i, result in enumerate(results):
        if i:
            print()
        print(_header(result.docstring))
        if args.show_candidates:
            print(_candidate_text(result, args.show_candidates), end="")
        print(f"# from {result.chosen.source}: {result.chosen.where}")
        print(result.chosen.code, end="" if result.chosen.code.endswith("\n") else "\n")
    sys.stdout.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.rerank:
        return run_combined(args)
    if args.show_candidates:
        raise UsageError("--show-candidates shows the combined system's candidates: add --rerank")
    if args.checkpoint is not None:
        checkpoint = user_path(args.checkpoint)
    else:
        checkpoint = SHIPPED_DIR / f"{args.model or 'attention'}_best.pt"
    if not checkpoint.is_file():  # checked before torch is imported: the common first-run mistake answers fast
        if args.checkpoint is not None:
            raise UsageError(f"--checkpoint {args.checkpoint}: no such file ({checkpoint}); {TRAIN_HINT}")
        raise UsageError(f"no shipped checkpoint at {checkpoint} (restore the shipped weights with `git checkout "
                         f"-- checkpoints`, or {TRAIN_HINT} and pass --checkpoint PATH)")
    docstrings = _read_docstrings(args)

    from inference.inference import batch_generate, generate_with_attention, load_generator, plot_attention, retrieve
    from utils.checkpoint import shipped_entry

    shipped = shipped_entry(checkpoint)
    shipped = shipped if shipped and shipped[1] else None  # the manifest and this file's entry

    loaded = load_generator(checkpoint, args.vocab, args.device)
    if args.model is not None and loaded.name != args.model:
        raise UsageError(f"checkpoint {checkpoint} holds a '{loaded.name}' model, not '{args.model}'; "
                         "drop --model or pick the matching checkpoint")
    if args.attention_plot and not getattr(loaded.model, "has_attention", False):
        raise UsageError(f"the '{loaded.name}' model has no attention, so --attention-plot cannot draw one; "
                         "use --model attention (or another model with attention)")
    if args.show_retrieved and loaded.model.config.retrieval_input == "none":
        raise UsageError(f"the '{loaded.name}' model reads no retrieved code, so --show-retrieved has nothing to "
                         "show; use --model copy+retrieval (or another '+retrieval' model)")
    opts = dict(vocab_path=args.vocab, max_length=args.max_length, device=args.device, beam_size=args.beam_size,
                syntax_aware=args.syntax_aware, length_penalty=_length_penalty(args, shipped),
                precision=args.precision)
    shown = checkpoint.relative_to(REPO_ROOT) if checkpoint.is_relative_to(REPO_ROOT) else checkpoint
    where = (f"the shipped '{loaded.name}' model ({shown}, trained at commit "
             f"{shipped[0].get('commit', 'unknown')[:7]})" if shipped else f"checkpoint {checkpoint}")
    codes = batch_generate(docstrings, checkpoint, batch_size=args.batch_size, **opts)
    print(f"using {where}", file=sys.stderr)  # once it worked: an error stays one line
    if args.attention_plot:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # batch_generate has already said it if the docstring is cut
            result = generate_with_attention(docstrings[0], checkpoint, **opts)
        plot_path = Path(args.attention_plot).expanduser().resolve()  # relative to where the user stands
        if not plot_path.suffix:  # matplotlib would add .png itself: say the name it gets
            plot_path = plot_path.with_suffix(".png")
        plot_attention(result, plot_path)
        print(f"attention heatmap saved to {plot_path}", file=sys.stderr)
    for i, (doc, code) in enumerate(zip(docstrings, codes)):
        if i:
            print()
        print(_header(doc))
        if args.show_retrieved:
            print(_retrieved_text(retrieve(doc, checkpoint, args.device)), end="")
        print(code if code else "# (the model generated no code for this docstring)\n", end="")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sys.stdout.reconfigure(errors="backslashreplace")  # emoji in a docstring on a non-UTF-8 terminal
    except (AttributeError, ValueError):
        pass
    try:
        with warnings.catch_warnings():  # restores the warning machinery when main() is called in-process
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - every failure is one line, never a traceback
        text = str(e).strip().splitlines()
        message = text[0] if text else type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
