"""The done-when figures of a tune run, read from its tune.json: per start, the mixed build, the nodes it keeps in float,
its gate verdict per task, and the share of its base's speedup over Float32 it keeps (target: at least 90%).

    python benchmarks/tune_check.py [results/sentence-transformers__all-MiniLM-L6-v2/tune/tune.json] [--kept 0.9]

Exit 0 when every start has a passing build that keeps the target share, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT = Path("results/sentence-transformers__all-MiniLM-L6-v2/tune/tune.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--kept", type=float, default=0.9, help="share of the base's speedup to keep")
    args = parser.parse_args()
    doc = json.loads(args.path.read_text(encoding="utf-8"))
    point = doc["bench_point"]
    print(f"{doc['model']['id']} on {', '.join(doc['tasks'])}: gate max drop {doc['gate']['max_drop']} {doc['gate']['scope']}, "
          f"rule {doc['gate']['rule']}; speed at {point['length']} tokens, batch {point['batch']}")
    speed = {b["variant"]: b["speedup"] for b in doc["builds"] if b["speedup"] is not None}  # a start may be timed only
    ok = True
    for start in doc["starts"]:
        passing = [b for b in doc["builds"] if b["base"] == start and b["gate"] and b["gate"]["outcome"] != "fail"]
        base = f"{start} {speed[start]:.2f}x" if start in speed else start
        if not passing:
            print(f"{base}: no passing build")
            ok = False
            continue
        best = max(passing, key=lambda b: b["speedup"] or 0)
        checks = "; ".join(f"{c['scope']} {c['delta']:+.4f} CI [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] {c['outcome']}"
                           for c in best["gate"]["checks"] if c["decides"])
        kept = best["speedup_kept"] if best["variant"] != start else 1.0
        ok &= kept is not None and kept >= args.kept
        print(f"{base} -> {best['variant']} {best['speedup']:.2f}x ({100 * kept:.1f}% of the base's speedup), "
              f"{len(best['float_nodes'])} node(s) in float {best['float_nodes']}: gate {best['gate']['outcome']} ({checks})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
