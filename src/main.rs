// mimalloc: a 100,000-resource plan allocates millions of small JSON maps from several threads;
// glibc's per-thread arenas made its peak RSS vary by half from run to run (see README, benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mlops::cli::main()
}
