"""Speed: a measurement harness (pure schedule and statistics), the real runs, the bench.json schema, and tables."""

from evalsuite.bench.harness import (BenchConfig, Runner, Step, Timing, compare, level_gains, measure, parse_families,
                                     parse_ints, schedule, summarize)
from evalsuite.bench.runner import OnnxRunner, exact_length_inputs, probe_memory, run_bench
from evalsuite.bench.schema import (SCHEMA, BenchResult, LevelGain, Machine, Measurement, VariantInfo, bench_path,
                                    read_bench, save_bench)
from evalsuite.bench.tables import all_tables, format_markdown, level_tables, speedup_tables, variant_table

__all__ = ["SCHEMA", "BenchConfig", "BenchResult", "LevelGain", "Machine", "Measurement", "OnnxRunner", "Runner", "Step",
           "Timing", "VariantInfo", "all_tables", "bench_path", "compare", "exact_length_inputs", "format_markdown",
           "level_gains", "level_tables", "measure", "parse_families", "parse_ints", "probe_memory", "read_bench",
           "run_bench", "save_bench", "schedule", "speedup_tables", "summarize", "variant_table"]
