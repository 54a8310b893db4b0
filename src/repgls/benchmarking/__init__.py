"""The bench and demo stages: many methods x seeds on one phantom world, scored against report labels and truth.

Modules: ``spec`` (the bench config: world, base trainer config, methods, seeds), ``world`` (the shared
world artefacts, cached), ``methods`` (one (method, seed): train + evaluate, reused when finished),
``table`` (the method x metric table), ``run`` (:func:`bench`), ``demo`` (:func:`demo`: the whole pipeline
on the embedded default in minutes on a CPU).
"""

from repgls.benchmarking.methods import run_method, trainer_config
from repgls.benchmarking.run import BenchResult, bench
from repgls.benchmarking.spec import POLICIES, BenchConfig, MethodSpec, WorldSpec, load_bench_config
from repgls.benchmarking.table import bench_table, table_columns, table_markdown
from repgls.benchmarking.world import World, labels_for, prepare_world

__all__ = ["POLICIES", "BenchConfig", "BenchResult", "MethodSpec", "World", "WorldSpec", "bench", "bench_table",
           "labels_for", "load_bench_config", "prepare_world", "run_method", "table_columns", "table_markdown",
           "trainer_config"]
