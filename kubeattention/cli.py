"""The ``kubeattention`` command: one entry point, one subcommand per job.

Each subcommand lives in the module that does the work and offers two functions:
``configure_parser(parser)`` adds its flags, ``run(args) -> int`` does the job. Modules are
imported only when their subcommand runs, so ``kubeattention score`` does not pay for
scikit-learn and ``kubeattention agent`` does not load ONNX Runtime.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from wire import __version__

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("agent.main", "run the node agent: collect contention, serve /metrics, push to the aggregator"),
    "record": ("agent.record_cli", "record this node's vectors to a JSONL file (for replay agents and calibration)"),
    "aggregator": ("kubeattention.aggregator_process", "run the aggregator: Push + BatchScore over gRPC, Redis-backed"),
    "score": ("client.score_cli", "ask an aggregator to score nodes for a pod and print a ranked table"),
    "inspect": ("aggregator.inspect_cli", "read node telemetry straight from Redis"),
    "model": ("aggregator.model_cli", "publish, show, list or roll back the model every aggregator serves (Redis)"),
    "shadow-report": ("scheduling.shadow_report", "compare shadow-mode recommendations with where pods landed"),
    "outcome-collector": (
        "controllers.outcome_collector",
        "watch pods, join them with KubeAttention's decisions and record their outcomes",
    ),
    "rebalance": ("controllers.rebalancer", "find pods on noisy nodes and recommend (or, with --evict, make) moves"),
    "train": ("scorer.train", "train the interference model and export it to ONNX"),
    "calibrate": (
        "contention_lab.runner",
        "measure real victims beside stress-ng antagonists with the agent's collectors",
    ),
    "evaluate": (
        "scorer.evaluate_cli",
        "held-out evaluation of the model against scheduler baselines on calibration rows",
    ),
    "promote": (
        "scorer.gate",
        "make a trained model the default only if its held-out evaluation beats the baselines (the gate)",
    ),
    "demo": ("kubeattention.demo", "start redis, an aggregator and agents on this machine and score them"),
    "certs": ("kubeattention.certs", "create a development CA and aggregator, node and scheduler certificates (mTLS)"),
}

#: Old subcommand names that keep working: ``collector`` was renamed ``outcome-collector`` so it
#: is not confused with the agent's metric collectors.
ALIASES: dict[str, str] = {"collector": "outcome-collector"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubeattention", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"kubeattention {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        aliases = [old for old, new in ALIASES.items() if new == name]
        p = sub.add_parser(name, aliases=aliases, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Flags are added lazily below, once we know which subcommand was asked for.
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Import only the chosen subcommand's module and let it add its flags.
    chosen = next((ALIASES.get(a, a) for a in argv if a in SUBCOMMANDS or a in ALIASES), None)
    if chosen is not None:
        module = importlib.import_module(SUBCOMMANDS[chosen][0])
        sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        module.configure_parser(sub_action.choices[chosen])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    module = importlib.import_module(args._module)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
