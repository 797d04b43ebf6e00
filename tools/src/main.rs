//! The `tern` command line. See `tern --help`.
use clap::Parser;

fn main() {
    let cli = tern_tools::cli::Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp(None)
        .format_target(false)
        .init();
    if let Err(e) = tern_tools::cli::main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
