//! gateway-bench: the benchmark harness of the AI gateway. `scripts/bench.sh` runs it;
//! BENCHMARKS.md explains the method and shows the latest figures.

pub mod load;
pub mod procs;
pub mod report;
pub mod results;
